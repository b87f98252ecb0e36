"""The job: check the config, load the data, train, encode, evaluate; per seed.

``run(config, workdir)`` is what ``launch.py`` calls: it resolves the config
once, before any work, into frozen settings (``sge_jax.config.resolve``: the
whole config checked, one ``RunSettings`` per seed), then runs the requested
stages (``config.stages``) once, or once per seed of ``config.seeds`` in
``<workdir>/seed_<s>/`` and aggregates mean ± std at the top
(``sge_jax.workdir`` lists the files). The stages read only those settings.
``reevaluate`` re-runs only the evaluate stage of a finished run (``python -m
sge_jax.evaluate``) with the settings its config.json records. Both go through
the one seed loop, ``over_seeds``.

With ``train.parallel`` 'seeds' (``ParallelSettings``; 'auto' picks it for
several seeds) the train stage of every seed runs first, at once
(``train_seeds_at_once``: one seed stack over every device), and the seed loop
then encodes and evaluates each seed from its own checkpoints: the
``seed_<s>/`` folders hold the files a sequential run of each seed writes.

Running the same command again resumes: training continues from the newest
checkpoint, and encode and evaluate (cheap and deterministic) are redone when
requested. What a finished run holds is never replaced by other settings: more
training epochs go on, but other rn.*/eval.* settings are refused with the
``python -m sge_jax.evaluate`` command that gives their results under
``evaluations/``, and anything else that made the results with a new
--workdir (``check_finished_run``); config.json is written only once every
check, the checkpoints' shapes included, has passed.

In a multi-process job (``sge_jax.distributed``) every process runs ``run``:
all load the data, train and compute the encodings together; process 0 alone
takes the workdir lock, writes the files and evaluates, while the others wait
for it. Processes that run different configs stop before any work, naming
the fields; checks that can fail on one process only (the lock, the data, the
evaluation) stop every process together.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import pathlib
import shlex
import time
from typing import Any, Callable, Optional, Sequence

import jax
import ml_collections
import numpy as np

from sge_jax import distributed
from sge_jax import workdir as workdir_lib
from sge_jax.config import identity, resolution
from sge_jax.config.settings import JobSettings, RunSettings
from sge_jax.data import recording_ids
from sge_jax.data.dataset import SkeletonDataset
from sge_jax.data.loading import (check_memory, check_trainable,
                                  dataset_summary, prepare_dataset)
from sge_jax.encode import encode_stage, load_encodings
from sge_jax.encode.stage import encoder_source, read_transfer
from sge_jax.errors import (CheckpointMismatchError, ConfigError, DataError,
                            WorkdirError)
from sge_jax.released import require_equal_person_sets
from sge_jax.evaluate import aggregate_seed_results, evaluate_run, report
from sge_jax.evaluate.run_record import last_train_step, log_stage_time
from sge_jax.train import train_encoders
from sge_jax.train.loop import check_same_training_split
from sge_jax.train.seed_loop import train_encoders_stacked
from sge_jax.train.checkpoints import has_checkpoints
from sge_jax.train.setup import (check_checkpoints_fit, encoder_training_split,
                                 no_trained_encoders)
from sge_jax.workdir.lock import hold_workdir_lock

Results = Optional[dict[str, Any]]


def recorded_config(run: RunSettings) -> ml_collections.ConfigDict:
  """The run's config as its config.json records it (``run.record``), for
  comparing it with a saved one."""
  return ml_collections.ConfigDict(json.loads(run.record))


def check_workdir(run: RunSettings, workdir: pathlib.Path) -> None:
  """Refuses to resume a workdir whose checkpoints come from another config
  (``run``: before its transfer's encoders are read)."""
  saved = workdir / workdir_lib.CONFIG_FILE
  if (not saved.exists()
      or not has_checkpoints(workdir / workdir_lib.CHECKPOINT_DIR)):
    return
  differences = identity.encoder_differences(workdir_lib.read_config(saved),
                                             recorded_config(run))
  if differences:
    raise ConfigError(
        f'{workdir} holds encoders trained with a different config '
        f'({", ".join(differences)} differ from {saved}). Use a new --workdir, '
        'or delete that one to start over.')


def check_finished_run(run: RunSettings, run_dir: pathlib.Path,
                       workdir: pathlib.Path) -> None:
  """Refuses to replace the results of a finished run (``run_dir`` holds
  results.json) with results of other settings. More training epochs and
  other resumable fields go on; the same config redoes the same results.

  Args:
    run: the (seed's) run, with a transfer's encoders read.
    run_dir: the run's directory (``workdir`` or its ``seed_<s>/``).
    workdir: the job's workdir, for the re-evaluation command.

  Raises:
    ConfigError: other rn.*/eval.* settings (the message holds the
      ``python -m sge_jax.evaluate`` command that gives their results under
      evaluations/), or other fields that made the results (a new --workdir).
  """
  saved_path = run_dir / workdir_lib.CONFIG_FILE
  if not ((run_dir / workdir_lib.RESULTS_FILE).exists() and saved_path.exists()):
    return
  saved = workdir_lib.read_config(saved_path)
  config = recorded_config(run)
  differences = sorted(set(identity.encoder_differences(saved, config))
                       | set(identity.result_differences(saved, config)))
  if not differences:
    return
  new_values = identity.flatten(json.loads(run.record))
  listed = ', '.join(differences)
  if all(field.split('.')[0] in identity.REEVALUATION_SECTIONS
         for field in differences):
    raise ConfigError(
        f'{run_dir} holds a finished run whose results were made with other '
        f'{listed} (see {saved_path}); launch.py does not replace them. For '
        f'results with these settings beside them, under {workdir}/'
        f'{workdir_lib.EVALUATIONS_DIR}/, run: '
        + reevaluation_command(workdir, {field: new_values[field]
                                         for field in differences}))
  raise ConfigError(
      f'{run_dir} holds a finished run made with other {listed} (see '
      f'{saved_path}); launch.py does not replace its results. Use a new '
      '--workdir for this config, or rerun the config saved there.')


def reevaluation_command(workdir: pathlib.Path, overrides: dict[str, Any]
                         ) -> str:
  """The shell command that re-evaluates ``workdir`` with ``overrides``
  ({'rn.epochs': 5, ...})."""
  def flag_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
  return shlex.join(['python', '-m', 'sge_jax.evaluate', f'--workdir={workdir}']
                    + [f'--config.{field}={flag_value(value)}'
                       for field, value in sorted(overrides.items())])


def check_run_layout(job: JobSettings, workdir: pathlib.Path) -> None:
  """Refuses a workdir that holds a multi-seed run for a single-seed config,
  a single run for a multi-seed config, a file where a seed's folder goes, or
  seeds this multi-seed config leaves out (its aggregate would replace the
  one over every seed)."""
  if not workdir.is_dir():
    return
  held = {int(path.name.split('_', 1)[1]): path
          for path in workdir_lib.seed_directories(workdir)}
  if not job.multi_seed:
    if held:
      raise ConfigError(
          f'{workdir} holds a multi-seed run (seed folders '
          f'{", ".join(path.name for path in held.values())}), and this config '
          'runs a single seed (config.seeds is empty) whose results would '
          'replace their aggregate. Rerun with '
          f'--config.seeds={",".join(map(str, held))} to continue that run, '
          'or use a new --workdir.')
    return
  single = [name for name in (workdir_lib.CONFIG_FILE, workdir_lib.CHECKPOINT_DIR,
                              workdir_lib.ENCODINGS_FILE, workdir_lib.RN_FILE)
            if (workdir / name).exists()]
  if single:
    raise ConfigError(
        f'{workdir} holds a single run ({", ".join(single)}), and this config '
        f'runs several seeds (config.seeds={job.seeds_field!r}) whose '
        'aggregate would replace its results.json and report.md. Use a new '
        '--workdir, or rerun without --config.seeds to continue that run.')
  seeds = job.seeds
  for seed in seeds:
    path = workdir_lib.seed_dir(workdir, seed)
    if path.exists() and not path.is_dir():
      raise WorkdirError(f'{path} is not a folder: seed {seed} of this config '
                         'runs there. Move it away, or use a new --workdir.')
  left_out = [seed for seed in held if seed not in seeds]
  if left_out:
    raise ConfigError(
        f'{workdir} holds seeds {",".join(map(str, held))}, and this config '
        f'(config.seeds={job.seeds_field!r}) leaves out '
        f'{",".join(map(str, left_out))}: its aggregate would replace the one '
        f'over every seed. Rerun with --config.seeds='
        f'{",".join(map(str, sorted(set(held) | set(seeds))))}, or use a new '
        '--workdir.')


def check_encoders_fit(run: RunSettings, workdir: pathlib.Path,
                       dataset: SkeletonDataset, train: bool) -> None:
  """Refuses, before config.json is written, checkpoints this run would
  resume or encode with that hold another model's arrays (read from their
  metadata: another model size, pretext, joint count or length), also where
  config.json is gone and ``check_workdir`` has nothing to compare; and
  encoding without training (``train`` False) where there are none."""
  source = encoder_source(run, workdir)
  if not train and not has_checkpoints(source / workdir_lib.CHECKPOINT_DIR):
    raise no_trained_encoders(source)
  length = dataset.length if source == workdir else run.transfer.length
  try:
    check_checkpoints_fit(run, source, length, dataset.num_joints)
  except CheckpointMismatchError as error:
    if source != workdir:
      raise ConfigError(
          f'The encoders in {source} do not fit {dataset.name} '
          f'(J={dataset.num_joints}): {error}. Transfer between datasets needs '
          'the same joint count J.') from None
    raise CheckpointMismatchError(
        f'{error}. This config would train other arrays there: use a new '
        '--workdir, or run the config those checkpoints were trained '
        'with.') from None


def check_loaded_data(run: RunSettings, dataset: SkeletonDataset,
                      train: bool) -> None:
  """The checks of the loaded data before any work: the walks the evaluation
  scores (``eval.level``), equal person sets (quirk R12), and, with
  ``train``, a training split that fills a batch."""
  if 'evaluate' in run.stages:
    recording_ids.require_walks(
        run.eval.level,
        {name: split.recordings for name, split in dataset.splits.items()},
        f'dataset {dataset.name} ({dataset.source})')
  if run.quirks.equal_id_counts:
    require_equal_person_sets({name: split.labels
                               for name, split in dataset.splits.items()})
  if train:
    check_trainable(dataset, run.train.batch_size,
                    encoder_training_split(dataset))


def make_run_dir(workdir: pathlib.Path) -> None:
  """Creates a run's directory (after its checks: a refused run leaves no
  empty seed directory)."""
  try:
    workdir.mkdir(parents=True, exist_ok=True)
  except OSError as error:
    raise workdir_lib.write_error(workdir, error, 'create', None) from error


def run_single(run: RunSettings, workdir: str | pathlib.Path) -> Results:
  """Runs the requested stages of one seed in ``workdir``; returns the results
  (None when ``evaluate`` is not among the stages). ``run`` has checked the
  workdir (``check_workdir``, ``check_finished_run``) and read a transfer's
  encoders before."""
  workdir = pathlib.Path(workdir)
  stages = run.stages
  dataset = None
  seconds = {}         # stage -> wall seconds, kept in metrics.jsonl
  with distributed.stop_together():
    train = 'train' in stages and run.trains_here
    if 'train' in stages or 'encode' in stages:   # evaluate reads encodings.npz
      started = time.monotonic()
      dataset = prepare_dataset(run.data)
      seconds['data'] = time.monotonic() - started
      logging.info('[data] %s', dataset_summary(dataset))
      check_loaded_data(run, dataset, train)
      if train or 'encode' in stages:
        check_encoders_fit(run, workdir, dataset, train)
      check_memory(run, dataset,
                   encoder_training_split(dataset) if train else None,
                   'encode' in stages)
    make_run_dir(workdir)
  if train:
    check_same_training_split(dataset)
  # Written once every check has passed: a rejected run leaves no record.
  main = distributed.is_main_process()
  if main:
    workdir_lib.write_config(run.record, workdir)
  if 'data' in seconds:
    log_stage_time(workdir, 'data', seconds['data'], main)
  trained_params = None
  if 'train' in stages and not train:
    logging.info('[train] skipped: encoders come from %s', run.encoder_workdir)
  if train:
    started, step = time.monotonic(), last_train_step(workdir)
    trained_params = train_encoders(run, dataset, workdir).params
    if last_train_step(workdir) != step:    # not a finished training skipped
      log_stage_time(workdir, 'train', time.monotonic() - started, main)
  if 'encode' in stages:
    started = time.monotonic()
    encode_stage(run, dataset, workdir, trained_params)
    log_stage_time(workdir, 'encode', time.monotonic() - started, main)
  if 'evaluate' not in stages:
    return None
  results = None
  with distributed.stop_together():    # the other processes wait for process 0
    if distributed.is_main_process():
      results = evaluate_saved(run, workdir)
  return results


def evaluate_saved(run: RunSettings, run_dir: pathlib.Path,
                   output: Optional[str] = None) -> Results:
  """The evaluate stage on a run directory's encodings.npz, re-scoring its
  saved RN when that fits; results go to ``run_dir``, or with ``output`` to
  ``run_dir/evaluations/<output>/`` (re-evaluation never replaces the run's
  own results)."""
  log = workdir_lib.MetricsLog(run_dir / workdir_lib.METRICS_FILE)
  out_dir = run_dir if output is None else workdir_lib.evaluation_dir(run_dir,
                                                                      output)
  return evaluate_run(run, load_encodings(run_dir / workdir_lib.ENCODINGS_FILE),
                      out_dir, training_warnings=log.warnings(),
                      saved_rn_path=run_dir / workdir_lib.RN_FILE,
                      run_dir=run_dir)


def over_seeds(runs: Sequence[tuple[RunSettings, pathlib.Path]],
                aggregate_dir: pathlib.Path,
                run_one: Callable[[RunSettings, pathlib.Path], Results]
                ) -> Results:
  """Runs each (run, seed directory) and aggregates their results into
  ``aggregate_dir`` (None when a run has no results)."""
  per_seed = []
  for index, (seed_run, seed_workdir) in enumerate(runs):
    logging.info('[seeds] seed %d (%d of %d) in %s', seed_run.seed,
                 index + 1, len(runs), seed_workdir)
    results = run_one(seed_run, seed_workdir)
    if results is not None:
      logging.info('[seeds] seed %d: %s', seed_run.seed,
                   report.headline(results))
    per_seed.append(results)
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
  workdir = pathlib.Path(workdir)
  with distributed.stop_together():
    config = resolution.resolve_config(config)
  # Before validation: with equal configs it fails on every process alike.
  distributed.check_same_config({**identity.flatten(config.to_dict()),
                                 '--workdir': str(workdir)})
  job = resolution.resolve(config, jax.device_count())
  with hold_job_lock(workdir):
    # Before any work: nothing of a finished run is replaced.
    with distributed.stop_together():
      check_run_layout(job, workdir)
      runs = checked_runs(job, workdir)
    if not job.multi_seed:
      return run_single(*runs[0])
    if job.runs[0].parallel.mode == 'seeds' and 'train' in job.runs[0].stages:
      runs = train_seeds_at_once(runs)
    return over_seeds(runs, workdir, run_single)


def train_seeds_at_once(runs: Sequence[tuple[RunSettings, pathlib.Path]]
                        ) -> list[tuple[RunSettings, pathlib.Path]]:
  """The train stage of every seed of the job at once (``train.parallel``
  'seeds'), before the seed loop.

  The checks ``run_single`` makes before training, for every seed (the data
  loaded once: every seed's data settings are the job's), the memory of the
  stack (``check_memory`` with c seeds per device), then each seed's
  directory and config.json, and ``train_encoders_stacked``.

  Args:
    runs: (run, seed directory) of every seed, checked (``checked_runs``).

  Returns:
    The runs the seed loop goes on with: without the train stage (each seed
    encodes from its own checkpoints and is evaluated as it would be
    sequentially), or unchanged (one seed after another) where 'auto' chose
    the stack and it does not fit in memory (an info line says so).

  Raises:
    DataError: the stack does not fit in memory, for an explicit 'seeds' (or
      an 'auto' whose batch the devices cannot share), naming the seeds per
      device; and the data errors of ``run_single``.
  """
  first = runs[0][0]
  parallel = first.parallel
  per_device = parallel.seeds_per_device(len(runs))
  # 'auto' falls back to one seed after another only where that can run.
  may_fall_back = (parallel.automatic
                   and first.train.batch_size % parallel.num_devices == 0)
  too_big = None
  with distributed.stop_together():
    dataset = prepare_dataset(first.data)
    logging.info('[data] %s', dataset_summary(dataset))
    check_loaded_data(first, dataset, train=True)
    for seed_run, seed_dir in runs:
      check_encoders_fit(seed_run, seed_dir, dataset, True)
    try:
      check_memory(first, dataset, encoder_training_split(dataset), False,
                   seeds_per_device=per_device)
    except DataError as error:
      if not may_fall_back:
        raise
      too_big = error
    check_memory(first, dataset, None, 'encode' in first.stages)
  # Every process decides alike (the memory differs between hosts).
  if not distributed.gather(np.uint8(too_big is None)).all():
    logging.info('[seeds] train.parallel=auto: the %d seeds train one after '
                 'another, as one stack they do not fit in memory (%s)',
                 len(runs), too_big or 'on another process of the job')
    return list(runs)
  with distributed.stop_together():
    for _, seed_dir in runs:
      make_run_dir(seed_dir)
  check_same_training_split(dataset)
  if distributed.is_main_process():
    for seed_run, seed_dir in runs:
      workdir_lib.write_config(seed_run.record, seed_dir)
  logging.info('[seeds] train.parallel=%s: seeds %s train at once, %d per '
               'device on %d device(s)',
               'auto' if parallel.automatic else 'seeds',
               ','.join(str(seed_run.seed) for seed_run, _ in runs),
               per_device, parallel.num_devices)
  started = time.monotonic()
  steps = [last_train_step(seed_dir) for _, seed_dir in runs]
  train_encoders_stacked([seed_run for seed_run, _ in runs], dataset,
                         [seed_dir for _, seed_dir in runs])
  # Every seed's train time is the stack's: they trained together.
  seconds = time.monotonic() - started
  for (_, seed_dir), step in zip(runs, steps):
    if last_train_step(seed_dir) != step:    # not a finished training skipped
      log_stage_time(seed_dir, 'train', seconds, distributed.is_main_process())
  return [(dataclasses.replace(seed_run, stages=tuple(
      stage for stage in seed_run.stages if stage != 'train')), seed_dir)
          for seed_run, seed_dir in runs]


def run_directories(job: JobSettings, workdir: pathlib.Path
                    ) -> list[pathlib.Path]:
  """The directory of every run of the job: ``workdir``, or
  ``<workdir>/seed_<s>/`` per seed of ``config.seeds``."""
  if not job.multi_seed:
    return [workdir]
  return [workdir_lib.seed_dir(workdir, run.seed) for run in job.runs]


def checked_runs(job: JobSettings, workdir: pathlib.Path
                 ) -> list[tuple[RunSettings, pathlib.Path]]:
  """(run, directory) of every run of the job, each directory checked
  (``check_workdir``, ``check_finished_run``) and a transfer run given its
  encoders (read once: every seed shares ``encoder_workdir``)."""
  transfer = read_transfer(job.runs[0])
  runs = []
  for run, run_dir in zip(job.runs, run_directories(job, workdir)):
    check_workdir(run, run_dir)
    if transfer is not None:
      run = resolution.with_transfer(run, transfer)
    check_finished_run(run, run_dir, workdir)
    runs.append((run, run_dir))
  return runs


@contextlib.contextmanager
def hold_job_lock(workdir: pathlib.Path):
  """The workdir lock, taken once for the whole job, by process 0 (the other
  processes of a multi-process job stop too when it is refused)."""
  with contextlib.ExitStack() as held:
    with distributed.stop_together():
      if distributed.is_main_process():
        held.enter_context(hold_workdir_lock(workdir))
    yield
