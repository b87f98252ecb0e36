"""The LSTM cell against a float64 NumPy transcription of TF's LSTMCell."""

import jax
import jax.numpy as jnp
import numpy as np

from sge_jax.models import lstm_cell, run_lstm_layer
from sge_jax.models.lstm import StackedLSTMEncoder

# The float64 reference rounds its inputs to float32 for JAX (2^-24 relative)
# and a gate pre-activation sums ~(J + k) = 13 products of magnitude <= ~1, so
# float32 results agree to about 13 * 2^-24 * 2 ~ 2e-6 absolute, whatever the
# CPU's summation order (AVX2 and AVX-512 differ); 1e-5 leaves margin.
FLOAT32_ATOL = 1e-5


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def numpy_tf_lstm_cell(kernel, bias, inputs, h, c):
  """tf.nn.rnn_cell.LSTMCell.call, float64: gates (i, j, f, o), forget bias 1."""
  z = np.concatenate([inputs, h], axis=1) @ kernel + bias
  i, j, f, o = np.split(z, 4, axis=1)
  new_c = c * _sigmoid(f + 1.0) + _sigmoid(i) * np.tanh(j)
  return _sigmoid(o) * np.tanh(new_c), new_c


def test_cell_matches_numpy_float64_reference():
  rng = np.random.default_rng(0)
  batch, inputs_size, hidden = 5, 7, 6
  kernel = rng.uniform(-0.5, 0.5, (inputs_size + hidden, 4 * hidden))
  bias = rng.normal(size=4 * hidden)
  inputs, h, c = (rng.normal(size=(batch, n)) for n in (inputs_size, hidden, hidden))
  want_h, want_c = numpy_tf_lstm_cell(kernel, bias, inputs, h, c)
  got_h, got_c = lstm_cell(*(jnp.asarray(a, jnp.float32)
                             for a in (kernel, bias, inputs)),
                           (jnp.asarray(h, jnp.float32), jnp.asarray(c, jnp.float32)))
  np.testing.assert_allclose(got_h, want_h, rtol=1e-5, atol=FLOAT32_ATOL)
  np.testing.assert_allclose(got_c, want_c, rtol=1e-5, atol=FLOAT32_ATOL)


def test_forget_bias_is_added_inside_the_cell():
  # With all-zero weights, c' = sigmoid(1) * c + sigmoid(0) * tanh(0).
  hidden = 3
  c = jnp.ones((1, hidden))
  _, new_c = lstm_cell(jnp.zeros((2 + hidden, 4 * hidden)), jnp.zeros(4 * hidden),
                       jnp.zeros((1, 2)), (jnp.zeros((1, hidden)), c))
  np.testing.assert_allclose(new_c, _sigmoid(1.0) * np.ones((1, hidden)), rtol=1e-6)


def test_layer_with_hoisted_projection_equals_cell_loop():
  rng = np.random.default_rng(1)
  length, batch, inputs_size, hidden = 5, 3, 4, 6
  kernel = rng.uniform(-0.3, 0.3, (inputs_size + hidden, 4 * hidden))
  bias = rng.normal(size=4 * hidden)
  inputs = rng.normal(size=(length, batch, inputs_size))
  h = c = np.zeros((batch, hidden))
  want = []
  for t in range(length):
    h, c = numpy_tf_lstm_cell(kernel, bias, inputs[t], h, c)
    want.append(h)
  zeros = jnp.zeros((batch, hidden))
  for state in ((zeros, zeros), None):       # explicit zeros, or the peeled start
    for unroll in (True, 1):
      outputs, (final_h, final_c) = run_lstm_layer(
          jnp.asarray(kernel, jnp.float32), jnp.asarray(bias, jnp.float32),
          jnp.asarray(inputs, jnp.float32), state, unroll)
      np.testing.assert_allclose(outputs, np.stack(want), rtol=1e-5, atol=FLOAT32_ATOL)
      np.testing.assert_allclose(final_h, h, rtol=1e-5, atol=FLOAT32_ATOL)
      np.testing.assert_allclose(final_c, c, rtol=1e-5, atol=FLOAT32_ATOL)


def test_encoder_initialisation_follows_the_authors():
  encoder = StackedLSTMEncoder(hidden=8, num_layers=3)
  params = encoder.init(jax.random.key(0), jnp.zeros((4, 2, 5)))['params']
  assert sorted(params) == ['layer_0', 'layer_1', 'layer_2']
  assert params['layer_0']['kernel'].shape == (5 + 8, 32)
  assert params['layer_1']['kernel'].shape == (16, 32)
  for layer in params.values():
    assert float(jnp.max(jnp.abs(layer['kernel']))) <= 0.1
    assert float(jnp.max(jnp.abs(layer['kernel']))) > 0.09
    np.testing.assert_array_equal(layer['bias'], 0.0)
