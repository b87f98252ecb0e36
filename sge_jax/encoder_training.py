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
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import pathlib
import time
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax import lax

from sge_jax import losses, optim, pretext
from sge_jax.checkpointing import CheckpointStore, has_checkpoints
from sge_jax.data.dataset import SkeletonDataset
from sge_jax.data.loading import check_trainable
from sge_jax.errors import DataError
from sge_jax.logbook import MetricsLog, format_duration
from sge_jax.models import GaitEncodingModel
from sge_jax.train_state import TrainState, create_train_state
from sge_jax.train_step import (AXIS_NAME, LOSS_TERMS, LossSettings,
                                StepDefinition, replicate,
                                to_devices, train_step, unreplicate)

STAGE = 'train'
_SHUFFLE_STREAM = 1
# The authors' plateau rule compares validation losses rounded to 5 decimals.
_PLATEAU_DECIMALS = 5


class NonFiniteLossError(RuntimeError):
  """Training produced a NaN or infinite loss; the last good checkpoint is kept."""


# ----------------------------------------------------------------- set-up


def build_model(model_config: ml_collections.ConfigDict,
                num_joints: int) -> GaitEncodingModel:
  return GaitEncodingModel(hidden=int(model_config.hidden), num_joints=num_joints,
                           num_layers=int(model_config.num_layers),
                           decoder_input=model_config.decoder_input)


def build_tasks(model_config) -> tuple[pretext.PretextTask, ...]:
  return pretext.pretext_tasks(model_config.pretext, model_config.attention)


def build_definition(config: ml_collections.ConfigDict,
                     num_joints: int) -> StepDefinition:
  return StepDefinition(
      model=build_model(config.model, num_joints),
      model_tasks=pretext.per_model_tasks(build_tasks(config.model)),
      loss=LossSettings(temperature=float(config.train.temperature),
                        weight_decay=float(config.train.weight_decay),
                        contrastive_weight=float(config.model.contrastive_weight)))


def build_optimizer(train_config):
  return optim.tf_adam_with_value_clipping(float(train_config.learning_rate),
                                           float(train_config.clip_value))


def encoder_training_split(dataset: SkeletonDataset) -> str:
  """The split the encoders learn from: ``train``, else ``gallery`` (CASIA-B CME,
  whose folders hold only gallery and probe: the probe stays unseen)."""
  for name in ('train', 'gallery'):
    if name in dataset.splits:
      return name
  raise DataError(f'dataset {dataset.name!r} ({dataset.source}) has neither a '
                  f'train nor a gallery split to train the encoders on; it has '
                  f'{", ".join(dataset.splits)}')


def initial_state(config: ml_collections.ConfigDict, definition: StepDefinition,
                  length: int, num_joints: int) -> TrainState:
  """Fresh state from the root seed (typed key; init and step keys split off)."""
  return create_train_state(definition.model, build_optimizer(config.train),
                            jax.random.key(int(config.seed)),
                            len(definition.model_tasks), length, num_joints)


# ----------------------------------------------------------------- device data


def resident_batches(data: dict[str, np.ndarray], batch_size: int,
                     devices: Sequence[jax.Device]) -> tuple[dict, int]:
  """Puts whole batches on the devices, each device holding its shard of each.

  Args:
    data: ``inputs``/``targets`` [M, N, f, J] in stored order.
    batch_size: global batch size B (a multiple of the device count).
    devices: the devices.

  Returns:
    (tree of [n_dev, M, num_batches, B / n_dev, f, J] arrays on the devices,
    num_batches). Sequences beyond the last whole batch are dropped.
  """
  num_devices = len(devices)
  num_models, num_sequences = data['inputs'].shape[:2]
  num_batches = num_sequences // batch_size
  per_device = batch_size // num_devices

  def arrange(array):
    whole = array[:, :num_batches * batch_size]
    shards = whole.reshape((num_models, num_batches, num_devices, per_device)
                           + array.shape[2:])
    return np.ascontiguousarray(np.moveaxis(shards, 2, 0))

  return to_devices({k: arrange(v) for k, v in data.items()}, devices), num_batches


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
    index = batch_index(state.step, state.rng, num_batches, shuffle)
    batch = jax.tree.map(
        lambda a: lax.dynamic_index_in_dim(a, index, axis=1, keepdims=False),
        data)
    new_state, metrics = train_step(state, batch, state.rng,
                                    definition=definition, axis_name=AXIS_NAME)
    return _keep_frozen(active, new_state, state), metrics

  def skip(state):
    return state, {term: jnp.zeros(active.shape, jnp.float32)
                   for term in LOSS_TERMS + ('total',)}

  def maybe_step(state, iteration):
    return lax.cond(iteration < num_steps, one_step, skip, state)

  return lax.scan(maybe_step, state, jnp.arange(max_steps))


