"""Training a stack of seeds at once: per seed, what ``loop`` does for one.

``train_seed_stack`` trains S seeds as one compiled program
(``sge_jax.train.seed_stack``) and keeps, for each seed, exactly the
bookkeeping of its sequential run (``loop._train_loop``): its own step
counter, early stopping per model at its own epoch ends, the same checkpoint
steps (the sequential rule ``step - last_saved >= checkpoint_every_steps`` per
seed, and at the end), and the same metrics records (per call: the losses per
model averaged over the call's steps; at epoch ends: validation and the active
models; a divergence warning once). Calls end where the sequential run's calls
end (``loop.steps_in_next_call`` per seed), so an uninterrupted stack writes
the records of S uninterrupted sequential runs.

A seed whose models all stopped, or that reached the last step, is frozen in
its slot (step, parameters and optimizer state kept, ``steps_left`` 0) while
the others go on. Seeds restored at different steps (a kill between two
seeds' checkpoint saves) each continue from their own step in the same
program.

Checkpoints and logs are per seed, given by the caller (one
``CheckpointStore`` and one ``MetricsLog`` per seed), holding what a
sequential run of that seed holds: {'state': its TrainState, 'early_stopping':
its bookkeeping}. Every process of a multi-process job runs this function with
the same arguments; every decision is taken from gathered values, so they agree.

``train_encoders_stacked`` is the train stage of ``train.parallel`` 'seeds'
(``sge_jax.pipeline``): ``loop.train_encoders`` for every seed of a job at
once, each in its own ``seed_<s>/`` folder, with the same Ctrl-C behaviour
(the first one saves every seed that moved, a second stops at once).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import pathlib
import time
from typing import Callable, Optional, Sequence

import jax
import numpy as np
import optax

from sge_jax import distributed
from sge_jax import interrupts
from sge_jax import workdir as workdir_lib
from sge_jax.config.settings import RunSettings, TrainSettings
from sge_jax.data.dataset import SkeletonDataset
from sge_jax.data.loading import check_trainable
from sge_jax.errors import NonFiniteLossError
from sge_jax.train import pretext
from sge_jax.train import seed_stack as stack_lib
from sge_jax.train.checkpoints import CheckpointStore
from sge_jax.train.devices import Devices, global_device_count
from sge_jax.train.early_stopping import EarlyStopping, update_early_stopping
from sge_jax.train.loop import (STAGE, STOPPING, encoder_training_sequences,
                                kept_checkpoint, steps_in_next_call,
                                stop_agreed)
from sge_jax.train.progress import LEGEND, divergence_warning, progress_line
from sge_jax.train.setup import (build_definition, build_optimizer,
                                 encoder_tasks, encoder_training_split)
from sge_jax.train.state import TrainState, create_train_state
from sge_jax.train.step import StepDefinition


@dataclasses.dataclass(frozen=True)
class StackSchedule:
  """The train settings the stack follows (``config.train``'s fields).

  Attributes:
    batch_size: B, the global batch of every seed.
    epochs: epochs of every seed.
    steps_per_call: ``log_every_steps``: steps per compiled call at most.
    shuffle_batches: per-epoch seeded batch order.
    early_stopping: 'none' or 'paper'.
    checkpoint_every_steps: a checkpoint per seed every this many steps.
  """
  batch_size: int
  epochs: int
  steps_per_call: int
  shuffle_batches: bool = False
  early_stopping: str = 'none'
  checkpoint_every_steps: int = 500

  @classmethod
  def from_settings(cls, train: TrainSettings) -> 'StackSchedule':
    """The schedule of a run's train settings."""
    return cls(train.batch_size, train.epochs, train.log_every_steps,
               train.shuffle_batches, train.early_stopping,
               train.checkpoint_every_steps)


@dataclasses.dataclass(eq=False)
class _Seed:
  """Host bookkeeping of one seed."""
  seed: int
  state: TrainState
  stopping: EarlyStopping
  start_step: int = 0
  last_saved: Optional[int] = None
  first_losses: Optional[dict] = None
  warned: bool = False

  @property
  def step(self) -> int:
    return int(self.state.step)


def train_seed_stack(
    definition: StepDefinition, tx: optax.GradientTransformation,
    seeds: Sequence[int], sequences: np.ndarray,
    tasks: tuple[pretext.PretextTask, ...], stream: str,
    schedule: StackSchedule, *, devices: Devices = None,
    checkpoints: Optional[Sequence[CheckpointStore]] = None,
    logs: Optional[Sequence[workdir_lib.MetricsLog]] = None,
    stop_requested: Callable[[], bool] = lambda: False,
) -> list[tuple[TrainState, EarlyStopping]]:
  """Trains (or resumes) every seed of ``seeds`` at once.

  Args:
    definition: the step definition (M models of ``tasks``).
    tx: the optimizer (``setup.build_optimizer``).
    seeds: the S seeds, each as the sequential run's ``config.seed``.
    sequences: [N, f, J, 3] the training split, stored order (every seed's).
    tasks: the pretext tasks; ``stream``: the split name (sorting
      permutations, ``pretext.stacked_pretext_data``).
    schedule: the train settings.
    devices: as ``sge_jax.train.devices`` (None: every device of every process).
    checkpoints: one open store per seed (its ``checkpoints/`` folder), or
      None for no checkpoints (benchmarks, tests of the maths).
    logs: one metrics log per seed, or None.
    stop_requested: polled before each call (``loop.stop_agreed`` in a job):
      True saves every seed that moved and raises KeyboardInterrupt.

  Returns:
    Per seed, in order: (final TrainState on the host, EarlyStopping).

  Raises:
    NonFiniteLossError: a loss of any seed became NaN or infinite (naming the
      seed; each seed's newest checkpoint is kept).
    KeyboardInterrupt: ``stop_requested``, naming what was saved.
  """
  devices = None if devices is None else tuple(devices)
  _check_arguments(seeds, checkpoints, logs)
  num_models = len(definition.model_tasks)
  length, num_joints = sequences.shape[1:3]
  runs = [_Seed(int(seed), create_train_state(
      definition.model, tx, jax.random.key(int(seed)), num_models, length,
      num_joints), EarlyStopping.start(num_models)) for seed in seeds]
  if checkpoints is not None:
    _restore(runs, checkpoints, logs)
  num_batches = sequences.shape[0] // schedule.batch_size
  total_steps = schedule.epochs * num_batches
  indices = [index for index, run in enumerate(runs)
             if run.step < total_steps and run.stopping.active.any()]
  if not indices:
    logging.info('[train] seeds %s already finished; nothing to train.',
                 ','.join(str(run.seed) for run in runs))
    if stop_requested():
      raise KeyboardInterrupt('training had already finished; every seed\'s '
                              'newest checkpoint is kept')
    return [(run.state, run.stopping) for run in runs]
  _train(definition, runs, indices, sequences, tasks, stream, schedule,
         devices, checkpoints, logs, stop_requested, num_batches, total_steps)
  return [(run.state, run.stopping) for run in runs]


def train_encoders_stacked(runs: Sequence[RunSettings],
                           dataset: SkeletonDataset,
                           workdirs: Sequence[str | pathlib.Path],
                           devices: Devices = None) -> list[TrainState]:
  """Runs (or resumes, or skips where finished) the self-supervised training
  of every seed at once: ``loop.train_encoders`` of each run in its workdir,
  as one seed stack.

  Args:
    runs: one per seed, in the job's order; they differ in their seed only
      (every seed of a job has the same data, model, quirks and training).
    dataset: the loaded dataset; every seed trains on
      ``encoder_training_split(dataset)``.
    workdirs: the seeds' run directories, in the order of ``runs``; each gets
      ``checkpoints/`` and ``metrics.jsonl`` (process 0 only), as the
      sequential run of its seed.
    devices: devices to train on, in this process (default: every device of
      every process of the job).

  Returns:
    Each seed's final train state (on the host; the same on every process).

  Raises:
    KeyboardInterrupt: Ctrl-C, naming what was saved.
    NonFiniteLossError: a seed's loss became NaN or infinite (naming it).

  In a multi-process job, ``check_same_training_split`` must have passed.
  """
  first = runs[0]
  _check_same_training(runs)
  workdirs = [pathlib.Path(workdir) for workdir in workdirs]
  split_name = encoder_training_split(dataset)
  check_trainable(dataset, first.train.batch_size, split_name)
  logs = [workdir_lib.MetricsLog(workdir / workdir_lib.METRICS_FILE,
                                 enabled=distributed.is_main_process())
          for workdir in workdirs]
  with contextlib.ExitStack() as open_stores:
    stores = [open_stores.enter_context(CheckpointStore(
        workdir / workdir_lib.CHECKPOINT_DIR, first.train.keep_checkpoints))
              for workdir in workdirs]
    try:
      with interrupts.deferred(STOPPING):
        trained = train_seed_stack(
            build_definition(first, dataset.num_joints),
            build_optimizer(first.train), [run.seed for run in runs],
            encoder_training_sequences(first, dataset, split_name).sequences,
            encoder_tasks(first.model, first.quirks), split_name,
            StackSchedule.from_settings(first.train), devices=devices,
            checkpoints=stores, logs=logs, stop_requested=stop_agreed)
    except KeyboardInterrupt as interrupt:
      if interrupt.args:     # the stack's own stop, naming what it saved
        raise
      raise KeyboardInterrupt(  # a second Ctrl-C
          'training stopped at once, without saving its current step; '
          + '; '.join(f'seed {run.seed}: ' + kept_checkpoint(
              store.latest_step(), False, store.directory)
                      for run, store in zip(runs, stores))) from None
  return [state for state, _ in trained]


def _check_same_training(runs: Sequence[RunSettings]) -> None:
  """A programming error, not a user's: the seeds of one job share every
  setting the stack compiles once (``resolution.seed_configs``)."""
  first = runs[0]
  for run in runs[1:]:
    if (run.data, run.model, run.quirks, run.train) != (
        first.data, first.model, first.quirks, first.train):
      raise ValueError(f'seeds {first.seed} and {run.seed} have other data, '
                       'model, quirk or train settings: one stack trains '
                       'the seeds of one job')


def _check_arguments(seeds: Sequence[int], checkpoints, logs) -> None:
  """A programming error, not a user's: the pipeline passes parsed seeds."""
  if not seeds or len(set(seeds)) != len(seeds):
    raise ValueError(f'a seed stack needs distinct seeds, got {list(seeds)}')
  for name, per_seed in (('checkpoints', checkpoints), ('logs', logs)):
    if per_seed is not None and len(per_seed) != len(seeds):
      raise ValueError(f'{len(per_seed)} {name} for {len(seeds)} seeds')


def _restore(runs: list[_Seed], checkpoints: Sequence[CheckpointStore],
             logs: Optional[Sequence[workdir_lib.MetricsLog]]) -> None:
  """Each seed from the newest checkpoint of its own store, if any."""
  for index, run in enumerate(runs):
    restored = checkpoints[index].restore_latest(
        {'state': run.state, 'early_stopping': run.stopping.as_tree()})
    if restored is None:
      continue
    step, tree = restored
    run.state = tree['state']
    run.stopping = EarlyStopping(**tree['early_stopping'])
    run.start_step = run.last_saved = step
    if logs is not None:
      logs[index].drop_after(STAGE, step)
    logging.info('[train] seed %d resumed from checkpoint step %d in %s',
                 run.seed, step, checkpoints[index].directory)


def _train(definition, runs: list[_Seed], indices: list[int], sequences,
           tasks, stream, schedule: StackSchedule, devices, checkpoints, logs,
           stop_requested, num_batches: int, total_steps: int) -> None:
  """The loop over compiled calls, training ``runs[i]`` for i in ``indices``
  (updated in place)."""
  names = pretext.model_names(tasks)
  training = [runs[i] for i in indices]
  stores = [None if checkpoints is None else checkpoints[i] for i in indices]
  seed_logs = [None if logs is None else logs[i] for i in indices]
  layout = stack_lib.seed_layout([run.seed for run in training],
                                 global_device_count(devices))
  data, per_seed = stack_lib.stacked_seed_data(sequences, tasks, layout.seeds,
                                               stream)
  resident, _ = stack_lib.resident_seed_batches(
      data, per_seed, schedule.batch_size, layout, devices)
  max_steps = max(1, min(num_batches, schedule.steps_per_call))
  run_calls = stack_lib.make_stack_calls(definition, devices, max_steps,
                                         num_batches, schedule.shuffle_batches,
                                         per_seed)
  validate = stack_lib.make_stack_validation(definition, devices, per_seed)
  placed = stack_lib.place_stack(
      stack_lib.stack_trees([run.state for run in training]), layout, devices)
  logging.info('[train] seed stack: %d seeds (%s) on %d device(s), %d per '
               'device%s; %d batches of %d per epoch, %d epochs', len(training),
               ','.join(map(str, layout.seeds)), layout.num_devices,
               layout.per_device,
               f', {layout.num_slots - len(training)} padding slot(s)'
               if layout.num_slots > len(training) else '',
               num_batches, schedule.batch_size, schedule.epochs)
  logging.info('[train] %s', LEGEND)
  steps = np.asarray([run.step for run in training])
  timed_steps, timed_seconds, first_call_seconds = 0, 0.0, 0.0
  stop = False
  while True:
    active = np.stack([run.stopping.active for run in training])     # [T, M]
    running = (steps < total_steps) & active.any(axis=1)
    if not running.any():
      break
    stop = stop_requested()
    if stop:
      break
    steps_left = np.where(running, [steps_in_next_call(
        int(step), max_steps, num_batches, total_steps) for step in steps], 0)
    num_steps = int(steps_left.max())
    call_start = time.perf_counter()
    placed, metrics = run_calls(
        placed, resident, stack_lib.place_stack(active, layout, devices),
        stack_lib.place_stack(steps_left.astype(np.int32), layout, devices),
        np.int32(num_steps))
    metrics = stack_lib.gather_stack(metrics, layout)   # term -> [T, L, M]
    elapsed = time.perf_counter() - call_start
    if timed_steps or first_call_seconds:
      timed_steps, timed_seconds = timed_steps + num_steps, timed_seconds + elapsed
    else:
      first_call_seconds = elapsed
    rate = timed_steps / timed_seconds if timed_steps else None
    for position in np.flatnonzero(steps_left):
      run = training[position]
      values = {term: array[position, :steps_left[position]]
                for term, array in metrics.items()}
      _check_finite(values, names, run, int(steps[position]), stores[position])
      steps[position] += steps_left[position]
      _log_call(run, values, int(steps[position]), names, num_batches,
                schedule.batch_size, rate, seed_logs[position])
    moved = steps_left > 0
    _log_progress(metrics, steps_left, steps, schedule, num_batches,
                  total_steps, rate, first_call_seconds)
    epoch_ends = moved & (steps % num_batches == 0)
    if epoch_ends.any():
      validation = stack_lib.gather_stack(validate(placed, resident), layout)
      for position in np.flatnonzero(epoch_ends):
        _epoch_end(training[position], validation[position],
                   int(steps[position]), names, num_batches,
                   schedule.early_stopping, seed_logs[position])
    due = moved & (steps - np.asarray([run.last_saved or 0 for run in training])
                   >= schedule.checkpoint_every_steps)
    if checkpoints is not None and due.any():
      _save(training, stack_lib.gather_stack(placed, layout), due, stores)
  final = stack_lib.gather_stack(placed, layout)
  for position, run in enumerate(training):
    run.state = stack_lib.tree_row(final, position)
  unsaved = np.asarray([run.last_saved != run.step and run.step > run.start_step
                        for run in training])
  if checkpoints is not None and unsaved.any():
    _save(training, final, unsaved, stores)
  if stop or stop_requested():
    raise KeyboardInterrupt(_stopped_message(training, total_steps,
                                             checkpoints is not None))
  logging.info('[train] seeds %s done at steps %s', ','.join(
      map(str, layout.seeds)), ','.join(str(run.step) for run in training))


def _check_finite(values: dict[str, np.ndarray], names: list[str], run: _Seed,
                  first_step: int, store: Optional[CheckpointStore]) -> None:
  """Raises NonFiniteLossError as ``loop._check_finite`` does, naming the seed."""
  for term, array in values.items():
    bad = ~np.isfinite(array)                                   # [L, M]
    if bad.any():
      offset, model = map(int, np.argwhere(bad)[0])
      last = store.latest_step() if store is not None else None
      kept = (f'the last good checkpoint (step {last}) in {store.directory} '
              'is kept' if last is not None
              else 'no checkpoint had been written yet')
      raise NonFiniteLossError(
          f'The {term} loss of model {names[model]} of seed {run.seed} became '
          f'{array[offset, model]} at step {first_step + offset + 1}; training '
          f'stopped and {kept}. Check the data for outliers, or lower '
          '--config.train.learning_rate.')


def _log_call(run: _Seed, values: dict[str, np.ndarray], step: int,
              names: list[str], num_batches: int, batch_size: int,
              rate: Optional[float],
              log: Optional[workdir_lib.MetricsLog]) -> None:
  """The sequential loop's record of one call (and its divergence warning)."""
  epoch = -(-step // num_batches)
  means = {term: array.mean(axis=0) for term, array in values.items()}
  if run.first_losses is None:
    run.first_losses = {term: array[0] for term, array in values.items()}
  if log is None:
    return
  log.write({'stage': STAGE, 'step': step, 'epoch': epoch,
             **{f'loss/{term}': dict(zip(names, means[term])) for term in means},
             'loss/total_all_models': float(means['total'].sum()),
             'steps_per_s': rate,
             'sequences_per_s': rate and rate * batch_size})
  warning = None if run.warned else divergence_warning(
      run.first_losses, values, names, batch_size)
  if warning:
    run.warned = True
    logging.warning('[train] seed %d: %s', run.seed, warning)
    log.write({'stage': STAGE, 'step': step, 'warning': warning})


def _log_progress(metrics, steps_left, steps, schedule: StackSchedule,
                  num_batches: int, total_steps: int, rate, first_call_seconds
                  ) -> None:
  """One progress line per call: losses summed over the models, averaged over
  the seeds that moved."""
  moved = np.flatnonzero(steps_left)
  sums = {term: float(np.mean([array[position, :steps_left[position]]
                               .mean(axis=0).sum() for position in moved]))
          for term, array in metrics.items()}
  step = int(steps[moved].max())
  logging.info('%s  (%d seeds)', progress_line(
      -(-step // num_batches), schedule.epochs, step, total_steps, sums, rate,
      first_call_seconds), moved.size)


def _epoch_end(run: _Seed, validation: np.ndarray, step: int, names: list[str],
               num_batches: int, rule: str,
               log: Optional[workdir_lib.MetricsLog]) -> None:
  """Early stopping of one seed at its epoch end, recorded as sequentially."""
  run.stopping = update_early_stopping(run.stopping, validation, rule)
  if log is not None:
    log.write({'stage': STAGE, 'step': step, 'epoch': -(-step // num_batches),
               'validation/reconstruction': dict(zip(names, validation)),
               'active': dict(zip(names, run.stopping.active))})
  if not run.stopping.active.all():
    logging.info('[train] seed %d early stopping: %s stopped', run.seed,
                 ', '.join(n for n, a in zip(names, run.stopping.active)
                           if not a))


def _save(training: list[_Seed], gathered, due: np.ndarray,
          stores: list[CheckpointStore]) -> None:
  """Saves each due seed's state (a row of the gathered stack) in its store."""
  for position in np.flatnonzero(due):
    run = training[position]
    run.state = stack_lib.tree_row(gathered, position)
    stores[position].save(
        run.step, {'state': run.state, 'early_stopping': run.stopping.as_tree()})
    run.last_saved = run.step


def _stopped_message(training: list[_Seed], total_steps: int,
                     saving: bool) -> str:
  moved = [run for run in training if run.step > run.start_step]
  if not moved:
    return ('training stopped before its first step in this run: nothing was '
            'trained; every seed\'s newest checkpoint is kept')
  steps = sorted({run.step for run in training})
  where = ('; each seed\'s step is saved in its checkpoints folder' if saving
           else '')
  return (f'training stopped at step {"/".join(map(str, steps))} of '
          f'{total_steps} (seeds {",".join(str(run.seed) for run in training)})'
          + where)
