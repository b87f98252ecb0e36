"""From the config a user gives to the config a run uses: resolved, checked.

``resolve_config`` fills the derived fields (the quirks from the procedure,
the deprecated ``data.center_sequences``); ``validate_config`` checks a whole
config before any work starts and raises ``ConfigError`` naming the field, the
allowed values and the flag that fixes it.
"""

from __future__ import annotations

import logging

import ml_collections

from sge_jax.config.checks import (SEED_RANGE, int_at_least, invalid, is_seed,
                                   mistyped_field, one_of, parse_seeds,
                                   parse_stages, positive_float, require)
from sge_jax.config.fields import (ATTENTION_TYPES, DECODER_INPUT_MODES,
                                   EARLY_STOPPING_RULES, FORMATS,
                                   NORMALIZATIONS, PRETEXTS, PROCEDURES,
                                   QUIRKS)
from sge_jax.config.settings import EvalSettings, RNSettings

def resolve_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy with the derived fields filled in, the one place that does it.

  * every ``quirks.*`` left at None takes the procedure's default (on for
    'released', off for 'clean'), so one quirk set on the command line wins;
  * the deprecated ``data.center_sequences``, when set, becomes
    ``data.normalization`` ('center' / 'none') with a warning, and is cleared.

  Raises:
    ConfigError: an unknown procedure.
  """
  config = ml_collections.ConfigDict(config.to_dict())
  procedure = config.get('procedure', 'clean')
  one_of(procedure, 'procedure', PROCEDURES)
  with config.unlocked():
    if 'quirks' not in config:
      config.quirks = ml_collections.ConfigDict()
    for field in QUIRKS.values():
      if config.quirks.get(field) is None:
        config.quirks[field] = procedure == 'released'
    data = config.data
    if 'normalization' not in data:
      data.normalization = 'none'
    if data.get('center_sequences') is not None:
      data.normalization = 'center' if data.center_sequences else 'none'
      logging.warning(
          'config.data.center_sequences is deprecated: read as '
          '--config.data.normalization=%s; use that field instead.',
          data.normalization)
    data.center_sequences = None
  return config


# ----------------------------------------------------------------- the whole config


def validate_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Raises ConfigError naming the first bad field and the allowed values.

  ``num_devices`` is the global device count: every device of every process
  of the job shares each batch of ``train.batch_size``. Checks the config as
  ``resolve_config`` makes it (quirks and normalisation filled in).
  """
  config = resolve_config(config)
  mistyped = mistyped_field(config)
  if mistyped:
    raise invalid(*mistyped)
  parse_stages(config.stages)
  require(is_seed(config.seed), 'seed', config.seed, SEED_RANGE)
  parse_seeds(config)
  one_of(config.procedure, 'procedure', PROCEDURES)
  for field in QUIRKS.values():
    require(isinstance(config.quirks[field], bool), f'quirks.{field}',
            config.quirks[field], 'True or False (resolve_config fills None)')
  data, model, train = config.data, config.model, config.train
  one_of(data.format, 'data.format', FORMATS)
  one_of(data.normalization, 'data.normalization', NORMALIZATIONS)
  int_at_least(data.length, 'data.length', 2)
  if data.format == 'npz':
    require(bool(data.path), 'data.path', data.path, 'the .npz file to read')
  int_at_least(data.max_sequences, 'data.max_sequences', 0)
  require(data.seed == -1 or is_seed(data.seed), 'data.seed', data.seed,
          f'-1 (follow config.seed) or {SEED_RANGE}')
  one_of(model.attention, 'model.attention', ATTENTION_TYPES)
  one_of(model.pretext, 'model.pretext', PRETEXTS)
  # rev_rec_plus fixes its tasks' attention (rev_rec LA, prediction and sorting
  # BA); a different setting would be ignored yet recorded in the outputs.
  require(model.pretext != 'rev_rec_plus' or model.attention == 'LA',
          'model.attention', model.attention,
          "LA with model.pretext=rev_rec_plus (its prediction and sorting "
          "models always use BA)")
  one_of(model.decoder_input, 'model.decoder_input', DECODER_INPUT_MODES)
  int_at_least(model.hidden, 'model.hidden')
  int_at_least(model.num_layers, 'model.num_layers')
  positive_float(model.contrastive_weight, 'model.contrastive_weight',
                 allow_zero=True)
  int_at_least(train.epochs, 'train.epochs')
  int_at_least(train.batch_size, 'train.batch_size', 2)
  require(train.batch_size % num_devices == 0, 'train.batch_size',
          train.batch_size, f'a multiple of the {num_devices} devices (of '
          'all processes) that share each batch')
  positive_float(train.learning_rate, 'train.learning_rate')
  positive_float(train.temperature, 'train.temperature')
  positive_float(train.weight_decay, 'train.weight_decay', allow_zero=True)
  positive_float(train.clip_value, 'train.clip_value')
  one_of(train.early_stopping, 'train.early_stopping', EARLY_STOPPING_RULES)
  int_at_least(train.checkpoint_every_steps, 'train.checkpoint_every_steps')
  int_at_least(train.keep_checkpoints, 'train.keep_checkpoints')
  int_at_least(train.log_every_steps, 'train.log_every_steps')
  # The recognition and evaluation sections are checked here too, so a bad
  # value fails before hours of encoder training.
  RNSettings.from_config(config)
  EvalSettings.from_config(config)

