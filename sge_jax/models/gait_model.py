"""The per-axis gait-encoding model: encoder, attention decoder, projector (docs/method.md §3)."""

from __future__ import annotations

from typing import Optional, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from sge_jax.config.fields import DECODER_INPUT_MODES
from sge_jax.models.decoder import AttentionDecoder
from sge_jax.models.lstm import StackedLSTMEncoder
from sge_jax.models.projector import ContrastiveProjector

def shift_right(targets: jax.Array) -> jax.Array:
  """Teacher-forcing inputs (0, y_1 ... y_{f-1}) from targets [B, f, J]."""
  return jnp.pad(targets[:, :-1], ((0, 0), (1, 0), (0, 0)))


class GaitEncodingModel(nn.Module):
  """One axis model. Three of them (x, y, z) are trained side by side.

  Attributes:
    hidden: k, the size of every LSTM, the attention and the projector.
    num_joints: J, values per frame of this axis' series.
    num_layers: LSTM layers of the encoder and of the decoder.
    decoder_input: 'zeros' (the authors' effective behaviour: their training
      helper reads only the zero block their shift-right code prepends) or
      'shifted_target' (teacher forcing).
    unroll: ``lax.scan`` unroll of the time loops. 1 (a rolled loop) measured
      fastest on CPU at B=128, f=6, k=256: 121 ms per model step against 136 (2),
      140 (3) and 216 (fully unrolled), and it compiles 2-3x faster.
  """
  hidden: int = 256
  num_joints: int = 20
  num_layers: int = 2
  decoder_input: str = 'zeros'
  unroll: Union[int, bool] = 1

  @nn.compact
  def __call__(self, inputs: jax.Array, targets: Optional[jax.Array] = None,
               project: bool = True) -> dict[str, jax.Array]:
    """Runs the model on a batch of one axis' series.

    Args:
      inputs: [B, f, J] encoder inputs.
      targets: [B, f, J] pretext targets; needed only for
        ``decoder_input='shifted_target'``.
      project: also apply the contrastive projector to the CAGEs.

    Returns:
      A dict with ``reconstruction`` [B, f, J], ``alignments`` A [B, f_dec, f_enc],
      ``cages`` A.H [B, f, k] (the context vectors), ``memory`` H [B, f, k] and,
      when ``project``, ``projections`` [B, k].
    """
    if self.decoder_input not in DECODER_INPUT_MODES:
      raise ValueError(f'decoder_input must be one of {DECODER_INPUT_MODES}, '
                       f'got {self.decoder_input!r}')
    if inputs.shape[-1] != self.num_joints:
      raise ValueError(f'inputs have J={inputs.shape[-1]} joints, the model '
                       f'was built for num_joints={self.num_joints}')
    feed_inputs = self.decoder_input == 'shifted_target'
    if feed_inputs and targets is None:
      raise ValueError("decoder_input='shifted_target' needs the targets")

    batch, length, _ = inputs.shape
    memory, final_states = StackedLSTMEncoder(
        self.hidden, self.num_layers, self.unroll, name='encoder')(
            jnp.swapaxes(inputs, 0, 1))
    decoder_inputs = (jnp.swapaxes(shift_right(targets), 0, 1)
                      if feed_inputs else None)
    decoded = AttentionDecoder(
        self.hidden, self.num_joints, self.num_layers, feed_inputs,
        self.unroll, name='decoder')(memory, final_states, decoder_inputs,
                                     length)
    outputs = {
        'reconstruction': jnp.swapaxes(decoded['reconstruction'], 0, 1),
        'alignments': jnp.swapaxes(decoded['alignments'], 0, 1),
        'cages': jnp.swapaxes(decoded['contexts'], 0, 1),
        'memory': jnp.swapaxes(memory, 0, 1),
    }
    if project:
      outputs['projections'] = ContrastiveProjector(
          self.hidden, name='projector')(
              outputs['cages'].reshape(batch, length * self.hidden))
    return outputs
