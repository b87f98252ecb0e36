"""The job: check the config, load the data, train, encode, evaluate; per seed.

``run(config, workdir)`` is what ``launch.py`` calls: it validates the whole
config before any work, then runs the requested stages (``config.stages``) once,
or once per seed of ``config.seeds`` in ``<workdir>/seed_<s>/`` and aggregates
mean ± std at the top (``sge_jax.workdir`` lists the files). ``reevaluate``
re-runs only the evaluate stage of a finished run (``python -m
sge_jax.evaluate``). Both go through the one seed loop, ``_over_seeds``.

Running the same command again resumes: training continues from the newest
checkpoint, and encode and evaluate (cheap and deterministic) are redone when
requested.
"""

from __future__ import annotations

import logging
import pathlib
from typing import Any, Callable, Optional, Sequence

import jax
import ml_collections

from sge_jax import config as config_lib
from sge_jax import workdir as workdir_lib
from sge_jax.data.loading import check_trainable, dataset_summary, prepare_dataset
from sge_jax.encode import encode_stage, load_encodings
from sge_jax.errors import ConfigError, DataError
from sge_jax.released import require_equal_person_sets
from sge_jax.evaluate import aggregate_seed_results, evaluate_run
from sge_jax.train import train_encoders
from sge_jax.train.checkpoints import has_checkpoints
from sge_jax.train.setup import encoder_training_split
from sge_jax.workdir_lock import hold_workdir_lock

Results = Optional[dict[str, Any]]


def check_workdir(config: ml_collections.ConfigDict,
                  workdir: pathlib.Path) -> None:
  """Refuses to resume a workdir whose checkpoints come from another config."""
  saved = workdir / workdir_lib.CONFIG_FILE
  if (not saved.exists()
      or not has_checkpoints(workdir / workdir_lib.CHECKPOINT_DIR)):
    return
  differences = config_lib.encoder_differences(workdir_lib.read_config(saved),
                                               config)
  if differences:
    raise ConfigError(
        f'{workdir} holds encoders trained with a different config '
        f'({", ".join(differences)} differ from {saved}). Use a new --workdir, '
        'or delete that one to start over.')


def run_single(config: ml_collections.ConfigDict,
               workdir: str | pathlib.Path) -> Results:
  """Runs the requested stages of one seed in ``workdir``; returns the results
  (None when ``evaluate`` is not among the stages)."""
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  stages = config_lib.parse_stages(config.stages)
  check_workdir(config, workdir)
  train = 'train' in stages and not config.encoder_workdir
  dataset = None
  if 'train' in stages or 'encode' in stages:   # evaluate reads encodings.npz
    dataset = prepare_dataset(config.data, int(config.seed))
    logging.info('[data] %s', dataset_summary(dataset))
    if config.quirks.equal_id_counts:
      require_equal_person_sets({name: split.labels
                                 for name, split in dataset.splits.items()})
    if train:
      check_trainable(dataset, int(config.train.batch_size),
                      encoder_training_split(dataset))
  # Written once every check has passed: a rejected run leaves no record.
  workdir_lib.write_config(config, workdir)
  trained_params = None
  if 'train' in stages and not train:
    logging.info('[train] skipped: encoders come from %s',
                 config.encoder_workdir)
  if train:
    trained_params = train_encoders(config, dataset, workdir).params
  if 'encode' in stages:
    encode_stage(config, dataset, workdir, trained_params)
  if 'evaluate' not in stages:
    return None
  return evaluate_run(config, load_encodings(workdir / workdir_lib.ENCODINGS_FILE),
                      workdir)


def _over_seeds(runs: Sequence[tuple[ml_collections.ConfigDict, pathlib.Path]],
                workdir: pathlib.Path,
                run_one: Callable[[ml_collections.ConfigDict, pathlib.Path],
                                  Results]) -> Results:
  """Runs each (config, seed directory) and aggregates their results into
  ``workdir`` (None when a run has no results)."""
  per_seed = []
  for index, (seed_config, seed_workdir) in enumerate(runs):
    logging.info('[seeds] seed %d (%d of %d) in %s', int(seed_config.seed),
                 index + 1, len(runs), seed_workdir)
    per_seed.append(run_one(seed_config, seed_workdir))
  if any(results is None for results in per_seed):
    return None
  return aggregate_seed_results(per_seed, workdir)


