"""Shapes and semantics of the gait-encoding model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sge_jax.models import GaitEncodingModel, shift_right
from tests.models.test_lstm import numpy_tf_lstm_cell


def _softmax(x):
  e = np.exp(x - x.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


def numpy_forward(params, inputs, decoder_inputs):
  """float64 transcription of docs/method.md §3 (encoder, attention decoder) per time step."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  batch, length, _ = inputs.shape
  enc_layers = [p['encoder'][name] for name in sorted(p['encoder'])]
  dec_layers = [p['decoder'][name] for name in sorted(p['decoder'])
                if name.startswith('layer_')]
  hidden = p['decoder']['memory'].shape[0]
  states = [(np.zeros((batch, hidden)), np.zeros((batch, hidden)))
            for _ in enc_layers]
  memory = []
  for t in range(length):
    layer_input = inputs[:, t]
    for i, layer in enumerate(enc_layers):
      states[i] = numpy_tf_lstm_cell(layer['kernel'], layer['bias'], layer_input,
                                     *states[i])
      layer_input = states[i][0]
    memory.append(layer_input)
  memory = np.stack(memory, 1)                                  # [B, f, k]
  keys = memory @ p['decoder']['memory']
  attention = np.zeros((batch, hidden))
  outputs, alignments, contexts = [], [], []
  for t in range(length):
    layer_input = np.concatenate([decoder_inputs[:, t], attention], axis=1)
    for i, layer in enumerate(dec_layers):
      states[i] = numpy_tf_lstm_cell(layer['kernel'], layer['bias'], layer_input,
                                     *states[i])
      layer_input = states[i][0]
    alignment = _softmax(np.einsum('bk,bsk->bs', layer_input, keys))
    context = np.einsum('bs,bsk->bk', alignment, memory)
    attention = np.concatenate([layer_input, context], 1) @ p['decoder']['attention']
    outputs.append(attention @ p['decoder']['output']['kernel']
                   + p['decoder']['output']['bias'])
    alignments.append(alignment)
    contexts.append(context)
  return np.stack(outputs, 1), np.stack(alignments, 1), np.stack(contexts, 1), memory


@pytest.mark.parametrize('decoder_input,num_layers', [('zeros', 2),
                                                      ('shifted_target', 3)])
@pytest.mark.slow
def test_forward_matches_float64_transcription(decoder_input, num_layers):
  batch, length, num_joints, hidden = 3, 5, 7, 8
  model = GaitEncodingModel(hidden=hidden, num_joints=num_joints,
                            num_layers=num_layers, decoder_input=decoder_input)
  rng = np.random.default_rng(0)
  inputs = rng.normal(size=(batch, length, num_joints)).astype(np.float32)
  targets = inputs[:, ::-1].copy()
  params = jax.jit(model.init)(jax.random.key(1), inputs, targets)['params']
  out = jax.jit(model.apply)({'params': params}, inputs, targets)
  decoder_inputs = (np.asarray(shift_right(targets)) if decoder_input != 'zeros'
                    else np.zeros_like(inputs))
  want = numpy_forward(params, inputs.astype(np.float64), decoder_inputs)
  for name, expected in zip(('reconstruction', 'alignments', 'cages', 'memory'),
                            want):
    np.testing.assert_allclose(out[name], expected, rtol=2e-4, atol=2e-5,
                               err_msg=name)


def test_shapes_come_from_the_inputs_and_config():
  model = GaitEncodingModel(hidden=32, num_joints=18, num_layers=2)
  inputs = jnp.ones((4, 10, 18))
  variables = jax.jit(model.init)(jax.random.key(0), inputs)
  out = jax.jit(model.apply)(variables, inputs)
  assert out['reconstruction'].shape == (4, 10, 18)
  assert out['alignments'].shape == (4, 10, 10)
  assert out['cages'].shape == (4, 10, 32)
  assert out['memory'].shape == (4, 10, 32)
  assert out['projections'].shape == (4, 32)
  assert variables['params']['projector']['hidden']['kernel'].shape == (320, 32)
  assert variables['params']['decoder']['layer_0']['kernel'].shape == (18 + 64, 128)


def test_alignments_are_distributions_and_cages_are_a_times_h():
  model = GaitEncodingModel(hidden=16, num_joints=6)
  inputs = jax.random.normal(jax.random.key(2), (5, 6, 6))
  out = jax.jit(model.apply)(jax.jit(model.init)(jax.random.key(0), inputs), inputs)
  np.testing.assert_allclose(out['alignments'].sum(-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(
      out['cages'], jnp.einsum('bts,bsk->btk', out['alignments'], out['memory']),
      rtol=1e-5, atol=1e-6)


def test_zero_input_mode_equals_teacher_forcing_on_zero_targets():
  # The default mode skips the layer-0 input rows; feeding explicit zeros through
  # them must give the same outputs.
  inputs = jax.random.normal(jax.random.key(3), (4, 6, 5))
  zeros_model = GaitEncodingModel(hidden=16, num_joints=5)
  forcing_model = GaitEncodingModel(hidden=16, num_joints=5,
                                    decoder_input='shifted_target')
  variables = jax.jit(zeros_model.init)(jax.random.key(0), inputs)
  a = jax.jit(zeros_model.apply)(variables, inputs)
  b = jax.jit(forcing_model.apply)(variables, inputs, jnp.zeros_like(inputs))
  # Two float32 code paths (rows skipped vs zeros multiplied): products over
  # ~k + J = 21 terms, compounded over f = 6 recurrent steps, agree to a few
  # 1e-6 of the O(1) outputs on any CPU.
  for name in a:
    np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-5)


def test_projector_init_is_standard_normal():
  model = GaitEncodingModel(hidden=64, num_joints=4)
  params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((2, 6, 4)))['params']
  kernel = np.asarray(params['projector']['hidden']['kernel'])
  assert abs(kernel.std() - 1.0) < 0.05
  np.testing.assert_array_equal(params['projector']['hidden']['bias'], 0.0)


def test_bad_inputs_raise_clear_errors():
  model = GaitEncodingModel(hidden=8, num_joints=4)
  with pytest.raises(ValueError, match='J=5'):
    model.init(jax.random.key(0), jnp.zeros((2, 6, 5)))
  with pytest.raises(ValueError, match='decoder_input'):
    GaitEncodingModel(hidden=8, num_joints=4, decoder_input='teacher').init(
        jax.random.key(0), jnp.zeros((2, 6, 4)))
  with pytest.raises(ValueError, match='needs the targets'):
    GaitEncodingModel(hidden=8, num_joints=4, decoder_input='shifted_target').init(
        jax.random.key(0), jnp.zeros((2, 6, 4)))
