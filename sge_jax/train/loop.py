"""Self-supervised training of the stacked axis models (the ``train`` stage).

The training sequences live on the devices for the whole run. One compiled call
runs up to ``train.log_every_steps`` optimizer steps as a ``lax.scan``, picking
each step's batch on the device from the step counter, and stops at epoch ends
(the step count is an argument, so every call shares one program whatever the
epoch length), so the host only dispatches calls, logs, validates at epoch ends
and writes checkpoints. Batches are contiguous
slices of the stored order (the contrastive loss needs stored-order neighbours);
the incomplete last batch is dropped, as the authors do.

Resumption: the state (parameters, optimizer, step, root key) and the early
stopping bookkeeping are checkpointed together; the step counter is the data
position, so a resumed run replays exactly the calls an uninterrupted run makes.

Ctrl-C (``sge_jax.interrupts``): the first one stops the loop after the current
call, saves that step and raises ``KeyboardInterrupt`` naming the saved step and
its directory; a second one stops at once without saving. In a multi-process
job the processes agree on the stop after each call (one tiny allgather), so
they all save the same step together.

Many processes: every process runs this loop on the same data (checked by a
checksum), feeding only its local devices (``sge_jax.train.devices``); the
pmaps span every device of every process, so all processes hold the same state
and the same metrics. Every process takes part in each checkpoint save and
restore; only process 0 writes ``metrics.jsonl``.
"""

from __future__ import annotations

import functools
import logging
import pathlib
import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from sge_jax import distributed
from sge_jax import interrupts
from sge_jax import released
from sge_jax import workdir as workdir_lib
from sge_jax.config.settings import RunSettings
from sge_jax.data.dataset import SkeletonDataset, SkeletonSplit
from sge_jax.data.loading import check_trainable
from sge_jax.errors import NonFiniteLossError
from sge_jax.train import losses, pretext
from sge_jax.train.checkpoints import CheckpointStore
from sge_jax.train.devices import (Devices, first_device_values,
                                   global_device_count, pmap_devices, replicate,
                                   resident_batches, unreplicate)
from sge_jax.train.early_stopping import EarlyStopping, update_early_stopping
from sge_jax.train.progress import LEGEND, divergence_warning, progress_line
from sge_jax.train.setup import (build_definition, encoder_tasks,
                                 encoder_training_split, initial_state)
from sge_jax.train.state import TrainState
from sge_jax.train.step import AXIS_NAME, LOSS_TERMS, StepDefinition, train_step

STAGE = 'train'
_SHUFFLE_STREAM = 1


def batch_index(step: jax.Array, rng: jax.Array, num_batches: int,
                shuffle: bool) -> jax.Array:
  """Which batch step ``step`` trains on: in order, or in a per-epoch seeded order."""
  position = step % num_batches
  if not shuffle:
    return position
  epoch = step // num_batches
  order = jax.random.permutation(
      jax.random.fold_in(jax.random.fold_in(rng, _SHUFFLE_STREAM), epoch),
      num_batches)
  return order[position]


# ----------------------------------------------------------------- compiled calls


def _keep_frozen(active: jax.Array, new: TrainState, old: TrainState) -> TrainState:
  """Leaves the parameters of early-stopped models ([M] ``active`` False) as they were.

  Their Adam moments keep moving (the step is shared by all M models); a stopped
  model never trains again, so only its parameters matter.
  """
  def select(new_leaf, old_leaf):
    mask = active.reshape(active.shape + (1,) * (new_leaf.ndim - 1))
    return jnp.where(mask, new_leaf, old_leaf)
  return new.replace(params=jax.tree.map(select, new.params, old.params))


