"""The encoder train state: one pytree, so a checkpoint is one call."""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct


class TrainState(struct.PyTreeNode):
  """State of the stacked gait-encoding models.

  Attributes:
    step: int32 [], optimizer steps taken (also the data position: batches are
      visited in a fixed order per epoch).
    params: parameters of M models stacked on a leading axis (x, y, z per pretext).
    opt_state: optimizer state of the stacked parameters (element-wise, so each
      model's Adam state is independent of the others').
    rng: typed PRNG key, the root of the per-step keys
      (``train_step.STEP_KEY_STREAM``, then ``fold_in(step)``).
    tx: the optimizer (static).
  """
  step: jax.Array
  params: Any
  opt_state: optax.OptState
  rng: jax.Array
  tx: optax.GradientTransformation = struct.field(pytree_node=False)

  def apply_gradients(self, grads) -> 'TrainState':
    updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
    return self.replace(step=self.step + 1,
                        params=optax.apply_updates(self.params, updates),
                        opt_state=opt_state)


@functools.lru_cache(maxsize=None)
def _compiled_stacked_init(model: nn.Module, length: int, num_joints: int):
  sample = jnp.zeros((2, length, num_joints), jnp.float32)

  def init_one(model_key):
    return model.init(model_key, sample, sample)['params']

  # Jitted (un-jitted Flax init compiles every primitive separately: seconds)
  # and cached, so building a restore template again costs nothing.
  return jax.jit(jax.vmap(init_one))


def init_stacked_params(model: nn.Module, key: jax.Array, num_models: int,
                        length: int, num_joints: int):
  """Initialises ``num_models`` independent copies of ``model``, stacked.

  Model m is initialised with ``jax.random.split(key, num_models)[m]``, so the
  stacked parameters equal separately initialised ones.

  Returns:
    Parameters with a leading axis of size ``num_models``.
  """
  return _compiled_stacked_init(model, length, num_joints)(
      jax.random.split(key, num_models))


def create_train_state(model: nn.Module, tx: optax.GradientTransformation,
                       key: jax.Array, num_models: int, length: int,
                       num_joints: int) -> TrainState:
  """A fresh train state; ``key`` is a typed key (``jax.random.key(seed)``)."""
  init_key, step_key = jax.random.split(key)
  params = init_stacked_params(model, init_key, num_models, length, num_joints)
  return TrainState(step=jnp.zeros([], jnp.int32), params=params,
                    opt_state=tx.init(params), rng=step_key, tx=tx)