@functools.lru_cache(maxsize=None)
def make_train_calls(definition: StepDefinition, devices: tuple[jax.Device, ...],
                     max_steps: int, num_batches: int, shuffle: bool):
  """Compiled multi-step call: (replicated state, resident data, active [M],
  number of steps <= max_steps) -> (state, metrics of each step [n_dev, L, M]).
  The state is donated."""
  return jax.pmap(
      functools.partial(_train_calls, definition=definition,
                        max_steps=max_steps, num_batches=num_batches,
                        shuffle=shuffle),
      axis_name=AXIS_NAME, in_axes=(0, 0, None, None), donate_argnums=(0,),
      devices=list(devices))


def _first_batch_reconstruction(state: TrainState, data: dict, *,
                                definition: StepDefinition) -> jax.Array:
  """Reconstruction loss [M] of each model on training batch 0 (global sum)."""
  batch = jax.tree.map(lambda a: a[:, 0], data)

  def per_model(params, inputs, targets):
    outputs = definition.model.apply({'params': params}, inputs, targets,
                                     project=False)
    return losses.reconstruction_loss(outputs['reconstruction'], targets)

  per_device = jax.vmap(per_model)(state.params, batch['inputs'],
                                   batch['targets'])
  return lax.psum(per_device, AXIS_NAME)


@functools.lru_cache(maxsize=None)
def make_validation(definition: StepDefinition, devices: tuple[jax.Device, ...]):
  return jax.pmap(
      functools.partial(_first_batch_reconstruction, definition=definition),
      axis_name=AXIS_NAME, devices=list(devices))


# ----------------------------------------------------------------- early stopping


@dataclasses.dataclass(frozen=True)
class EarlyStopping:
  """Per-model bookkeeping of the authors' plateau rule (SPEC §5).

  Attributes:
    history: [M, 4] the last four validation losses (NaN-padded, oldest first).
    plateaus: [M] plateaus counted so far.
    active: [M] models still training.
  """
  history: np.ndarray
  plateaus: np.ndarray
  active: np.ndarray

  @classmethod
  def start(cls, num_models: int) -> 'EarlyStopping':
    return cls(np.full((num_models, 4), np.nan, np.float64),
               np.zeros(num_models, np.int64), np.ones(num_models, bool))

  def as_tree(self) -> dict:
    return dataclasses.asdict(self)


def update_early_stopping(state: EarlyStopping, validation_losses: np.ndarray,
                          rule: str) -> EarlyStopping:
  """Adds one epoch's validation losses [M].

  ``paper``: when the last three losses agree to 5 decimals a plateau is
  counted; after a plateau, a model stops once its loss is >= the maximum of the
  three losses before it. ``none``: models never stop.
  """
  history = np.concatenate([state.history[:, 1:],
                            np.asarray(validation_losses, np.float64)[:, None]],
                           axis=1)
  if rule != 'paper':
    return EarlyStopping(history, state.plateaus, state.active)
  last_three = np.round(history[:, 1:], _PLATEAU_DECIMALS)
  flat = np.all(last_three == last_three[:, :1], axis=1)
  plateaus = state.plateaus + (flat & state.active)
  rising = history[:, 3] >= np.max(history[:, :3], axis=1)
  stop = (plateaus >= 1) & rising & ~np.isnan(history[:, 0])
  return EarlyStopping(history, plateaus, state.active & ~stop)


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


_SHORT_NAMES = {'reconstruction': 'rec', 'locality_attention': 'att',
                'contrastive': 'lcl', 'weight_decay': 'wd', 'total': 'total'}


def _progress_line(epoch: int, epochs: int, step: int, total: int,
                   sums: dict[str, float], rate: float, remaining: float) -> str:
  """One readable line; losses are summed over the stacked models."""
  losses = '  '.join(f'{_SHORT_NAMES[name]} {value:.4g}'
                     for name, value in sums.items())
  return (f'[train] epoch {epoch}/{epochs}  step {step}/{total} '
          f'({100 * step / total:.1f}%)  {losses}  | {rate:.2f} steps/s  '
          f'ETA {format_duration(remaining)}')


def train_encoders(config: ml_collections.ConfigDict, dataset: SkeletonDataset,
                   workdir: str | pathlib.Path,
                   devices: Optional[Sequence[jax.Device]] = None) -> TrainState:
  """Runs (or resumes, or skips if finished) the self-supervised training.

  Args:
    config: the job config (model, train, seed).
    dataset: the loaded dataset; trains on ``encoder_training_split(dataset)``.
    workdir: run directory; checkpoints go to ``<workdir>/checkpoints`` and
      metrics to ``<workdir>/metrics.jsonl``.
    devices: devices to train on (default: all local devices).

  Returns:
    The final train state (unreplicated).
  """
  workdir = pathlib.Path(workdir)
  devices = tuple(devices or jax.local_devices())
  split_name = encoder_training_split(dataset)
  check_trainable(dataset, int(config.train.batch_size), split_name)
  with CheckpointStore(workdir / 'checkpoints',
                       int(config.train.keep_checkpoints)) as checkpoints:
    return _train_loop(config, dataset, split_name, workdir, devices,
                       checkpoints)


