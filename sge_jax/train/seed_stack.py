"""Many seeds as one compiled program: the seed stack, spread over the devices.

Sequentially, seed s trains alone and its global batch of B sequences is cut
into shards over the n devices (``sge_jax.train.step``). In the seed stack the
models of S seeds are stacked on one more leading axis; the seed axis, padded
to n c slots with c = ceil(S / n) seeds per device, is split over the n devices
of every process with ``jax.pmap`` (axis ``seeds``), and the c seeds of one
device are ``jax.vmap``-ped. Every seed trains on the FULL global batch on its
device.

The maths. Seed s's step computes ``train_step(state_s, batch_s, rng_s,
axis_name=None)``: n_dev = 1, so its objective is

    L_s = sum_{i<B} (reconstruction_i + attention_i)
          + w * contrastive(p_1 .. p_B) + weight decay,

with the projections p_1 .. p_B of the whole global batch in stored order
already on the device: no all-gather, and no pmean of losses or gradients.
That is the same function of the same parameters on the same batch as the
sequential step, whose pmean over n devices of n * (shard sums) + contrastive
on the all-gathered projections equals L_s and its gradient exactly in real
arithmetic; the two differ only in the order of float32 sums. ``vmap`` over
seeds (and over the M axis/pretext models inside) adds batch dimensions and no
term between slots, so slot s's update is a function of slot s's state and data
alone, and the pmap has no collective at all: it only places the slots.

Per seed, exactly what its sequential run uses (``sge_jax.train.setup``,
``loop``, ``pretext``): the initial state of ``key(seed)`` (model m of it
initialised with ``split(init_key, M)[m]``), the root key of the per-step keys
``fold_in(fold_in(rng, 0), step)`` and of the per-epoch batch order, its own
step counter (so seeds may even be at different steps), and the sorting
permutations of ``default_rng([seed, crc32(stream)])``: with a sorting task the
resident data holds one copy per slot, otherwise one copy per device shared by
its slots.

Layout: slot j runs on global device j // c (process-major, as pmap orders the
devices of all processes), position j % c. Slots S .. n c - 1 are padding:
copies of the last seed, computing exactly what its slot computes, and dropped
whenever values come back to the host (``gather_stack``). Padding is safe
(no slot reads another, and early stopping, finiteness checks, logs and
checkpoints read the real seeds only); it only costs the idle slots' compute,
at most n - 1 of n c. Refusing uneven counts would buy nothing.

Memory per device: c train states and c activations of a B-sequence batch,
against one state and a B / n batch in the sequential run.

Many processes: every process builds the whole stack of initial states
(cheap) and places only its local devices' slots; values come back to the
host through ``sge_jax.distributed.gather`` (a collective), so every process
holds every seed's metrics and state and takes the same decisions.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from sge_jax import distributed
from sge_jax.train import pretext
from sge_jax.train.devices import (Devices, first_local_position,
                                   local_device_count, pmap_devices,
                                   to_devices)
from sge_jax.train.loop import first_batch_reconstruction, step_on_resident_data
from sge_jax.train.state import TrainState, create_train_state
from sge_jax.train.step import LOSS_TERMS, StepDefinition

SEED_AXIS = 'seeds'


# ----------------------------------------------------------------- layout


@dataclasses.dataclass(frozen=True)
class SeedLayout:
  """Where each seed of the stack runs.

  Attributes:
    seeds: the S real seeds, in stack order.
    num_devices: n, the devices of every process.
    per_device: c = ceil(S / n), slots per device.
  """
  seeds: tuple[int, ...]
  num_devices: int
  per_device: int

  @property
  def num_slots(self) -> int:
    """n c: the padded length of the seed axis."""
    return self.num_devices * self.per_device

  @property
  def slot_seed_index(self) -> np.ndarray:
    """[n c] the position in ``seeds`` each slot trains (padding: the last)."""
    return np.minimum(np.arange(self.num_slots), len(self.seeds) - 1)


def seed_layout(seeds: Sequence[int], num_devices: int) -> SeedLayout:
  """The layout of ``seeds`` on ``num_devices`` devices (module docstring)."""
  seeds = tuple(int(seed) for seed in seeds)
  if not seeds or num_devices < 1:
    raise ValueError(f'a seed stack needs seeds and devices, got {len(seeds)} '
                     f'seeds and {num_devices} devices')
  return SeedLayout(seeds, num_devices, -(-len(seeds) // num_devices))


# ----------------------------------------------------------------- host stacks


def _keys_as_data(tree):
  return jax.tree.map(
      lambda leaf: jax.random.key_data(leaf) if _is_key(leaf) else leaf, tree)


def _is_key(leaf) -> bool:
  return hasattr(leaf, 'dtype') and jax.dtypes.issubdtype(leaf.dtype,
                                                          jax.dtypes.prng_key)


def stack_trees(trees: Sequence):
  """Host NumPy leaves [S, ...] from S trees of one structure (typed keys
  stay typed keys, stacked)."""
  first = trees[0]
  stacked = jax.tree.map(lambda *leaves: np.stack([np.asarray(leaf) for leaf
                                                  in leaves]),
                         *[_keys_as_data(tree) for tree in trees])
  return _rewrap_keys(stacked, first)


def _rewrap_keys(tree, like):
  return jax.tree.map(
      lambda leaf, template: (jax.random.wrap_key_data(
          jnp.asarray(leaf), impl=jax.random.key_impl(template))
                              if _is_key(template) else leaf), tree, like)


def tree_row(stacked, index: int):
  """Seed ``index`` of a stacked tree (leaves [S, ...] -> [...])."""
  return jax.tree.map(lambda leaf: leaf[index], stacked)


def stacked_initial_states(model, tx: optax.GradientTransformation,
                           seeds: Sequence[int], num_models: int, length: int,
                           num_joints: int) -> TrainState:
  """Each seed's fresh state, exactly as ``setup.initial_state`` makes it from
  ``key(seed)``, stacked: leaves [S, ...] (host NumPy; keys typed)."""
  return stack_trees([create_train_state(model, tx, jax.random.key(seed),
                                         num_models, length, num_joints)
                      for seed in seeds])


def seed_dependent(tasks: Sequence[pretext.PretextTask]) -> bool:
  """Whether the pretext data depend on the seed (a sorting task's
  permutations do; reversal and prediction do not)."""
  return any(task.name == 'sorting' for task in tasks)


def stacked_seed_data(sequences: np.ndarray,
                      tasks: tuple[pretext.PretextTask, ...],
                      seeds: Sequence[int], stream: str
                      ) -> tuple[dict[str, np.ndarray], bool]:
  """The pretext data of every seed, as each sequential run builds it.

  Args:
    sequences: [N, f, J, 3] the training split in stored order.
    tasks, stream: as ``pretext.stacked_pretext_data``.
    seeds: the S seeds.

  Returns:
    (data, per_seed): ``inputs``/``targets`` [S, M, N, f, J] when
    ``per_seed`` (a sorting task), else one shared copy [M, N, f, J].
  """
  if not seed_dependent(tasks):
    return pretext.stacked_pretext_data(sequences, tasks, seeds[0], stream), False
  per_seed = [pretext.stacked_pretext_data(sequences, tasks, seed, stream)
              for seed in seeds]
  return {name: np.stack([data[name] for data in per_seed])
          for name in per_seed[0]}, True


# ----------------------------------------------------------------- placement


def _local_slots(layout: SeedLayout, devices: Devices) -> np.ndarray:
  """[L, c] the slots of this process's L devices."""
  first = first_local_position(devices)
  slots = np.arange(layout.num_slots).reshape(layout.num_devices,
                                              layout.per_device)
  return slots[first:first + local_device_count(devices)]


