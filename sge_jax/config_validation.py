"""Early, clear errors for bad config values (before any data is read)."""

from __future__ import annotations

import math
from typing import Any, Iterable

import ml_collections

from sge_jax import evaluation, recognition
from sge_jax.data.loading import FORMATS
from sge_jax.errors import ConfigError
from sge_jax.losses import ATTENTION_TYPES
from sge_jax.models import DECODER_INPUT_MODES
from sge_jax.pretext import PRETEXTS

STAGES = ('train', 'encode', 'evaluate')
EARLY_STOPPING_RULES = ('none', 'paper')


def parse_list(text: str) -> list[str]:
  return [item.strip() for item in str(text).split(',') if item.strip()]


def parse_stages(text: str) -> list[str]:
  stages = parse_list(text)
  unknown = [s for s in stages if s not in STAGES]
  if unknown or not stages:
    raise ConfigError(f'config.stages={text!r}: use a comma-separated subset of '
                      f'{", ".join(STAGES)} (got unknown {unknown or "nothing"})')
  return [s for s in STAGES if s in stages]


def parse_seeds(config: ml_collections.ConfigDict) -> list[int]:
  """``config.seeds`` ('0,1,2') as ints, or ``[config.seed]`` when empty."""
  items = parse_list(config.seeds)
  if not items:
    return [int(config.seed)]
  try:
    seeds = [int(item) for item in items]
  except ValueError:
    raise ConfigError(f'config.seeds={config.seeds!r} must be comma-separated '
                      'integers, e.g. --config.seeds=0,1,2') from None
  if len(set(seeds)) != len(seeds):
    raise ConfigError(f'config.seeds={config.seeds!r} repeats a seed')
  return seeds


def _require(condition: bool, field: str, value: Any, expected: str) -> None:
  if not condition:
    raise ConfigError(f'config.{field}={value!r} is invalid: expected {expected}. '
                      f'Override it with --config.{field}=...')


def _one_of(value, field: str, allowed: Iterable[str]) -> None:
  allowed = tuple(allowed)
  _require(value in allowed, field, value, f'one of {", ".join(allowed)}')


def _positive_int(value, field: str, minimum: int = 1) -> None:
  _require(isinstance(value, int) and value >= minimum, field, value,
           f'an integer >= {minimum}')


def _positive_float(value, field: str, allow_zero: bool = False) -> None:
  ok = isinstance(value, (int, float)) and math.isfinite(value) and (
      value >= 0 if allow_zero else value > 0)
  _require(ok, field, value, 'a finite number ' + ('>= 0' if allow_zero else '> 0'))


def validate_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Raises ConfigError naming the first bad field and the allowed values."""
  parse_stages(config.stages)
  parse_seeds(config)
  data, model, train = config.data, config.model, config.train
  _one_of(data.format, 'data.format', FORMATS)
  _positive_int(data.length, 'data.length', 2)
  if data.format == 'npz':
    _require(bool(data.path), 'data.path', data.path, 'the .npz file to read')
  _positive_int(data.max_sequences, 'data.max_sequences', 0)
  _one_of(model.attention, 'model.attention', ATTENTION_TYPES)
  _one_of(model.pretext, 'model.pretext', PRETEXTS)
  # rev_rec_plus fixes its tasks' attention (rev_rec LA, prediction and sorting
  # BA); a different setting would be ignored yet recorded in the outputs.
  _require(model.pretext != 'rev_rec_plus' or model.attention == 'LA',
           'model.attention', model.attention,
           "LA with model.pretext=rev_rec_plus (its prediction and sorting "
           "models always use BA)")
  _one_of(model.decoder_input, 'model.decoder_input', DECODER_INPUT_MODES)
  _positive_int(model.hidden, 'model.hidden')
  _positive_int(model.num_layers, 'model.num_layers')
  _positive_float(model.contrastive_weight, 'model.contrastive_weight',
                  allow_zero=True)
  _positive_int(train.epochs, 'train.epochs')
  _positive_int(train.batch_size, 'train.batch_size', 2)
  _require(train.batch_size % num_devices == 0, 'train.batch_size',
           train.batch_size, f'a multiple of the {num_devices} devices')
  _require(train.batch_size // num_devices >= 1, 'train.batch_size',
           train.batch_size, 'at least one sequence per device')
  _positive_float(train.learning_rate, 'train.learning_rate')
  _positive_float(train.temperature, 'train.temperature')
  _positive_float(train.weight_decay, 'train.weight_decay', allow_zero=True)
  _positive_float(train.clip_value, 'train.clip_value')
  _one_of(train.early_stopping, 'train.early_stopping', EARLY_STOPPING_RULES)
  _positive_int(train.checkpoint_every_steps, 'train.checkpoint_every_steps')
  _positive_int(train.keep_checkpoints, 'train.keep_checkpoints')
  _positive_int(train.log_every_steps, 'train.log_every_steps')
  # The recognition and evaluation sections are checked by their own settings
  # classes, so a bad value fails here, before hours of encoder training.
  recognition.RNSettings.from_config(config)
  evaluation.EvalSettings.from_config(config)
