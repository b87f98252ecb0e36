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

In a multi-process job (``sge_jax.distributed``) every process runs ``run``:
all load the data, train and compute the encodings together; process 0 alone
takes the workdir lock, writes the files and evaluates, while the others wait
for it. Checks that can fail on one process only (the lock, the data, the
evaluation) stop every process together.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import pathlib
import re
from typing import Any, Callable, Optional, Sequence

import jax
import ml_collections

from sge_jax import config as config_lib
from sge_jax import distributed
from sge_jax import workdir as workdir_lib
from sge_jax.data import recording_ids
from sge_jax.data.loading import (check_memory, check_trainable,
                                  dataset_summary, prepare_dataset)
from sge_jax.encode import encode_stage, load_encodings
from sge_jax.encode.stage import encoder_source
from sge_jax.errors import ConfigError, DataError
from sge_jax.released import require_equal_person_sets
from sge_jax.evaluate import aggregate_seed_results, evaluate_run
from sge_jax.train import train_encoders
from sge_jax.train.loop import check_same_training_split
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


def with_encoder_model(config: ml_collections.ConfigDict
                       ) -> ml_collections.ConfigDict:
  """A transfer run's config with the ``model`` section of the encoders it
  uses (``encoder_workdir``), so config.json and the results record the
  encoders that made the encodings, not this config's model fields."""
  _, encoder_config = encoder_source(config, pathlib.Path(config.encoder_workdir))
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.model = encoder_config.model
  return config


def run_single(config: ml_collections.ConfigDict,
               workdir: str | pathlib.Path) -> Results:
  """Runs the requested stages of one seed in ``workdir``; returns the results
  (None when ``evaluate`` is not among the stages)."""
  workdir = pathlib.Path(workdir)
  stages = config_lib.parse_stages(config.stages)
  dataset = None
  with distributed.stop_together():
    workdir.mkdir(parents=True, exist_ok=True)
    check_workdir(config, workdir)
    if config.encoder_workdir:
      config = with_encoder_model(config)
    train = 'train' in stages and not config.encoder_workdir
    if 'train' in stages or 'encode' in stages:   # evaluate reads encodings.npz
      dataset = prepare_dataset(config.data, config_lib.data_seed(config))
      logging.info('[data] %s', dataset_summary(dataset))
      if 'evaluate' in stages:
        recording_ids.require_walks(
            str(config.eval.get('level', 'both')),
            {name: split.recordings for name, split in dataset.splits.items()},
            f'dataset {dataset.name} ({dataset.source})')
      if config.quirks.equal_id_counts:
        require_equal_person_sets({name: split.labels
                                   for name, split in dataset.splits.items()})
      if train:
        check_trainable(dataset, int(config.train.batch_size),
                        encoder_training_split(dataset))
      check_memory(config, dataset,
                   encoder_training_split(dataset) if train else None,
                   'encode' in stages)
  if train:
    check_same_training_split(dataset)
  # Written once every check has passed: a rejected run leaves no record.
  if distributed.is_main_process():
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
  results = None
  with distributed.stop_together():    # the other processes wait for process 0
    if distributed.is_main_process():
      results = _evaluate_saved(config, workdir)
  return results


def _over_seeds(runs: Sequence[tuple[ml_collections.ConfigDict, pathlib.Path]],
                aggregate_dir: pathlib.Path,
                run_one: Callable[[ml_collections.ConfigDict, pathlib.Path],
                                  Results]) -> Results:
  """Runs each (config, seed directory) and aggregates their results into
  ``aggregate_dir`` (None when a run has no results)."""
  per_seed = []
  for index, (seed_config, seed_workdir) in enumerate(runs):
    logging.info('[seeds] seed %d (%d of %d) in %s', int(seed_config.seed),
                 index + 1, len(runs), seed_workdir)
    per_seed.append(run_one(seed_config, seed_workdir))
  if any(results is None for results in per_seed):
    return None     # also on every process but 0 of a multi-process job
  return aggregate_seed_results(per_seed, aggregate_dir)


