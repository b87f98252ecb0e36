"""Optimisers with the authors' TF1 semantics."""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class TFAdamState(NamedTuple):
  count: jax.Array  # int32 scalar, steps taken
  mu: optax.Updates
  nu: optax.Updates


def scale_by_tf_adam(b1: float = 0.9, b2: float = 0.999,
                     eps: float = 1e-8) -> optax.GradientTransformation:
  """Adam as ``tf.train.AdamOptimizer`` computes it (the "epsilon hat" form).

  TF folds the bias corrections into the step size,
  ``lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``, which puts eps outside
  the bias-corrected denominator. ``optax.scale_by_adam`` computes
  ``m_hat / (sqrt(v_hat) + eps)``; the two differ by eps * sqrt(1 - b2^t), which
  matters only for tiny second moments, but sge-jax follows the authors exactly.
  Returns the positive direction; scale by -lr afterwards.
  """

  def init_fn(params):
    zeros = jax.tree.map(jnp.zeros_like, params)
    return TFAdamState(count=jnp.zeros([], jnp.int32), mu=zeros,
                       nu=jax.tree.map(jnp.zeros_like, params))

  def update_fn(updates, state, params=None):
    del params
    count = state.count + 1
    mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, updates)
    nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state.nu, updates)
    t = count.astype(jnp.float32)
    step_scale = jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    directions = jax.tree.map(lambda m, v: step_scale * m / (jnp.sqrt(v) + eps),
                              mu, nu)
    return directions, TFAdamState(count=count, mu=mu, nu=nu)

  return optax.GradientTransformation(init_fn, update_fn)


@functools.lru_cache(maxsize=None)
def tf_adam_with_value_clipping(learning_rate: float, clip_value: float
                                ) -> optax.GradientTransformation:
  """The authors' update: clip gradients by value, then TF Adam at a fixed rate.

  (Their code builds a decaying rate but feeds a constant one that overrides it.)
  Cached: the optimizer is a static field of the train state, so a new but equal
  optimizer would change the state's tree structure and force every compiled
  step to be traced and compiled again.
  """
  return optax.chain(optax.clip(clip_value), scale_by_tf_adam(),
                     optax.scale(-learning_rate))
