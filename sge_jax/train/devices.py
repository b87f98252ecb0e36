"""Placing data and state on the devices the way ``jax.pmap`` does.

The state is replicated (one copy per device); a global batch of B consecutive
sequences is cut into contiguous shards of B / n_dev, shard d on device d, so
the devices together hold the batch in stored order (the contrastive loss's
all-gather relies on it; see ``sge_jax.train.step``).
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sge_jax.train.step import AXIS_NAME


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


def to_devices(stacked_tree, devices: Sequence[jax.Device]):
  """Places a tree whose leaves lead with a device axis the way pmap does.

  Going through a pmapped identity gives the arrays exactly the sharding of a
  pmap output, so the first training step does not compile a second program
  for a differently placed input state.
  """
  return _pmapped_identity(tuple(devices))(stacked_tree)


@functools.lru_cache(maxsize=None)
def _pmapped_identity(devices: tuple[jax.Device, ...]):
  return jax.pmap(lambda tree: tree, axis_name=AXIS_NAME, devices=list(devices))


def replicate(tree, devices: Sequence[jax.Device]):
  """One copy of every leaf per device, placed as pmap places its outputs."""
  # device_put first: broadcasting a NumPy leaf (a restored checkpoint) would
  # compile a dtype conversion per shape.
  stacked = jax.tree.map(
      lambda leaf: jnp.broadcast_to(jax.device_put(leaf),
                                    (len(devices),) + leaf.shape), tree)
  return to_devices(stacked, devices)


def unreplicate(tree):
  """The first device's copy of a replicated tree."""
  return jax.tree.map(lambda leaf: leaf[0], tree)
