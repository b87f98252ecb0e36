"""The whole job of SPEC §1: train encoders -> CAGEs -> recognition -> evaluation.

Workdir layout (one run; a multi-seed run has one such directory per seed under
``<workdir>/seed_<s>/`` plus the aggregated ``results.json``/``report.md``):

  config.json      the full config of the run
  metrics.jsonl    one JSON object per logging step (losses, steps/s, epoch, ...)
  checkpoints/     Orbax checkpoints of the encoder train state (newest few)
  encodings.npz    CAGEs of every split (sge_jax/encodings.py)
  results.json     metrics of every protocol, split and baseline
  report.md        a table to paste; *.png plots when matplotlib is installed

Running the same command again resumes: training continues from the newest
checkpoint, and finished stages are redone only when they are requested again
(encode and evaluate are cheap and deterministic).
"""

from __future__ import annotations

import json
import logging
import pathlib
from typing import Any, Optional

import jax
import ml_collections

from sge_jax import cages, config_validation, encoder_training, files
from sge_jax.checkpointing import CheckpointMismatchError, has_checkpoints
from sge_jax.data.dataset import (SkeletonDataset, center_sequences,
                                  first_sequences)
from sge_jax.data.loading import load_dataset
from sge_jax.encodings import load_encodings, save_encodings
from sge_jax.errors import ConfigError

CONFIG_FILE = 'config.json'
ENCODINGS_FILE = 'encodings.npz'
# Fields that may change between runs in one workdir without invalidating the
# trained encoders (everything else under seed/data/model/train must match).
_RESUMABLE_CHANGES = cages.BOOKKEEPING_FIELDS | {'train.epochs',
                                                'train.early_stopping'}


def config_from_json(path: str | pathlib.Path) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(json.loads(pathlib.Path(path).read_text()))


def _flatten(tree: dict, prefix: str = '') -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def encoder_differences(old: ml_collections.ConfigDict,
                        new: ml_collections.ConfigDict) -> list[str]:
  """Encoder-defining fields (seed, data, model, train) that differ."""
  old_flat = _flatten(json.loads(old.to_json()))
  new_flat = _flatten(json.loads(new.to_json()))
  sections = ('seed', 'data.', 'model.', 'train.')
  return sorted(
      field for field in set(old_flat) | set(new_flat)
      if field.startswith(sections) and field not in _RESUMABLE_CHANGES
      and old_flat.get(field) != new_flat.get(field))


def check_workdir(config: ml_collections.ConfigDict,
                  workdir: pathlib.Path) -> None:
  """Refuses to resume a workdir whose checkpoints come from another config."""
  saved = workdir / CONFIG_FILE
  if not saved.exists() or not has_checkpoints(workdir / 'checkpoints'):
    return
  differences = encoder_differences(config_from_json(saved), config)
  if differences:
    raise ConfigError(
        f'{workdir} holds encoders trained with a different config '
        f'({", ".join(differences)} differ from {saved}). Use a new --workdir, '
        'or delete that one to start over.')


def _dataset_summary(dataset: SkeletonDataset) -> str:
  splits = ', '.join(f'{name}: {s.num_sequences} sequences / '
                     f'{len(set(s.labels.tolist()))} people'
                     for name, s in dataset.splits.items())
  return (f'dataset {dataset.name} (f={dataset.length}, J={dataset.num_joints}, '
          f'{dataset.source}): {splits}')


def _encoder_source(config: ml_collections.ConfigDict, workdir: pathlib.Path
                    ) -> tuple[pathlib.Path, ml_collections.ConfigDict]:
  """Where the trained encoders are, and the config they were trained with."""
  if not config.encoder_workdir:
    return workdir, config
  source = pathlib.Path(config.encoder_workdir)
  if not (source / CONFIG_FILE).exists():
    raise ConfigError(f'config.encoder_workdir={str(source)!r} has no '
                      f'{CONFIG_FILE}: point it at the workdir of a finished run.')
  return source, config_from_json(source / CONFIG_FILE)