def run(config: ml_collections.ConfigDict, workdir: str | pathlib.Path
        ) -> Results:
  """Validates the config and runs the job once, or once per seed, holding
  the workdir's lock throughout (a second run on it stops at once).

  Returns the results (None on the processes other than 0 of a multi-process
  job, and when ``evaluate`` is not among the stages).
  """
  config = config_lib.resolve_config(config)
  config_lib.validate_config(config, jax.device_count())
  workdir = pathlib.Path(workdir)
  with hold_job_lock(workdir):
    if not config_lib.is_multi_seed(config):
      return run_single(config, workdir)
    runs = []
    for seed in config_lib.parse_seeds(config):
      seed_config = config.copy_and_resolve_references()
      with seed_config.unlocked():
        seed_config.seed = seed
        seed_config.seeds = ''
        seed_config.data.seed = config_lib.data_seed(config)
      runs.append((seed_config, workdir_lib.seed_dir(workdir, seed)))
    return _over_seeds(runs, workdir, run_single)


@contextlib.contextmanager
def hold_job_lock(workdir: pathlib.Path):
  """The workdir lock, taken once for the whole job, by process 0 (the other
  processes of a multi-process job stop too when it is refused)."""
  with contextlib.ExitStack() as held:
    with distributed.stop_together():
      if distributed.is_main_process():
        held.enter_context(hold_workdir_lock(workdir))
    yield


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


def _evaluate_saved(config: ml_collections.ConfigDict, run_dir: pathlib.Path,
                    output: Optional[str] = None) -> Results:
  """The evaluate stage on a run directory's encodings.npz, re-scoring its
  saved RN when that fits; results go to ``run_dir``, or with ``output`` to
  ``run_dir/evaluations/<output>/`` (re-evaluation never replaces the run's
  own results)."""
  log = workdir_lib.MetricsLog(run_dir / workdir_lib.METRICS_FILE)
  out_dir = run_dir if output is None else workdir_lib.evaluation_dir(run_dir,
                                                                      output)
  return evaluate_run(config, load_encodings(run_dir / workdir_lib.ENCODINGS_FILE),
                      out_dir, training_warnings=log.warnings(),
                      saved_rn_path=run_dir / workdir_lib.RN_FILE)


def evaluation_name(overrides: dict[str, Any]) -> str:
  """A folder name for a re-evaluation: 'rn.selection-fixed_rn.epochs-3', or
  'rescored' without overrides."""
  parts = [f'{field}-{value}' for field, value in sorted(overrides.items())]
  name = '_'.join(parts) or 'rescored'
  return re.sub(r'[^A-Za-z0-9_.,-]+', '-', name)[:120]


def reevaluate(workdir: str | pathlib.Path,
               overrides: Optional[dict[str, Any]] = None,
               name: Optional[str] = None) -> tuple[dict[str, Any], pathlib.Path]:
  """Re-evaluates one run, or every seed of a multi-seed run and aggregates.

  The results go to ``<workdir>/evaluations/<name>/`` (per seed:
  ``seed_<s>/evaluations/<name>/``); the run's own results are never replaced.
  The RN is re-scored from the run's saved ``rn.npz`` when that can serve the
  requested settings (same numbers as the run), else trained again (a note in
  the results says why).

  Args:
    workdir: the workdir of a finished run.
    overrides: ``{'rn.selection': 'fixed', ...}`` on top of the saved config
      (rn.* and eval.* only).
    name: the evaluation's folder name (default: from the overrides).

  Returns:
    (the results dict, the aggregate for a multi-seed workdir; its folder).
  """
  workdir = pathlib.Path(workdir)
  overrides = dict(overrides or {})
  name = name or evaluation_name(overrides)
  if not workdir.is_dir():
    raise DataError(f'--workdir={workdir} is not a directory')
  with hold_workdir_lock(workdir):
    out_dir = workdir_lib.evaluation_dir(workdir, name)
    seed_dirs = workdir_lib.seed_directories(workdir)
    if not seed_dirs:
      return _evaluate_saved(_saved_run(workdir, overrides), workdir,
                             name), out_dir
    runs = [(_saved_run(seed_workdir, overrides), seed_workdir)
            for seed_workdir in seed_dirs]
    return _over_seeds(runs, out_dir, functools.partial(
        _evaluate_saved, output=name)), out_dir