def place_stack(stacked, layout: SeedLayout, devices: Devices):
  """Puts a tree with leaves [S, ...] (one row per real seed) on this process's
  devices as the seed stack: leaves [L, c, ...], padding slots filled."""
  rows = layout.slot_seed_index[_local_slots(layout, devices)]       # [L, c]
  local = jax.tree.map(lambda leaf: np.asarray(leaf)[rows],
                       jax.device_get(_keys_as_data(stacked)))
  return to_devices(_rewrap_keys(local, stacked), devices, SEED_AXIS)


def resident_seed_batches(data: dict[str, np.ndarray], per_seed: bool,
                          batch_size: int, layout: SeedLayout,
                          devices: Devices) -> tuple[dict, int]:
  """Puts whole batches on this process's devices, every batch whole on each.

  Args:
    data: from ``stacked_seed_data``: [S, M, N, f, J] or shared [M, N, f, J].
    per_seed: which of the two.
    batch_size: B, the global batch every seed trains on.
    layout: the seed layout.
    devices: as ``sge_jax.train.devices``.

  Returns:
    (leaves [L, c, M, num_batches, B, f, J], or shared [L, M, num_batches, B,
    f, J], num_batches). The incomplete last batch is dropped, as sequentially.
  """
  num_sequences = data['inputs'].shape[-3]
  num_batches = num_sequences // batch_size

  def arrange(array):
    whole = array[..., :num_batches * batch_size, :, :]
    return whole.reshape(whole.shape[:-3] + (num_batches, batch_size)
                         + whole.shape[-2:])

  batches = {name: arrange(array) for name, array in data.items()}
  if per_seed:
    return place_stack(batches, layout, devices), num_batches
  copies = local_device_count(devices)
  return to_devices({name: np.broadcast_to(array, (copies,) + array.shape)
                     for name, array in batches.items()}, devices,
                    SEED_AXIS), num_batches


