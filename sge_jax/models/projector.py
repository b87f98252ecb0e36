"""Projector g of the locality-aware contrastive loss (docs/method.md §5.3)."""

from __future__ import annotations

import flax.linen as nn
import jax

# The authors initialise both layers with tf.random_normal (std 1) and zero biases.
_PROJECTOR_INIT = nn.initializers.normal(stddev=1.0)


class ContrastiveProjector(nn.Module):
  """g: Dense(k) -> ReLU -> Dense(k).

  Attributes:
    hidden: k.
  """
  hidden: int

  @nn.compact
  def __call__(self, cage_vectors: jax.Array) -> jax.Array:
    """Projects flattened CAGEs.

    Args:
      cage_vectors: [B, f*k], the row-major flattening of A.H per sequence.

    Returns:
      [B, k] projections v.
    """
    hidden = nn.Dense(self.hidden, kernel_init=_PROJECTOR_INIT, name='hidden')
    output = nn.Dense(self.hidden, kernel_init=_PROJECTOR_INIT, name='output')
    return output(nn.relu(hidden(cage_vectors)))
