"""The recognition network (RN) on CAGEs (docs/method.md §7)."""

import flax.linen as nn
import jax

# The authors initialise both RN layers with tf.random_normal (std 1).
_RN_KERNEL_INIT = nn.initializers.normal(stddev=1.0)


class RecognitionNetwork(nn.Module):
  """Dense(hidden) -> ReLU -> Dense(num_classes).

  Attributes:
    hidden: width of the hidden layer (256 in the paper).
    num_classes: C, the number of training people.
  """
  hidden: int
  num_classes: int

  @nn.compact
  def __call__(self, samples: jax.Array) -> jax.Array:
    """Logits [..., C] of samples [..., D_in]."""
    hidden = nn.Dense(self.hidden, kernel_init=_RN_KERNEL_INIT, name='hidden')
    output = nn.Dense(self.num_classes, kernel_init=_RN_KERNEL_INIT,
                      name='output')
    return output(nn.relu(hidden(samples)))