def _ordered_local_rows(leaf) -> np.ndarray:
  """[L, ...] this process's rows of a pmap output, in pmap's device order
  (each device's buffer on its own: no program over all devices, see
  ``devices.unreplicate``)."""
  shards = sorted(leaf.addressable_shards, key=lambda shard: shard.index[0].start
                  or 0)
  return np.concatenate([np.asarray(shard.data) for shard in shards])


def gather_stack(stacked_on_devices, layout: SeedLayout):
  """The real seeds' rows of a seed-stack tree, on the host: leaves [L, c, ...]
  on the devices -> NumPy [S, ...] (typed keys stay keys). A collective in a
  multi-process job: every process gets every seed's rows."""
  as_data = _keys_as_data(stacked_on_devices)

  def gather(leaf):
    local = _ordered_local_rows(leaf)                       # [L, c, ...]
    every = distributed.gather(local)                       # [P, L, c, ...]
    slots = every.reshape((layout.num_slots,) + local.shape[2:])
    return slots[:len(layout.seeds)]
  return _rewrap_keys(jax.tree.map(gather, as_data), stacked_on_devices)


# ----------------------------------------------------------------- compiled calls


def _select_slots(moving: jax.Array, new, old):
  """Per slot ([c] ``moving``), the new leaves or the old ones."""
  def select(new_leaf, old_leaf):
    mask = moving.reshape(moving.shape + (1,) * (new_leaf.ndim - 1))
    return jnp.where(mask, new_leaf, old_leaf)
  return jax.tree.map(select, new, old)


def _stack_calls(states: TrainState, data: dict, active: jax.Array,
                 steps_left: jax.Array, num_steps: jax.Array, *,
                 definition: StepDefinition, max_steps: int, num_batches: int,
                 shuffle: bool, per_seed: bool):
  """Up to ``max_steps`` steps of this device's c slots (the body of the pmap).

  Args:
    states: leaves [c, ...].
    data: [c, M, num_batches, B, f, J], or shared [M, num_batches, B, f, J].
    active: [c, M] models still training (early stopping).
    steps_left: [c] int32, the steps each slot takes in this call (0: frozen:
      finished, stopped, or padding of such a seed).
    num_steps: [] max of ``steps_left`` over every slot of the job (the
      iterations past it skip the step; ``loop._train_calls``).

  Returns:
    (states, metrics: term -> [c, max_steps, M], zeros where a slot did not
    step).
  """
  step_one = functools.partial(step_on_resident_data, definition=definition,
                               num_batches=num_batches, shuffle=shuffle,
                               axis_name=None)
  step_all = jax.vmap(step_one, in_axes=(0, 0 if per_seed else None, 0))

  def zeros(_):
    return {term: jnp.zeros(active.shape, jnp.float32)
            for term in LOSS_TERMS + ('total',)}

  def one_step(states, iteration):
    new, metrics = step_all(states, data, active)
    moving = iteration < steps_left
    kept = _select_slots(moving, (new.step, new.params, new.opt_state),
                         (states.step, states.params, states.opt_state))
    states = states.replace(step=kept[0], params=kept[1], opt_state=kept[2])
    return states, _select_slots(moving, metrics, zeros(None))

  def maybe_step(states, iteration):
    return lax.cond(iteration < num_steps,
                    lambda s: one_step(s, iteration),
                    lambda s: (s, zeros(None)), states)

  states, metrics = lax.scan(maybe_step, states, jnp.arange(max_steps))
  return states, jax.tree.map(lambda values: jnp.swapaxes(values, 0, 1), metrics)


@functools.lru_cache(maxsize=None)
def make_stack_calls(definition: StepDefinition,
                     devices: Optional[tuple[jax.Device, ...]], max_steps: int,
                     num_batches: int, shuffle: bool, per_seed: bool):
  """Compiled multi-step call of the seed stack: (states [L, c, ...], resident
  data, active [L, c, M], steps_left [L, c], num_steps []) -> (states,
  metrics term -> [L, c, max_steps, M]). The states are donated; ``devices``
  as ``loop.make_train_calls``."""
  return jax.pmap(
      functools.partial(_stack_calls, definition=definition,
                        max_steps=max_steps, num_batches=num_batches,
                        shuffle=shuffle, per_seed=per_seed),
      axis_name=SEED_AXIS, in_axes=(0, 0, 0, 0, None), donate_argnums=(0,),
      devices=pmap_devices(devices))


@functools.lru_cache(maxsize=None)
def make_stack_validation(definition: StepDefinition,
                          devices: Optional[tuple[jax.Device, ...]],
                          per_seed: bool):
  """Compiled validation of the stack: (states, resident data) -> [L, c, M],
  each slot's reconstruction loss on training batch 0 (the early-stopping
  value of ``loop.first_batch_reconstruction``)."""
  one = functools.partial(first_batch_reconstruction, definition=definition,
                          axis_name=None)
  return jax.pmap(jax.vmap(one, in_axes=(0, 0 if per_seed else None)),
                  axis_name=SEED_AXIS, devices=pmap_devices(devices))

