"""The run identity: which fields define the trained encoders and the results.

``ENCODER_SECTIONS``/``BOOKKEEPING_FIELDS``/``DEVICE_FIELDS`` say which
fields define the trained encoders (``encoder_differences``,
``config_hash``), and ``result_differences`` which other fields shape a run's
results. They compare ConfigDicts, a saved ``config.json`` among them, in a
form that stays the same for configs written before a field existed (old
workdirs resume).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import ml_collections

from sge_jax.config.fields import ENCODER_QUIRKS, QUIRKS, base_config

# The sections whose fields define the trained encoders.
ENCODER_SECTIONS = ('seed', 'data', 'model', 'train')
# Fields under those sections that only say how often and where to log and
# checkpoint: they do not change the trained encoders (a resumed run ends
# bit-identical).
BOOKKEEPING_FIELDS = frozenset({'train.checkpoint_every_steps',
                                'train.keep_checkpoints',
                                'train.log_every_steps',
                                'train.tensorboard'})
# Fields that only say how the training is spread over the devices: the same
# objective and updates, summed in another float order (docs/scaling.md).
DEVICE_FIELDS = frozenset({'train.parallel'})
# Fields that may change between runs in one workdir without invalidating the
# trained encoders: more epochs continue training, a new stopping rule applies
# from the next epoch on, another device layout resumes the same checkpoints.
RESUMABLE_FIELDS = BOOKKEEPING_FIELDS | DEVICE_FIELDS | {'train.epochs',
                                                         'train.early_stopping'}


def flatten(tree: dict, prefix: str = '') -> dict[str, Any]:
  """{'a': {'b': 1}} -> {'a.b': 1}."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def _encoder_tree(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The encoder-defining fields as a tree, in a form that does not change
  for configs written before ``data.seed``, ``data.normalization`` and
  ``quirks`` existed: the default data seed is left out, normalisation
  'none'/'center' is written as the old ``center_sequences`` boolean, and
  encoder quirks appear only when on. (Old workdirs resume and the clean demo
  keeps its config_hash.)"""
  tree = {name: json.loads(config[name].to_json())
          if isinstance(config[name], ml_collections.ConfigDict)
          else config[name] for name in ENCODER_SECTIONS}
  data = tree['data']
  if data.get('seed', -1) == -1:     # the default: the data follow `seed`
    data.pop('seed', None)
  normalization = data.pop('normalization', None)
  centred = data.pop('center_sequences', None)
  if normalization is None:
    normalization = 'center' if centred else 'none'
  if normalization in ('none', 'center'):
    data['center_sequences'] = normalization == 'center'
  else:
    data['normalization'] = normalization
  quirks = config.get('quirks') or {}
  on = {field: True for field in ENCODER_QUIRKS if quirks.get(field)}
  if on:
    tree['quirks'] = on
  return tree


def _encoder_fields(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The encoder-defining fields, flattened; a field the config predates
  counts as its default (fields are only added with defaults that keep the old
  behaviour)."""
  flat = flatten(_encoder_tree(base_config()))
  flat.update(flatten(_encoder_tree(config)))
  return flat


def encoder_differences(old: ml_collections.ConfigDict,
                        new: ml_collections.ConfigDict) -> list[str]:
  """Encoder-defining fields that differ between two configs (sorted)."""
  old_fields, new_fields = _encoder_fields(old), _encoder_fields(new)
  return sorted(field for field in set(old_fields) | set(new_fields)
                if field not in RESUMABLE_FIELDS
                and old_fields.get(field) != new_fields.get(field))


# The sections a re-evaluation of finished encodings can change
# (``python -m sge_jax.evaluate``); the other fields made the encodings.
REEVALUATION_SECTIONS = ('rn', 'eval')


def _result_fields(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The fields outside the encoder identity that shape a run's results,
  flattened: rn.*, eval.*, the procedure, every quirk that is not an encoder
  quirk (None read as its procedure's default) and encoder_workdir. A field
  the config predates counts as its default."""
  defaults = base_config()
  fields = {}
  for name in REEVALUATION_SECTIONS:
    fields.update(flatten(defaults[name].to_dict(), f'{name}.'))
    section = config.get(name)
    if section is not None:
      fields.update(flatten(json.loads(section.to_json()), f'{name}.'))
  procedure = config.get('procedure', 'clean')
  quirks = config.get('quirks') or {}
  fields['procedure'] = procedure
  for field in QUIRKS.values():
    if field not in ENCODER_QUIRKS:
      value = quirks.get(field)
      fields[f'quirks.{field}'] = (procedure == 'released' if value is None
                                   else bool(value))
  fields['encoder_workdir'] = str(config.get('encoder_workdir') or '')
  return fields


def result_differences(old: ml_collections.ConfigDict,
                       new: ml_collections.ConfigDict) -> list[str]:
  """Fields outside the encoder identity that differ between two configs
  and change the results (``_result_fields``), sorted."""
  old_fields, new_fields = _result_fields(old), _result_fields(new)
  return sorted(field for field in new_fields
                if old_fields.get(field) != new_fields[field])


def config_hash(config: ml_collections.ConfigDict) -> str:
  """Short hash of what determines the encoders (ENCODER_SECTIONS without
  BOOKKEEPING_FIELDS and DEVICE_FIELDS)."""
  encoder_fields = _encoder_tree(config)
  for field in BOOKKEEPING_FIELDS | DEVICE_FIELDS:
    section, key = field.split('.')
    encoder_fields[section].pop(key, None)
  text = json.dumps(encoder_fields, sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:16]
