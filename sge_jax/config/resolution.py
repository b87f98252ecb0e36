"""From the config a user gives to the settings a job runs with, once.

``resolve(config, num_devices)`` is the one place a ConfigDict becomes
settings: ``resolve_config`` fills the derived fields (the quirks from the
procedure, the deprecated ``data.center_sequences``), ``validate_config``
checks the whole config before any work starts (raising ``ConfigError`` naming
the field, the allowed values and the flag that fixes it), and every run of
the job (one per seed) becomes a frozen ``RunSettings``. ``run_settings``
also reads a saved config.json (re-evaluation); ``with_transfer`` gives a
transfer run the encoders it uses.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
from typing import Optional

import ml_collections

from sge_jax.config.checks import (SEED_RANGE, data_seed, int_at_least, invalid,
                                   is_multi_seed, is_seed, mistyped_field,
                                   one_of, parse_list, parse_seeds,
                                   parse_stages, positive_float, require)
from sge_jax.config.fields import (ATTENTION_TYPES, DECODER_INPUT_MODES,
                                   EARLY_STOPPING_RULES, FORMATS,
                                   NORMALIZATIONS, PARALLEL_MODES, PRETEXTS,
                                   PROCEDURES, QUIRKS, STAGES, base_config)
from sge_jax.config.identity import config_hash
from sge_jax.config.settings import (DataSettings, EvalSettings, JobSettings,
                                     ModelSettings, ParallelSettings,
                                     QuirkSettings, RNSettings, RunSettings,
                                     TrainSettings, TransferSettings)


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

  ``num_devices`` is the global device count: in the 'data' mode of
  ``train.parallel`` every device of every process of the job shares each
  batch of ``train.batch_size``. Checks the config as ``resolve_config`` makes
  it (quirks and normalisation filled in).
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
  if parallel_settings(config, num_devices).mode == 'data':
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
  if train.tensorboard:
    # Its writer is an optional extra: missing, the run stops before any work.
    from sge_jax.workdir import tensorboard  # pylint: disable=import-outside-toplevel
    tensorboard.require_writer()
  # The recognition and evaluation sections are checked here too, so a bad
  # value fails before hours of encoder training.
  RNSettings.from_config(config)
  EvalSettings.from_config(config)



# ----------------------------------------------------------------- settings


def parallel_settings(config: ml_collections.ConfigDict, num_devices: int
                      ) -> ParallelSettings:
  """``config.train.parallel`` resolved for the job of ``config`` on
  ``num_devices`` devices: 'seeds' where asked, or where 'auto' finds more
  than one seed and the encoders trained here; else 'data'.

  Raises:
    ConfigError: an unknown mode, or 'seeds' for one seed or a run that
      trains no encoders (``encoder_workdir``).
  """
  requested = config.train.get('parallel', 'auto')
  one_of(requested, 'train.parallel', PARALLEL_MODES)
  several = len(parse_seeds(config)) > 1
  trains_here = not config.get('encoder_workdir')
  if requested == 'seeds':
    require(several, 'train.parallel', requested,
            "'data' or 'auto' for one seed: 'seeds' trains the seeds of "
            'config.seeds at once (e.g. --config.seeds=0-7)')
    require(trains_here, 'train.parallel', requested,
            "'data' or 'auto' with config.encoder_workdir: 'seeds' trains "
            "every seed's encoders at once, and this run trains none (it "
            'encodes with those of encoder_workdir)')
  stack = requested == 'seeds' or (requested == 'auto' and several
                                   and trains_here)
  return ParallelSettings(num_devices=num_devices,
                          mode='seeds' if stack else 'data',
                          automatic=stack and requested == 'auto')


def resolve(config: ml_collections.ConfigDict, num_devices: int
            ) -> JobSettings:
  """The settings of the job ``config`` describes, resolved and checked once.

  Args:
    config: the job's config as the user gave it (a config file with its
      command-line overrides).
    num_devices: every device of every process of the job.

  Raises:
    ConfigError: the first bad field (``validate_config``).
  """
  config = resolve_config(config)
  validate_config(config, num_devices)
  parallel = parallel_settings(config, num_devices)
  return JobSettings(
      seeds=tuple(parse_seeds(config)), multi_seed=is_multi_seed(config),
      seeds_field=str(config.seeds),
      runs=tuple(run_settings(seed_config, num_devices, parallel)
                 for seed_config in seed_configs(config)))


def seed_configs(config: ml_collections.ConfigDict
                 ) -> list[ml_collections.ConfigDict]:
  """The config of every run of a resolved job config: the config itself, or
  one per seed of ``config.seeds`` (that ``seed``, ``seeds`` empty, and
  ``data.seed`` the job's data seed: every seed trains on the same data)."""
  if not is_multi_seed(config):
    return [config]
  configs = []
  for seed in parse_seeds(config):
    seed_config = config.copy_and_resolve_references()
    with seed_config.unlocked():
      seed_config.seed = seed
      seed_config.seeds = ''
      seed_config.data.seed = data_seed(config)
    configs.append(seed_config)
  return configs


def run_settings(config: ml_collections.ConfigDict, num_devices: int,
                 parallel: Optional[ParallelSettings] = None) -> RunSettings:
  """The settings of one run's config: a resolved, checked one
  (``resolve``), or one saved in a run's config.json, whose fields written
  before they existed take their defaults (``base_config``). ``parallel``:
  the job's (``parallel_settings``; default 'data' on ``num_devices``).

  Raises:
    ConfigError: a bad rn.* or eval.* value (``RNSettings.from_config``,
      ``EvalSettings.from_config``).
    AttributeError, KeyError: a saved config without an rn.* or eval.* field
      that has no default there.
  """
  rn = RNSettings.from_config(config)
  evaluation = EvalSettings.from_config(config)
  return RunSettings(
      seed=int(config.seed),
      stages=_stages(config),
      encoder_workdir=str(config.get('encoder_workdir') or ''),
      procedure=str(config.get('procedure', 'clean')),
      quirks=QuirkSettings.from_section(config.get('quirks')),
      data=DataSettings.from_config(config),
      model=ModelSettings.from_section(config.model),
      train=TrainSettings.from_section(config.train),
      rn=rn, eval=evaluation,
      parallel=parallel or ParallelSettings(num_devices=num_devices),
      config_hash=config_hash(config), record=config.to_json(indent=2))


def _stages(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The stages a config names, in STAGES order; a saved config.json is not
  checked again (``validate_config`` checked it when its run started, and a
  re-evaluation runs only the evaluate stage)."""
  named = parse_list(config.get('stages', base_config().stages))
  return tuple(stage for stage in STAGES if stage in named)


def transfer_settings(encoder_workdir: pathlib.Path,
                      saved: ml_collections.ConfigDict) -> TransferSettings:
  """The encoders in ``encoder_workdir``, from the config.json their run
  saved (``saved``)."""
  return TransferSettings(
      workdir=encoder_workdir, dataset=str(saved.data.name),
      length=int(saved.data.length),
      model=ModelSettings.from_section(saved.model),
      model_record=saved.model.to_json())


def with_transfer(run: RunSettings, transfer: TransferSettings) -> RunSettings:
  """A transfer run's settings with the encoders it uses: their ``model``,
  also in the record (so config.json and the results record the encoders
  that made the encodings, not this config's model fields)."""
  record = ml_collections.ConfigDict(json.loads(run.record))
  with record.unlocked():
    record.model = ml_collections.ConfigDict(json.loads(transfer.model_record))
  return dataclasses.replace(
      run, model=transfer.model, transfer=transfer,
      config_hash=config_hash(record), record=record.to_json(indent=2))