def run(config: ml_collections.ConfigDict, workdir: str | pathlib.Path
        ) -> Results:
  """Validates the config and runs the job once, or once per seed, holding
  the workdir's lock throughout (a second run on it stops at once)."""
  config = config_lib.resolve_config(config)
  config_lib.validate_config(config, jax.local_device_count())
  workdir = pathlib.Path(workdir)
  with hold_workdir_lock(workdir):
    if not config_lib.is_multi_seed(config):
      return run_single(config, workdir)
    runs = []
    for seed in config_lib.parse_seeds(config):
      seed_config = config.copy_and_resolve_references()
      with seed_config.unlocked():
        seed_config.seed = seed
        seed_config.seeds = ''
      runs.append((seed_config, workdir_lib.seed_dir(workdir, seed)))
    return _over_seeds(runs, workdir, run_single)


# ----------------------------------------------------------------- re-evaluation

# Sections a re-evaluation can change: everything else made the encodings.
REEVALUATION_SECTIONS = ('rn', 'eval')


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: dict[str, Any]) -> ml_collections.ConfigDict:
  """A copy of a saved ``config`` with ``{'rn.epochs': 5, ...}`` applied.

  Raises:
    ConfigError: an override outside ``REEVALUATION_SECTIONS`` (it would not
      change the saved encodings), naming every such field.
  """
  refused = sorted(field for field in overrides
                   if field.split('.')[0] not in REEVALUATION_SECTIONS)
  if refused:
    raise ConfigError(
        f're-evaluation cannot honour --config.{", --config.".join(refused)}: '
        'the encodings were made with the saved value. Only rn.* and eval.* '
        'fields apply here; for the others run launch.py with a new --workdir.')
  config = ml_collections.ConfigDict(config.to_dict())
  for field, value in overrides.items():
    *sections, name = field.split('.')
    section = config
    for part in sections:
      section = section[part]
    section[name] = value
  return config


def _saved_run(run_dir: pathlib.Path, overrides: dict[str, Any]
               ) -> ml_collections.ConfigDict:
  """The saved config of one run with the overrides, checked."""
  config_path = run_dir / workdir_lib.CONFIG_FILE
  if not config_path.exists():
    raise DataError(
        f'No {workdir_lib.CONFIG_FILE} in {run_dir}: the job writes it when a '
        'run starts (python launch.py --config=... --workdir=DIR). Point '
        '--workdir at the workdir of a run.')
  if not (run_dir / workdir_lib.ENCODINGS_FILE).exists():
    raise DataError(
        f'No {workdir_lib.ENCODINGS_FILE} in {run_dir}: the encode stage writes '
        'it after training. Finish the run first (--config.stages=encode to '
        'encode with the trained checkpoints).')
  config = apply_overrides(workdir_lib.read_config(config_path), overrides)
  config_lib.RNSettings.from_config(config)
  config_lib.EvalSettings.from_config(config)
  return config


def _evaluate_saved(config: ml_collections.ConfigDict,
                    run_dir: pathlib.Path) -> Results:
  return evaluate_run(config, load_encodings(run_dir / workdir_lib.ENCODINGS_FILE),
                      run_dir)


def reevaluate(workdir: str | pathlib.Path,
               overrides: Optional[dict[str, Any]] = None) -> dict[str, Any]:
  """Re-evaluates one run, or every seed of a multi-seed run and aggregates.

  Args:
    workdir: the workdir of a finished run.
    overrides: ``{'rn.selection': 'fixed', ...}`` on top of the saved config
      (rn.* and eval.* only).

  Returns:
    The results dict (the aggregate for a multi-seed workdir).
  """
  workdir = pathlib.Path(workdir)
  overrides = dict(overrides or {})
  if not workdir.is_dir():
    raise DataError(f'--workdir={workdir} is not a directory')
  with hold_workdir_lock(workdir):
    seed_dirs = workdir_lib.seed_directories(workdir)
    if not seed_dirs:
      return _evaluate_saved(_saved_run(workdir, overrides), workdir)
    runs = [(_saved_run(seed_workdir, overrides), seed_workdir)
            for seed_workdir in seed_dirs]
    return _over_seeds(runs, workdir, _evaluate_saved)