def step_on_resident_data(state: TrainState, data: dict, active: jax.Array, *,
                          definition: StepDefinition, num_batches: int,
                          shuffle: bool, axis_name: Optional[str]
                          ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One step on the batch the step counter picks from resident data.

  Args:
    state: the train state (M stacked models).
    data: ``inputs``/``targets`` [M, num_batches, b, f, J] on this device.
    active: [M] models still training (early stopping).
    definition, num_batches, shuffle: as ``make_train_calls``.
    axis_name: the pmap axis the batch is sharded over, or None when this
      device holds whole batches (``sge_jax.train.seed_stack``).

  Returns:
    (new state, metrics of ``train_step``), stopped models' parameters kept.
  """
  index = batch_index(state.step, state.rng, num_batches, shuffle)
  batch = jax.tree.map(
      lambda a: lax.dynamic_index_in_dim(a, index, axis=1, keepdims=False),
      data)
  new_state, metrics = train_step(state, batch, state.rng,
                                  definition=definition, axis_name=axis_name)
  return _keep_frozen(active, new_state, state), metrics


def _train_calls(state: TrainState, data: dict, active: jax.Array,
                 num_steps: jax.Array, *, definition: StepDefinition,
                 max_steps: int, num_batches: int, shuffle: bool):
  """Up to ``max_steps`` steps on this device's shards (the body of the pmap).

  The scan always has ``max_steps`` iterations; those past the traced
  ``num_steps`` skip the step (``lax.cond``), so a call can stop at an epoch end
  or at the end of training without a second compiled program. Their metrics
  are zeros.
  """

  def one_step(state):
    return step_on_resident_data(state, data, active, definition=definition,
                                 num_batches=num_batches, shuffle=shuffle,
                                 axis_name=AXIS_NAME)

  def skip(state):
    return state, {term: jnp.zeros(active.shape, jnp.float32)
                   for term in LOSS_TERMS + ('total',)}

  def maybe_step(state, iteration):
    return lax.cond(iteration < num_steps, one_step, skip, state)

  return lax.scan(maybe_step, state, jnp.arange(max_steps))


@functools.lru_cache(maxsize=None)
def make_train_calls(definition: StepDefinition,
                     devices: Optional[tuple[jax.Device, ...]],
                     max_steps: int, num_batches: int, shuffle: bool):
  """Compiled multi-step call: (replicated state, resident data, active [M],
  number of steps <= max_steps) -> (state, metrics of each step [L_dev, L, M],
  L_dev this process's devices). The state is donated. ``devices``: a tuple,
  or None for every device of every process (``sge_jax.train.devices``)."""
  return jax.pmap(
      functools.partial(_train_calls, definition=definition,
                        max_steps=max_steps, num_batches=num_batches,
                        shuffle=shuffle),
      axis_name=AXIS_NAME, in_axes=(0, 0, None, None), donate_argnums=(0,),
      devices=pmap_devices(devices))


def first_batch_reconstruction(state: TrainState, data: dict, *,
                               definition: StepDefinition,
                               axis_name: Optional[str] = AXIS_NAME
                               ) -> jax.Array:
  """Reconstruction loss [M] of each model on training batch 0 (global sum:
  over the shards of the pmap axis ``axis_name``, or this device's whole
  batch when None)."""
  batch = jax.tree.map(lambda a: a[:, 0], data)

  def per_model(params, inputs, targets):
    outputs = definition.model.apply({'params': params}, inputs, targets,
                                     project=False)
    return losses.reconstruction_loss(outputs['reconstruction'], targets)

  per_device = jax.vmap(per_model)(state.params, batch['inputs'],
                                   batch['targets'])
  return per_device if axis_name is None else lax.psum(per_device, axis_name)


@functools.lru_cache(maxsize=None)
def make_validation(definition: StepDefinition,
                    devices: Optional[tuple[jax.Device, ...]]):
  return jax.pmap(
      functools.partial(first_batch_reconstruction, definition=definition),
      axis_name=AXIS_NAME, devices=pmap_devices(devices))


# ----------------------------------------------------------------- the stage


def steps_in_next_call(step: int, max_steps: int, num_batches: int,
                       total_steps: int) -> int:
  """Steps of the next call: at most ``max_steps``, ending at the epoch's end."""
  return min(max_steps, num_batches - step % num_batches, total_steps - step)


def _check_finite(metrics: dict[str, np.ndarray], names: list[str],
                  first_step: int, checkpoints: CheckpointStore) -> None:
  for term, values in metrics.items():
    bad = ~np.isfinite(values)                      # [L, M]
    if bad.any():
      step_offset, model = map(int, np.argwhere(bad)[0])
      last = checkpoints.latest_step()
      kept = (f'the last good checkpoint (step {last}) in {checkpoints.directory} '
              'is kept' if last is not None else 'no checkpoint had been written yet')
      raise NonFiniteLossError(
          f'The {term} loss of model {names[model]} became {values[step_offset, model]} '
          f'at step {first_step + step_offset + 1}; training stopped and {kept}. '
          'Check the data for outliers, or lower --config.train.learning_rate.')


STOPPING = ('stopping after the current step... (Ctrl-C again to stop at once '
            'without saving)')


def stop_agreed() -> bool:
  """Whether Ctrl-C was pressed, in any process of the job (a collective in a
  multi-process job, so that every process stops after the same call)."""
  if distributed.process_count() == 1:
    return interrupts.stop_requested()
  return bool(distributed.gather(np.uint8(interrupts.stop_requested())).any())


def kept_checkpoint(saved_step: Optional[int], saved_now: bool,
                    directory: pathlib.Path) -> str:
  """What an interrupted run keeps in ``directory``, in words."""
  if saved_step is None:
    return 'no checkpoint was written'
  if saved_now:
    return f'checkpoint step {saved_step} saved in {directory}'
  return f'the newest checkpoint, step {saved_step} in {directory}, is kept'


def train_encoders(run: RunSettings, dataset: SkeletonDataset,
                   workdir: str | pathlib.Path,
                   devices: Devices = None) -> TrainState:
  """Runs (or resumes, or skips if finished) the self-supervised training.

  Args:
    run: the run's settings (model, train, quirks, seed).
    dataset: the loaded dataset; trains on ``encoder_training_split(dataset)``.
    workdir: run directory; checkpoints go to ``<workdir>/checkpoints`` and
      metrics to ``<workdir>/metrics.jsonl``.
    devices: devices to train on, in this process (default: every device of
      every process of the job).

  Returns:
    The final train state (unreplicated; the same on every process).

  In a multi-process job, ``check_same_training_split`` must have passed.
  """
  workdir = pathlib.Path(workdir)
  devices = None if devices is None else tuple(devices)
  split_name = encoder_training_split(dataset)
  check_trainable(dataset, run.train.batch_size, split_name)
  with CheckpointStore(workdir / workdir_lib.CHECKPOINT_DIR,
                       run.train.keep_checkpoints) as checkpoints:
    try:
      with interrupts.deferred(STOPPING):
        return _train_loop(run, dataset, split_name, workdir, devices,
                           checkpoints)
    except KeyboardInterrupt as interrupt:
      if interrupt.args:     # the loop's own stop, naming what it saved
        raise
      raise KeyboardInterrupt(  # a second Ctrl-C
          'training stopped at once, without saving its current step; '
          + kept_checkpoint(checkpoints.latest_step(), False,
                            checkpoints.directory)
      ) from None


def check_same_training_split(dataset: SkeletonDataset) -> None:
  """Stops every process of the job when one loaded another training split (a
  collective; nothing for a single process).

  Raises:
    DistributedError: naming the first process whose split differs from
      process 0's.
  """
  if distributed.process_count() == 1:
    return
  split_name = encoder_training_split(dataset)
  split = dataset.split(split_name)
  distributed.check_same_on_every_process(
      f'training split ({split_name} of {dataset.name})',
      distributed.checksum(split.sequences, split.labels),
      'every process must load the same data: start each with the same command '
      'and config, and give every host the same data files')


def encoder_training_sequences(run: RunSettings, dataset: SkeletonDataset,
                               split_name: str):
  """The split the encoders learn from; with quirk R7 on BIWI only its first
  floor(2n/3) sequences (the released code's ``input_data[:-len//3]``)."""
  split = dataset.split(split_name)
  if not (run.quirks.biwi_two_thirds and dataset.name == 'BIWI'):
    return split
  rows = released.biwi_encoder_rows(split.num_sequences)
  logging.info('[train] quirk R7: BIWI encoders train on the first %d of %d '
               'sequences', rows.size, split.num_sequences)
  return SkeletonSplit(split.sequences[rows], split.labels[rows],
                       None if split.recordings is None
                       else split.recordings[rows])


def _train_loop(run: RunSettings, dataset: SkeletonDataset,
                split_name: str, workdir: pathlib.Path,
                devices: Optional[tuple[jax.Device, ...]],
                checkpoints: CheckpointStore) -> TrainState:
  """The body of ``train_encoders``, with an open checkpoint store."""
  train = run.train
  split = encoder_training_sequences(run, dataset, split_name)
  tasks = encoder_tasks(run.model, run.quirks)
  names = pretext.model_names(tasks)
  definition = build_definition(run, dataset.num_joints)
  data = pretext.stacked_pretext_data(split.sequences, tasks, run.seed,
                                      split_name)
  resident, num_batches = resident_batches(data, train.batch_size, devices)
  total_steps = train.epochs * num_batches
  max_steps = max(1, min(num_batches, train.log_every_steps))

  log = workdir_lib.MetricsLog(workdir / workdir_lib.METRICS_FILE,
                              enabled=distributed.is_main_process(),
                              tensorboard=train.tensorboard)
  state = initial_state(run, definition, dataset.length, dataset.num_joints)
  stopping = EarlyStopping.start(len(names))
  restored = checkpoints.restore_latest({'state': state,
                                         'early_stopping': stopping.as_tree()})
  if restored is not None:
    step, tree = restored
    state, stopping = tree['state'], EarlyStopping(**tree['early_stopping'])
    log.drop_after(STAGE, step)
    logging.info('[train] resumed from checkpoint step %d in %s', step,
                 checkpoints.directory)
  start_step = int(state.step)
  if start_step >= total_steps or not stopping.active.any():
    logging.info('[train] already finished at step %d (of %d); nothing to train.',
                 start_step, total_steps)
    if stop_agreed():        # Ctrl-C while that was found out
      raise KeyboardInterrupt('training had already finished; '
                              + kept_checkpoint(start_step, False,
                                                checkpoints.directory))
    return state
  logging.info('[train] %d sequences of %s -> %d batches of %d per epoch, %d '
               'models (%s), %d epochs, up to %d steps per call, %d device(s)',
               split.num_sequences, dataset.name, num_batches, train.batch_size,
               len(names), ', '.join(names), train.epochs, max_steps,
               global_device_count(devices))

  run_calls = make_train_calls(definition, devices, max_steps, num_batches,
                               train.shuffle_batches)
  validate = make_validation(definition, devices)
  replicated = replicate(state, devices)
  last_saved = start_step if restored is not None else None
  step = start_step
  timed_steps, timed_seconds = 0, 0.0      # excludes the first, compiling call
  warned = False
  logging.info('[train] %s', LEGEND)
  stop = False
  while step < total_steps and stopping.active.any():
    stop = stop_agreed()
    if stop:
      break
    num_steps = steps_in_next_call(step, max_steps, num_batches, total_steps)
    call_start = time.perf_counter()
    replicated, metrics = run_calls(replicated, resident, stopping.active,
                                    np.int32(num_steps))
    metrics = {term: first_device_values(values)[:num_steps]
               for term, values in metrics.items()}
    _check_finite(metrics, names, step, checkpoints)
    elapsed = time.perf_counter() - call_start
    if step > start_step:
      timed_steps, timed_seconds = timed_steps + num_steps, timed_seconds + elapsed
    else:
      first_losses = {term: values[0] for term, values in metrics.items()}
      first_call_seconds = elapsed
    rate = timed_steps / timed_seconds if timed_steps else None
    step += num_steps
    epoch = -(-step // num_batches)
    means = {term: metrics[term].mean(axis=0) for term in metrics}
    log.write({'stage': STAGE, 'step': step, 'epoch': epoch,
               **{f'loss/{term}': dict(zip(names, means[term])) for term in means},
               'loss/total_all_models': float(means['total'].sum()),
               'steps_per_s': rate,
               'sequences_per_s': rate and rate * train.batch_size})
    sums = {term: float(means[term].sum()) for term in LOSS_TERMS + ('total',)}
    logging.info(progress_line(epoch, train.epochs, step, total_steps, sums,
                               rate, first_call_seconds))
    warning = (None if warned else divergence_warning(
        first_losses, metrics, names, train.batch_size))
    if warning:
      warned = True
      logging.warning('[train] %s', warning)
      log.write({'stage': STAGE, 'step': step, 'warning': warning})
    if step % num_batches == 0:
      validation = first_device_values(validate(replicated, resident))
      stopping = update_early_stopping(stopping, validation,
                                       train.early_stopping)
      log.write({'stage': STAGE, 'step': step, 'epoch': epoch,
                 'validation/reconstruction': dict(zip(names, validation)),
                 'active': dict(zip(names, stopping.active))})
      if not stopping.active.all():
        logging.info('[train] early stopping: %s stopped',
                     ', '.join(n for n, a in zip(names, stopping.active) if not a))
    if step - (last_saved or 0) >= train.checkpoint_every_steps:
      checkpoints.save(step, {'state': unreplicate(replicated),
                              'early_stopping': stopping.as_tree()})
      last_saved = step
  state = unreplicate(replicated)
  saved_now = last_saved != step and step > start_step
  if saved_now:
    checkpoints.save(step, {'state': state, 'early_stopping': stopping.as_tree()})
    last_saved = step
  if stop or stop_agreed():
    done = (f'training stopped at step {step} of {total_steps}'
            if step > start_step else 'training stopped before its first step '
            'in this run: nothing was trained')
    raise KeyboardInterrupt(
        f'{done}; '
        + kept_checkpoint(last_saved, saved_now, checkpoints.directory))
  logging.info('[train] done at step %d; checkpoints in %s', step,
               checkpoints.directory)
  return state