def encode_stage(config: ml_collections.ConfigDict, dataset: SkeletonDataset,
                 workdir: pathlib.Path, params=None) -> None:
  """Writes ``encodings.npz``; ``params`` are the stacked encoders if this process
  just trained them, else they are restored from the (encoder) workdir."""
  source, encoder_config = _encoder_source(config, workdir)
  if source != workdir:
    logging.info('[encode] using the encoders trained in %s (%s, pretext %s)',
                 source, encoder_config.data.name, encoder_config.model.pretext)
  if params is None:
    try:
      params = encoder_training.restore_trained_params(
          encoder_config, source, int(encoder_config.data.length),
          dataset.num_joints)
    except CheckpointMismatchError as error:
      raise ConfigError(
          f'The encoders in {source} do not fit {dataset.name} '
          f'(J={dataset.num_joints}): {error}. Transfer between datasets needs '
          'the same joint count J.') from error
  model = encoder_training.build_model(encoder_config.model, dataset.num_joints)
  encoding_config = config.copy_and_resolve_references()
  with encoding_config.unlocked():
    encoding_config.model = encoder_config.model
  encoding_set = cages.encode_dataset(encoding_config, dataset, params, model)
  save_encodings(workdir / ENCODINGS_FILE, encoding_set)
  logging.info('[encode] %d sequences, CAGEs [f=%d, %d] -> %s',
               encoding_set.encodings.shape[0], encoding_set.encodings.shape[1],
               encoding_set.encodings.shape[2], workdir / ENCODINGS_FILE)


def run_single(config: ml_collections.ConfigDict,
               workdir: str | pathlib.Path) -> Optional[dict]:
  """Runs the requested stages of one seed in ``workdir``; returns the results."""
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  stages = config_validation.parse_stages(config.stages)
  check_workdir(config, workdir)
  files.write_text_atomically(workdir / CONFIG_FILE,
                              config.to_json(indent=2) + '\n')
  if 'train' in stages or 'encode' in stages:   # evaluate reads encodings.npz
    dataset = first_sequences(load_dataset(config.data, int(config.seed)),
                              int(config.data.max_sequences))
    if config.data.center_sequences:
      dataset = center_sequences(dataset)
    logging.info('[data] %s', _dataset_summary(dataset))
  trained_params = None
  if 'train' in stages:
    if config.encoder_workdir:
      logging.info('[train] skipped: encoders come from %s',
                   config.encoder_workdir)
    else:
      trained_params = encoder_training.train_encoders(config, dataset,
                                                       workdir).params
  if 'encode' in stages:
    encode_stage(config, dataset, workdir, trained_params)
  if 'evaluate' not in stages:
    return None
  from sge_jax.evaluation import evaluate_run  # pylint: disable=g-import-not-at-top
  return evaluate_run(config, load_encodings(workdir / ENCODINGS_FILE), workdir)


def run(config: ml_collections.ConfigDict, workdir: str | pathlib.Path
        ) -> Optional[dict]:
  """Validates the config and runs the job once per seed."""
  config_validation.validate_config(config, jax.local_device_count())
  workdir = pathlib.Path(workdir)
  seeds = config_validation.parse_seeds(config)
  if len(seeds) == 1 and not config_validation.parse_list(config.seeds):
    return run_single(config, workdir)
  per_seed = []
  for seed in seeds:
    seed_config = config.copy_and_resolve_references()
    with seed_config.unlocked():
      seed_config.seed = seed
      seed_config.seeds = ''
    logging.info('[seeds] seed %d of %s', seed, seeds)
    per_seed.append(run_single(seed_config, workdir / f'seed_{seed}'))
  if 'evaluate' not in config_validation.parse_stages(config.stages):
    return None
  from sge_jax.evaluation import aggregate_seed_results  # pylint: disable=g-import-not-at-top
  return aggregate_seed_results(per_seed, workdir)
