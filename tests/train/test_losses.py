"""Loss terms against hand values and slow reference loops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sge_jax.train import losses


def test_locality_mask_values_for_reversed_targets():
  mask = losses.locality_mask(6, reversed_target=True)
  # sigma = f / 2 = 3; M = exp(-d^2 / 18) with d = |s - (5 - t)|.
  expected_first_row = np.exp(-np.array([5, 4, 3, 2, 1, 0]) ** 2 / 18.0)
  np.testing.assert_allclose(mask[0], expected_first_row, rtol=1e-6)
  np.testing.assert_array_equal(mask[np.arange(6), 5 - np.arange(6)], 1.0)
  assert mask[0, 0] == pytest.approx(0.2493522, abs=1e-7)
  np.testing.assert_allclose(mask, mask[::-1, ::-1], rtol=1e-7)


def test_locality_mask_for_forward_targets_peaks_on_the_diagonal():
  mask = losses.locality_mask(4, reversed_target=False)
  np.testing.assert_array_equal(np.diag(mask), 1.0)
  assert mask[0, 3] == pytest.approx(np.exp(-9 / 8.0))


def test_locality_attention_loss_by_hand():
  mask = losses.locality_mask(2, reversed_target=True)   # [[e^-1/2, 1], [1, e^-1/2]]
  alignments = jnp.array([[[1.0, 0.0], [0.5, 0.5]]])
  off = 1.0 - np.exp(-0.5)
  expected = 0.5 * ((1.0 * off) ** 2 + 0.0 + 0.0 + (0.5 * off) ** 2)
  assert float(losses.locality_attention_loss(alignments, mask)) == pytest.approx(
      expected, rel=1e-6)


def test_reconstruction_loss_is_a_half_sum_of_squares():
  predictions = jnp.arange(12.0).reshape(1, 3, 4)
  assert float(losses.reconstruction_loss(predictions, predictions + 2.0)) == 0.5 * 12 * 4


def slow_neighbour_nt_xent(v, temperature):
  """The authors' per-row loop, float64."""
  v = np.asarray(v, np.float64)
  n = v.shape[0] - 1
  z = np.concatenate([v[1:], v[:-1]])
  norms = np.linalg.norm(z, axis=1)
  total = 0.0
  for i in range(2 * n):
    sims = [z[i] @ z[j] / (norms[i] * norms[j]) / temperature for j in range(2 * n)]
    positive = (i + n) % (2 * n)
    denominator = sum(np.exp(s) for j, s in enumerate(sims) if j != i)
    total += -np.log(np.exp(sims[positive]) / denominator)
  return total / (2 * n)


@pytest.mark.parametrize('batch,temperature', [(2, 0.1), (7, 0.5), (16, 0.15)])
@pytest.mark.slow
def test_contrastive_loss_matches_slow_loop(batch, temperature):
  v = np.random.default_rng(batch).normal(size=(batch, 5)).astype(np.float32)
  got = float(losses.neighbour_contrastive_loss(jnp.asarray(v), temperature))
  assert got == pytest.approx(slow_neighbour_nt_xent(v, temperature), rel=1e-5)


@pytest.mark.slow
def test_contrastive_loss_prefers_similar_neighbours():
  smooth = jnp.cumsum(jnp.ones((8, 4)) * 0.01, axis=0) + jnp.array([1.0, 0, 0, 0])
  rough = jax.random.normal(jax.random.key(0), (8, 4))
  assert (float(losses.neighbour_contrastive_loss(smooth, 0.1))
          < float(losses.neighbour_contrastive_loss(rough, 0.1)))


@pytest.mark.slow
def test_contrastive_loss_is_finite_for_small_temperature():
  v = jax.random.normal(jax.random.key(1), (32, 16)) * 1e3
  value, grad = jax.value_and_grad(losses.neighbour_contrastive_loss)(v, 0.01)
  assert np.isfinite(float(value))
  assert np.all(np.isfinite(grad))


def test_weight_decay_covers_every_array_including_biases():
  params = {'layer': {'kernel': jnp.ones((2, 3)), 'bias': jnp.full((3,), 2.0)}}
  # 0.02 * 0.5 * (6 * 1 + 3 * 4)
  assert float(losses.weight_decay_loss(params, 0.02)) == pytest.approx(0.18)


def test_contrastive_loss_is_finite_for_an_all_zero_projection():
  # A projection whose ReLU units are all off is exactly zero: cosine 0/0.
  v = jnp.asarray(np.random.default_rng(0).normal(size=(6, 4)), jnp.float32)
  v = v.at[2].set(0.0)
  value, grad = jax.value_and_grad(losses.neighbour_contrastive_loss)(v, 0.1)
  assert np.isfinite(float(value)) and np.isfinite(np.asarray(grad)).all()

