"""Attention decoder in the form of TF1 ``AttentionWrapper(LuongAttention)`` (docs/method.md §3).

Per decoder step t, with the encoder outputs H [f_enc, B, k] as memory:

    keys      = H W_mem                          (memory layer, no bias; once)
    cell in   = [x_t; a_{t-1}]                   (input feeding, a_0 = 0)
    q         = top-layer output of the stacked LSTM
    alpha_t   = softmax_s(q . keys_s)            (Luong multiplicative score)
    context_t = sum_s alpha_t[s] H_s
    a_t       = [q; context_t] W_att             (no bias, no activation)
    output_t  = a_t W_out + b_out                (the predicted frame, [J])

The initial LSTM state is the encoder's final state. Work that is provably zero
is skipped: with ``feed_inputs=False`` (the default ``zeros`` decoder-input mode)
x_t is identically zero, so the rows of the layer-0 kernel that multiply it are
left out (their product and gradient are exactly zero; the rows still exist and
are weight-decayed, so the parameter tree is the same in both modes); and the
first step, where a_0 = 0, is peeled off the loop and multiplies only the h rows.
"""

from __future__ import annotations

from typing import Optional, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from sge_jax.models.lstm import LSTMState, LSTMWeights, lstm_update

# TF layers default to glorot_uniform kernels; the output layer of the authors'
# decoder uses truncated_normal(0, 0.1).
_GLOROT_UNIFORM = nn.initializers.glorot_uniform()
_OUTPUT_INIT = nn.initializers.truncated_normal(stddev=0.1)


class AttentionDecoder(nn.Module):
  """Stacked TF LSTMCells wrapped in Luong attention with input feeding.

  Attributes:
    hidden: k (LSTM size, attention size and memory depth).
    num_joints: J, size of each predicted frame.
    num_layers: stacked LSTM layers.
    feed_inputs: whether decoder inputs x_t are non-zero (teacher forcing).
    unroll: ``lax.scan`` unroll of the time loop.
  """
  hidden: int
  num_joints: int
  num_layers: int = 2
  feed_inputs: bool = False
  unroll: Union[int, bool] = 1

  @nn.compact
  def __call__(self, memory: jax.Array, initial_state: tuple[LSTMState, ...],
               decoder_inputs: Optional[jax.Array], num_steps: int
               ) -> dict[str, jax.Array]:
    """Decodes ``num_steps`` frames.

    Args:
      memory: H [f_enc, B, k], time-major encoder outputs.
      initial_state: one (h, c) per layer, each [B, k].
      decoder_inputs: [f_dec, B, J] time-major, or None when ``feed_inputs`` is
        False (all-zero inputs).
      num_steps: f_dec.

    Returns:
      ``reconstruction`` [f_dec, B, J], ``alignments`` [f_dec, B, f_enc] and
      ``contexts`` [f_dec, B, k] (the rows of A.H), all time-major.
    """
    k, num_joints = self.hidden, self.num_joints
    layers = [LSTMWeights(k, (num_joints + k) if layer == 0 else k,
                          name=f'layer_{layer}')()
              for layer in range(self.num_layers)]
    memory_kernel = self.param('memory', _GLOROT_UNIFORM, (k, k))
    attention_kernel = self.param('attention', _GLOROT_UNIFORM, (2 * k, k))
    output_layer = nn.Dense(num_joints, kernel_init=_OUTPUT_INIT, name='output')

    batch = memory.shape[1]
    keys = memory @ memory_kernel                               # [f_enc, B, k]
    memory_bm = jnp.swapaxes(memory, 0, 1)                      # [B, f_enc, k]
    keys_bm = jnp.swapaxes(keys, 0, 1)

    kernel_0, bias_0 = layers[0]
    feedback_kernel_0 = kernel_0[num_joints:]                   # rows [a; h]
    if self.feed_inputs:
      if decoder_inputs is None:
        raise ValueError('feed_inputs=True needs decoder_inputs [f, B, J]')
      input_projection = decoder_inputs @ kernel_0[:num_joints]
    else:
      input_projection = None

    def step(carry, projected_input, first_step=False):
      states, previous_attention = carry
      h, c = states[0]
      if first_step:     # a_0 = 0: only the h rows of the kernel contribute
        gates = h @ feedback_kernel_0[k:] + bias_0
      else:
        gates = jnp.concatenate([previous_attention, h],
                                axis=-1) @ feedback_kernel_0 + bias_0
      if projected_input is not None:
        gates = gates + projected_input
      new_states = [lstm_update(gates, c)]
      for (kernel, bias), (h, c) in zip(layers[1:], states[1:]):
        gates = jnp.concatenate([new_states[-1][0], h], axis=-1) @ kernel + bias
        new_states.append(lstm_update(gates, c))
      query = new_states[-1][0]                                 # [B, k]
      scores = jnp.einsum('bk,bsk->bs', query, keys_bm)
      alignment = jax.nn.softmax(scores, axis=-1)               # [B, f_enc]
      context = jnp.einsum('bs,bsk->bk', alignment, memory_bm)
      attention = jnp.concatenate([query, context], axis=-1) @ attention_kernel
      return (tuple(new_states), attention), (attention, alignment, context)

    initial_attention = jnp.zeros((batch, k), memory.dtype)
    first_input = None if input_projection is None else input_projection[0]
    rest_inputs = (None if input_projection is None else input_projection[1:])
    carry, first_outputs = step((tuple(initial_state), initial_attention),
                                first_input, first_step=True)
    _, rest_outputs = jax.lax.scan(step, carry, rest_inputs,
                                   length=num_steps - 1, unroll=self.unroll)
    attentions, alignments, contexts = (
        jnp.concatenate([first[None], rest], axis=0)
        for first, rest in zip(first_outputs, rest_outputs))
    return {
        'reconstruction': output_layer(attentions),
        'alignments': alignments,
        'contexts': contexts,
    }