def _train_loop(config: ml_collections.ConfigDict, dataset: SkeletonDataset,
                split_name: str, workdir: pathlib.Path,
                devices: tuple[jax.Device, ...],
                checkpoints: CheckpointStore) -> TrainState:
  """The body of ``train_encoders``, with an open checkpoint store."""
  train = config.train
  split = dataset.split(split_name)
  tasks = build_tasks(config.model)
  names = pretext.model_names(tasks)
  definition = build_definition(config, dataset.num_joints)
  data = pretext.stacked_pretext_data(split.sequences, tasks, int(config.seed),
                                      split_name)
  resident, num_batches = resident_batches(data, int(train.batch_size), devices)
  total_steps = int(train.epochs) * num_batches
  max_steps = max(1, min(num_batches, int(train.log_every_steps)))

  log = MetricsLog(workdir / 'metrics.jsonl')
  state = initial_state(config, definition, dataset.length, dataset.num_joints)
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
    return state
  logging.info('[train] %d sequences of %s -> %d batches of %d per epoch, %d '
               'models (%s), %d epochs, up to %d steps per call, %d device(s)',
               split.num_sequences, dataset.name, num_batches, train.batch_size,
               len(names), ', '.join(names), train.epochs, max_steps,
               len(devices))

  run_calls = make_train_calls(definition, devices, max_steps, num_batches,
                               bool(train.shuffle_batches))
  validate = make_validation(definition, devices)
  replicated = replicate(state, devices)
  last_saved = start_step
  step = start_step
  timed_steps, timed_seconds = 0, 0.0      # excludes the first, compiling call
  while step < total_steps and stopping.active.any():
    num_steps = steps_in_next_call(step, max_steps, num_batches, total_steps)
    call_start = time.perf_counter()
    replicated, metrics = run_calls(replicated, resident, stopping.active,
                                    np.int32(num_steps))
    metrics = {term: np.asarray(values[0])[:num_steps]
               for term, values in metrics.items()}
    _check_finite(metrics, names, step, checkpoints)
    elapsed = time.perf_counter() - call_start
    if step > start_step:
      timed_steps, timed_seconds = timed_steps + num_steps, timed_seconds + elapsed
    rate = timed_steps / timed_seconds if timed_steps else num_steps / elapsed
    step += num_steps
    epoch = -(-step // num_batches)
    means = {term: metrics[term].mean(axis=0) for term in metrics}
    log.write({'stage': STAGE, 'step': step, 'epoch': epoch,
               **{f'loss/{term}': dict(zip(names, means[term])) for term in means},
               'loss/total_all_models': float(means['total'].sum()),
               'steps_per_s': rate,
               'sequences_per_s': rate * int(train.batch_size)})
    sums = {term: float(means[term].sum()) for term in LOSS_TERMS + ('total',)}
    logging.info(_progress_line(epoch, int(train.epochs), step, total_steps, sums,
                                rate, (total_steps - step) / max(rate, 1e-9)))
    if step % num_batches == 0:
      validation = np.asarray(validate(replicated, resident)[0])
      stopping = update_early_stopping(stopping, validation,
                                       train.early_stopping)
      log.write({'stage': STAGE, 'step': step, 'epoch': epoch,
                 'validation/reconstruction': dict(zip(names, validation)),
                 'active': dict(zip(names, stopping.active))})
      if not stopping.active.all():
        logging.info('[train] early stopping: %s stopped',
                     ', '.join(n for n, a in zip(names, stopping.active) if not a))
    if step - last_saved >= int(train.checkpoint_every_steps):
      checkpoints.save(step, {'state': unreplicate(replicated),
                              'early_stopping': stopping.as_tree()})
      last_saved = step
  state = unreplicate(replicated)
  if last_saved != step:
    checkpoints.save(step, {'state': state, 'early_stopping': stopping.as_tree()})
  logging.info('[train] done at step %d; checkpoints in %s', step,
               checkpoints.directory)
  return state


def restore_trained_params(config: ml_collections.ConfigDict,
                           workdir: str | pathlib.Path, length: int,
                           num_joints: int):
  """The stacked parameters of the newest checkpoint in ``<workdir>/checkpoints``.

  Raises:
    DataError: there is no checkpoint (the train stage has not run there).
  """
  definition = build_definition(config, num_joints)
  template = {'state': initial_state(config, definition, length, num_joints),
              'early_stopping': EarlyStopping.start(
                  len(definition.model_tasks)).as_tree()}
  directory = pathlib.Path(workdir) / 'checkpoints'
  restored = None
  if has_checkpoints(directory):
    with CheckpointStore(directory) as checkpoints:
      restored = checkpoints.restore_latest(template)
  if restored is None:
    raise DataError(f'No trained encoders in {workdir}/checkpoints: run the train '
                    'stage there first (--config.stages=train,...).')
  return restored[1]['state'].params
