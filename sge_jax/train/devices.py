"""Placing data and state on the devices the way ``jax.pmap`` does.

The state is replicated (one copy per device); a global batch of B consecutive
sequences is cut into contiguous shards of B / n_dev, shard d on device d, so
the devices together hold the batch in stored order (the contrastive loss's
all-gather relies on it; see ``sge_jax.train.step``).

``devices`` is either an explicit list (one process; e.g. a test comparing one
device with two) or None: every device of every process, in the order ``pmap``
uses by default, process-major (process 0's local devices, then process 1's,
...). In a multi-process job each process places only its local devices' part,
from data it loaded itself: with L local devices, process p holds the global
device positions ``first_local_position .. + L`` and so rows
``[(p L + d) b, (p L + d + 1) b)`` of every global batch on its device d.
Never pass ``jax.local_devices()`` in a multi-process job: pmap would then
train one independent model per process, without any error.
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sge_jax.train.step import AXIS_NAME


Devices = Optional[Sequence[jax.Device]]


def pmap_devices(devices: Devices) -> Optional[list[jax.Device]]:
  """The ``devices=`` argument of every pmap of the run (None: pmap's global
  process-major default)."""
  return None if devices is None else list(devices)


def global_device_count(devices: Devices) -> int:
  """Devices that share each global batch (over every process)."""
  return jax.device_count() if devices is None else len(devices)


def local_device_count(devices: Devices) -> int:
  """Devices this process feeds: the leading axis of every pmap argument."""
  return jax.local_device_count() if devices is None else len(devices)


def first_local_position(devices: Devices) -> int:
  """Position of this process's first device among all of pmap's devices
  (process-major order: the devices of the processes before this one)."""
  if devices is not None:
    return 0
  return sum(1 for device in jax.devices()
             if device.process_index < jax.process_index())


def resident_batches(data: dict[str, np.ndarray], batch_size: int,
                     devices: Devices) -> tuple[dict, int]:
  """Puts whole batches on this process's devices, each device holding its
  shard of each.

  Args:
    data: ``inputs``/``targets`` [M, N, f, J] in stored order (the whole
      training split, identical on every process).
    batch_size: global batch size B (a multiple of the global device count).
    devices: an explicit device list, or None for every device of every
      process (module docstring).

  Returns:
    (tree of [L, M, num_batches, B / n_dev, f, J] arrays on this process's L
    devices, num_batches). Sequences beyond the last whole batch are dropped.
  """
  num_devices = global_device_count(devices)
  first = first_local_position(devices)
  local = slice(first, first + local_device_count(devices))
  num_models, num_sequences = data['inputs'].shape[:2]
  num_batches = num_sequences // batch_size
  per_device = batch_size // num_devices

  def arrange(array):
    whole = array[:, :num_batches * batch_size]
    shards = whole.reshape((num_models, num_batches, num_devices, per_device)
                           + array.shape[2:])
    return np.ascontiguousarray(np.moveaxis(shards, 2, 0)[local])

  return to_devices({k: arrange(v) for k, v in data.items()}, devices), num_batches


def to_devices(stacked_tree, devices: Devices, axis_name: str = AXIS_NAME):
  """Places a tree whose leaves lead with this process's device axis the way
  pmap does.

  Going through a pmapped identity gives the arrays exactly the sharding of a
  pmap output, so the first training step does not compile a second program
  for a differently placed input state. The sharding names the pmap's axis:
  ``axis_name`` must be that of the pmaps the tree goes to.
  """
  return _pmapped_identity(None if devices is None else tuple(devices),
                           axis_name)(stacked_tree)


@functools.lru_cache(maxsize=None)
def _pmapped_identity(devices: Optional[tuple[jax.Device, ...]],
                      axis_name: str):
  return jax.pmap(lambda tree: tree, axis_name=axis_name,
                  devices=pmap_devices(devices))


def replicate(tree, devices: Devices):
  """One copy of every leaf per local device, placed as pmap places its outputs."""
  # device_put first: broadcasting a NumPy leaf (a restored checkpoint) would
  # compile a dtype conversion per shape.
  stacked = jax.tree.map(
      lambda leaf: jnp.broadcast_to(jax.device_put(leaf),
                                    (local_device_count(devices),) + leaf.shape),
      tree)
  return to_devices(stacked, devices)


def unreplicate(tree):
  """The first local device's copy of a replicated tree (on that device).

  Not ``leaf[0]``: indexing a pmap output runs a program over all local
  devices, and a 2-process CPU job hung in one such slice before a checkpoint
  save (the main thread waiting for its result; about one run in four).
  ``addressable_data`` takes one device's buffer; the ``[0]`` then runs on that
  device alone.
  """
  return jax.tree.map(lambda leaf: leaf.addressable_data(0)[0], tree)


def first_device_values(array: jax.Array) -> np.ndarray:
  """The first local device's row of a pmap output, as NumPy (no device
  program, see ``unreplicate``)."""
  return np.asarray(array.addressable_data(0))[0]
