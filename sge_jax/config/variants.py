"""Config arguments: ``--config=configs/kgbd.py:smoke`` or ``:released,smoke``.

``VARIANTS`` names the fields each variant sets; ``with_variant`` applies the
comma-separated names of a config argument, ``get_config`` to the defaults.
"""

from __future__ import annotations

from typing import Optional

import ml_collections

from sge_jax.config.checks import parse_list
from sge_jax.config.fields import base_config
from sge_jax.errors import ConfigError

# A quick end-to-end check of a set-up: tiny model, few epochs, few sequences.
_SMOKE = {
    'model.hidden': 32,
    'data.max_sequences': 256,
    'data.synthetic.num_people': 6,
    'data.synthetic.recordings_per_person': 3,
    'data.synthetic.test_recordings_per_person': 1,
    'data.synthetic.frames_per_recording': 80,
    'train.epochs': 2,
    'train.batch_size': 32,
    'train.log_every_steps': 4,
    'train.checkpoint_every_steps': 8,
    'rn.epochs': 5,
    'rn.hidden': 32,
}
# Config arguments (``--config=configs/kgbd.py:smoke``, ``:released,smoke``):
# name -> fields it sets.
VARIANTS = {'smoke': _SMOKE, 'released': {'procedure': 'released'}}


def with_variant(config: ml_collections.ConfigDict,
                 arg: Optional[str]) -> ml_collections.ConfigDict:
  """Applies a config argument: '' (as is) or comma-separated VARIANTS names.

  Raises:
    ConfigError: an unknown variant name (the message lists the known ones).
  """
  for name in parse_list(arg or ''):
    if name not in VARIANTS:
      raise ConfigError(
          f'unknown config variant {name!r} (in the config argument '
          f'{arg!r}); known variants: {", ".join(VARIANTS)}, e.g. '
          '--config=configs/kgbd.py:smoke')
    for field, value in VARIANTS[name].items():
      *sections, key = field.split('.')
      section = config
      for part in sections:
        section = section[part]
      section[key] = value
  return config


def get_config(arg: Optional[str] = None) -> ml_collections.ConfigDict:
  """The defaults with the variants in ``arg`` applied."""
  return with_variant(base_config(), arg)

