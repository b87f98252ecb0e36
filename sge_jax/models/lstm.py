"""LSTM with the semantics of TF1 ``tf.nn.rnn_cell.LSTMCell`` (docs/method.md §3).

One kernel over ``[input; h]`` plus one bias produce the gates in the order
(i, j, f, o); the forget gate gets +1.0 inside the cell:

    c' = sigmoid(f + 1) * c + sigmoid(i) * tanh(j)
    h' = sigmoid(o) * tanh(c')

Kernels are initialised uniform(-0.1, 0.1), biases 0, as in the authors' code.
The kernel keeps the TF layout ``[input_size + hidden, 4 * hidden]`` so the authors'
variables map onto it one to one; the math below slices it into an input part and a
recurrent part so that the input projection of a whole sequence can be one matmul
outside the time loop.
"""

from __future__ import annotations

from typing import Optional, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

FORGET_BIAS = 1.0
INIT_SCALE = 0.1

LSTMState = tuple[jax.Array, jax.Array]  # (h, c), each [B, k]


def uniform_init(scale: float):
  """uniform(-scale, scale), TF's ``random_uniform_initializer(-scale, scale)``."""
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -scale, scale)
  return init


def lstm_update(gates: jax.Array, c: jax.Array) -> LSTMState:
  """Applies the TF LSTMCell non-linearities.

  Args:
    gates: [B, 4k] pre-activations, (i, j, f, o) along the last axis.
    c: [B, k] previous cell state.

  Returns:
    (h', c'), each [B, k].
  """
  i, j, f, o = jnp.split(gates, 4, axis=-1)
  new_c = jax.nn.sigmoid(f + FORGET_BIAS) * c + jax.nn.sigmoid(i) * jnp.tanh(j)
  new_h = jax.nn.sigmoid(o) * jnp.tanh(new_c)
  return new_h, new_c


def lstm_cell(kernel: jax.Array, bias: jax.Array, inputs: jax.Array,
              state: LSTMState) -> LSTMState:
  """One step of the TF LSTMCell.

  Args:
    kernel: [D + k, 4k], rows for ``inputs`` first, then for ``h``.
    bias: [4k].
    inputs: [B, D].
    state: (h, c), each [B, k].

  Returns:
    (h', c'), each [B, k].
  """
  h, c = state
  gates = jnp.concatenate([inputs, h], axis=-1) @ kernel + bias
  return lstm_update(gates, c)


def run_lstm_layer(kernel: jax.Array, bias: jax.Array, inputs: jax.Array,
                   state: Optional[LSTMState] = None,
                   unroll: Union[int, bool] = 1) -> tuple[jax.Array, LSTMState]:
  """Runs one LSTM layer over a time-major sequence.

  The input projection of all f steps is one [f*B, D] x [D, 4k] matmul; only the
  recurrent [B, k] x [k, 4k] product stays in the time loop. From a zero state
  (``state=None``) the first step's recurrent product is zero and is skipped.

  Args:
    kernel: [D + k, 4k] (TF layout).
    bias: [4k].
    inputs: [f, B, D], time-major.
    state: initial (h, c), each [B, k]; None for zeros.
    unroll: ``lax.scan`` unroll (True = fully unrolled).

  Returns:
    outputs [f, B, k] (h at every step) and the final (h, c).
  """
  input_size = inputs.shape[-1]
  input_projection = inputs @ kernel[:input_size] + bias
  recurrent_kernel = kernel[input_size:]

  def step(carry, projected_input):
    h, c = carry
    new_h, new_c = lstm_update(projected_input + h @ recurrent_kernel, c)
    return (new_h, new_c), new_h

  if state is None:
    first_state = lstm_update(input_projection[0],
                              jnp.zeros(input_projection.shape[1:2]
                                        + recurrent_kernel.shape[:1],
                                        inputs.dtype))
    final_state, rest = jax.lax.scan(step, first_state, input_projection[1:],
                                     unroll=unroll)
    return jnp.concatenate([first_state[0][None], rest]), final_state
  final_state, outputs = jax.lax.scan(step, state, input_projection,
                                      unroll=unroll)
  return outputs, final_state


class LSTMWeights(nn.Module):
  """Declares one TF-layout LSTM layer's parameters and returns them.

  Attributes:
    hidden: k.
    input_size: D, the size of the layer's input (without h).
  """
  hidden: int
  input_size: int

  @nn.compact
  def __call__(self) -> tuple[jax.Array, jax.Array]:
    kernel = self.param('kernel', uniform_init(INIT_SCALE),
                        (self.input_size + self.hidden, 4 * self.hidden))
    bias = self.param('bias', nn.initializers.zeros, (4 * self.hidden,))
    return kernel, bias


class StackedLSTMEncoder(nn.Module):
  """The encoder: ``num_layers`` TF LSTMCells over the f frames, zero initial state.

  Attributes:
    hidden: k.
    num_layers: number of stacked layers.
    unroll: ``lax.scan`` unroll of the time loop.
  """
  hidden: int
  num_layers: int = 2
  unroll: Union[int, bool] = 1

  @nn.compact
  def __call__(self, inputs: jax.Array
               ) -> tuple[jax.Array, tuple[LSTMState, ...]]:
    """Encodes time-major frames.

    Args:
      inputs: [f, B, J].

    Returns:
      H [f, B, k] (top-layer outputs) and the final (h, c) of every layer,
      bottom layer first.
    """
    layer_inputs = inputs
    final_states = []
    for layer in range(self.num_layers):
      kernel, bias = LSTMWeights(self.hidden, layer_inputs.shape[-1],
                                 name=f'layer_{layer}')()
      layer_inputs, final_state = run_lstm_layer(
          kernel, bias, layer_inputs, None, self.unroll)
      final_states.append(final_state)
    return layer_inputs, tuple(final_states)
