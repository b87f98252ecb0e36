"""Loss terms of one axis model (docs/method.md §5). Each is a pure function of arrays.

All terms are *sums* over the batch as in the authors' code (not means): their
relative scale is part of the method.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def reconstruction_loss(predictions: jax.Array, targets: jax.Array) -> jax.Array:
  """0.5 * sum((y_hat - y)^2) over batch, frames and joints.

  Args:
    predictions: [B, f, J].
    targets: [B, f, J].

  Returns:
    Scalar.
  """
  return 0.5 * jnp.sum(jnp.square(predictions - targets))


def locality_mask(length: int, reversed_target: bool) -> np.ndarray:
  """Locality mask M [f_dec, f_enc] of the LA attention loss.

  M[t, s] = exp(-d^2 / (2 (f/2)^2)) with d = |s - p(t)|, p(t) = f - 1 - t when the
  target is the input reversed in time and p(t) = t otherwise, so M = 1 on the
  encoder step aligned with each decoder step and decays with distance.

  Args:
    length: f.
    reversed_target: whether decoder step t reconstructs input frame f - 1 - t.

  Returns:
    [f, f] float32 (computed in float64, as the reference does).
  """
  decoder_step = np.arange(length, dtype=np.float64)[:, None]
  encoder_step = np.arange(length, dtype=np.float64)[None, :]
  aligned = (length - 1) - decoder_step if reversed_target else decoder_step
  sigma = length / 2.0
  return np.exp(-np.square(encoder_step - aligned)
                / (2.0 * sigma ** 2)).astype(np.float32)


def locality_attention_loss(alignments: jax.Array, mask: jax.Array) -> jax.Array:
  """LA loss 0.5 * sum((A * (1 - M))^2): attention mass far from the aligned step.

  Args:
    alignments: A [B, f_dec, f_enc], rows sum to 1.
    mask: M [f_dec, f_enc] from ``locality_mask``.

  Returns:
    Scalar.
  """
  return 0.5 * jnp.sum(jnp.square(alignments * (1.0 - mask)))


_NORM_FLOOR = 1e-12


def neighbour_contrastive_loss(projections: jax.Array,
                               temperature: float) -> jax.Array:
  """Locality-aware contrastive loss (NT-Xent with batch-neighbour positives).

  With v [B, k] the projections of B consecutive sequences, z = [v[1:]; v[:-1]]
  (2N rows, N = B - 1), so row i < N is v[i+1] and row i + N is v[i]: every row's
  positive is its stored-order neighbour at (i + N) mod 2N. With cosine
  similarities s = cos(z_i, z_j) / tau,

      loss = mean_i [ -s[i, pos(i)] + log sum_{j != i} exp(s[i, j]) ],

  which equals the authors' -log(exp(s_pos) / (sum_j exp(s_ij) - exp(s_ii))).
  Vectorised; the log-sum-exp form avoids overflow for small tau. Rows are
  normalised as ``tf.nn.l2_normalize`` does (squared norm floored at 1e-12).

  Args:
    projections: v [B, k] in stored order, B >= 2.
    temperature: tau > 0.

  Returns:
    Scalar.
  """
  num_pairs = projections.shape[0] - 1
  z = jnp.concatenate([projections[1:], projections[:-1]], axis=0)
  # The floor is tf.nn.l2_normalize's: an all-zero projection (every ReLU unit
  # off) has similarity 0 to everything instead of 0/0 = NaN.
  z = z * jax.lax.rsqrt(jnp.maximum(
      jnp.sum(jnp.square(z), axis=-1, keepdims=True), _NORM_FLOOR))
  similarities = (z @ z.T) / temperature                        # [2N, 2N]
  positives = jnp.sum(z * jnp.roll(z, num_pairs, axis=0), axis=-1) / temperature
  others = jnp.where(jnp.eye(2 * num_pairs, dtype=bool), -jnp.inf, similarities)
  return jnp.mean(jax.nn.logsumexp(others, axis=-1) - positives)


def weight_decay_loss(params, weight: float) -> jax.Array:
  """weight * sum over every array of 0.5 * ||w||^2.

  The authors meant to exclude biases but their name filter never matches, so
  biases are decayed too; this reproduces that.

  Args:
    params: a pytree of arrays.
    weight: lambda (0.02 in the paper).

  Returns:
    Scalar.
  """
  squares = [jnp.sum(jnp.square(w)) for w in jax.tree.leaves(params)]
  return weight * 0.5 * sum(squares)
