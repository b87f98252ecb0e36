"""The compiled step: stacked axes, two devices, no recompilation, TF Adam.

Equivalence tests compare gradients, not Adam updates: with plain gradient
descent at rate 1 the parameter change IS the gradient, whereas Adam's first
step moves every parameter by about +/-lr whatever its gradient's size, so a
float32 rounding difference in a near-zero gradient (AVX2 vs AVX-512 sum order)
can flip a whole step. Tolerances follow from float32: a gradient is a sum of
about B*f*k products, each rounded at 2^-24 relative, so two summation orders
agree to ~sqrt(terms) * 2^-24 of the largest gradient; 1e-4 of it is a wide
margin that a wrong model pairing (an O(1) difference) still fails.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sge_jax.models import GaitEncodingModel
from sge_jax.train import optim, pretext
from sge_jax.train.devices import replicate, resident_batches, unreplicate
from sge_jax.train.loop import make_train_calls
from sge_jax.train.state import TrainState, create_train_state
from sge_jax.train.step import LossSettings, StepDefinition

LENGTH, JOINTS, HIDDEN, BATCH = 4, 5, 16, 8
# Gradients agree to this fraction of the largest gradient of their array.
GRADIENT_RTOL = 1e-4
# Losses are sums of positive terms: relative float32 error of a long sum.
LOSS_RTOL = 1e-5


def _setup(pretext_name='rev_rec', batch=BATCH, seed=0, tx=None):
  tasks = pretext.pretext_tasks(pretext_name, 'LA')
  model_tasks = pretext.per_model_tasks(tasks)
  model = GaitEncodingModel(hidden=HIDDEN, num_joints=JOINTS)
  definition = StepDefinition(model, model_tasks, LossSettings(temperature=0.1))
  tx = tx or optax.sgd(1.0)
  state = create_train_state(model, tx, jax.random.key(seed), len(model_tasks),
                             LENGTH, JOINTS)
  sequences = np.random.default_rng(seed).normal(
      size=(batch, LENGTH, JOINTS, 3)).astype(np.float32)
  data = pretext.stacked_pretext_data(sequences, tasks, seed, 'train')
  return definition, state, data


def _run(definition, state, batch, num_devices, steps=1):
  """``steps`` training steps on one global batch, through the train loop's
  compiled call; returns the state and the last step's metrics [M]."""
  devices = tuple(jax.devices()[:num_devices])
  resident, num_batches = resident_batches(batch, batch['inputs'].shape[1],
                                           devices)
  calls = make_train_calls(definition, devices, steps, num_batches, False)
  active = np.ones(len(definition.model_tasks), bool)
  state, metrics = calls(replicate(state, devices), resident, active,
                         np.int32(steps))
  return unreplicate(state), {name: np.asarray(values[0])[-1]
                              for name, values in metrics.items()}


def _gradients(before, after):
  """The gradient of a plain gradient-descent step at rate 1."""
  return jax.tree.map(lambda b, a: np.asarray(b) - np.asarray(a),
                      before.params, after.params)


def _assert_gradients_close(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    scale = max(float(np.max(np.abs(y))), 1e-30)
    assert float(np.max(np.abs(x - y))) <= GRADIENT_RTOL * scale


@pytest.mark.slow
def test_stacked_step_equals_three_independent_steps():
  definition, state, data = _setup()
  stacked_state, stacked_metrics = _run(definition, state, data, 1)
  stacked_gradients = _gradients(state, stacked_state)
  for m, task in enumerate(definition.model_tasks):
    single_params = jax.tree.map(lambda p: p[m:m + 1], state.params)
    single = TrainState(step=state.step, params=single_params,
                        opt_state=state.tx.init(single_params), rng=state.rng,
                        tx=state.tx)
    single_definition = StepDefinition(definition.model, (task,), definition.loss)
    single_batch = {name: array[m:m + 1] for name, array in data.items()}
    single_state, single_metrics = _run(single_definition, single, single_batch, 1)
    _assert_gradients_close(
        _gradients(single, single_state),
        jax.tree.map(lambda g: g[m:m + 1], stacked_gradients))
    for name, value in single_metrics.items():
      np.testing.assert_allclose(value[0], stacked_metrics[name][m],
                                 rtol=LOSS_RTOL)


@pytest.mark.parametrize('pretext_name', ['rev_rec', 'rev_rec_plus'])
@pytest.mark.slow
def test_two_devices_match_one_device_on_the_same_global_batch(pretext_name):
  assert len(jax.devices()) >= 2, 'conftest should provide 2 host devices'
  definition, state, data = _setup(pretext_name)
  one_state, one_metrics = _run(definition, state, data, 1)
  two_state, two_metrics = _run(definition, state, data, 2)
  for name in one_metrics:
    np.testing.assert_allclose(two_metrics[name], one_metrics[name],
                               rtol=LOSS_RTOL, err_msg=name)
  _assert_gradients_close(_gradients(state, two_state),
                          _gradients(state, one_state))
  assert int(two_state.step) == 1


def test_contrastive_loss_sees_neighbours_across_device_shards():
  # Swapping the two shards changes which sequences are neighbours at the shard
  # boundary, so the contrastive loss must change; the per-sequence sums do not.
  definition, state, data = _setup()
  _, metrics = _run(definition, state, data, 2)
  half = BATCH // 2
  swapped = {name: np.concatenate([a[:, half:], a[:, :half]], axis=1)
             for name, a in data.items()}
  _, swapped_metrics = _run(definition, state, swapped, 2)
  np.testing.assert_allclose(swapped_metrics['reconstruction'],
                             metrics['reconstruction'], rtol=LOSS_RTOL)
  assert not np.allclose(swapped_metrics['contrastive'], metrics['contrastive'],
                         rtol=1e-4)


@pytest.mark.slow
def test_no_recompilation_across_calls_and_finite_gradients(compile_counter):
  definition, state, data = _setup(
      tx=optim.tf_adam_with_value_clipping(5e-4, 5.0))
  devices = tuple(jax.devices()[:1])
  calls = make_train_calls(definition, devices, 1, 1, False)
  active = np.ones(len(definition.model_tasks), bool)
  state = replicate(state, devices)
  resident, _ = resident_batches(data, BATCH, devices)
  state, metrics = calls(state, resident, active, np.int32(1))
  compiles_after_first = compile_counter()
  for shift in range(3):
    shifted = jax.tree.map(lambda a, s=shift: a + 0.1 * (s + 1), data)
    resident, _ = resident_batches(shifted, BATCH, devices)
    state, metrics = calls(state, resident, active, np.int32(1))
  assert compile_counter() == compiles_after_first
  assert int(unreplicate(state).step) == 4
  for value in jax.tree.leaves(metrics):
    assert np.all(np.isfinite(value))
  for leaf in jax.tree.leaves(unreplicate(state).params):
    assert np.all(np.isfinite(leaf))


def test_tf_adam_matches_the_tf_update_rule():
  tx = optim.tf_adam_with_value_clipping(0.01, 5.0)
  params = {'w': jnp.array([1.0, -2.0, 3.0])}
  grads = [{'w': jnp.array([0.5, -7.0, 1e-3])}, {'w': jnp.array([0.2, 0.1, 9.0])}]
  opt_state = tx.init(params)
  m = v = np.zeros(3)
  expected = np.array([1.0, -2.0, 3.0])
  for t, g in enumerate(grads, start=1):
    updates, opt_state = tx.update(g, opt_state, params)
    params = optax.apply_updates(params, updates)
    clipped = np.clip(np.asarray(g['w'], np.float64), -5, 5)
    m = 0.9 * m + 0.1 * clipped
    v = 0.999 * v + 0.001 * clipped ** 2
    lr_t = 0.01 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
    expected = expected - lr_t * m / (np.sqrt(v) + 1e-8)
  np.testing.assert_allclose(params['w'], expected, rtol=1e-6)


def test_resident_batches_keep_contiguous_shards():
  data = {'inputs': np.arange(2 * 16).reshape(2, 16, 1, 1)}
  devices = tuple(jax.devices()[:2])
  resident, num_batches = resident_batches(data, 8, devices)
  shards = np.asarray(resident['inputs'])     # [n_dev, M, batches, B/n_dev, ...]
  assert num_batches == 2 and shards.shape == (2, 2, 2, 4, 1, 1)
  np.testing.assert_array_equal(shards[1, 0, 0, :, 0, 0], [4, 5, 6, 7])
  np.testing.assert_array_equal(shards[0, 1, 1, :, 0, 0], [24, 25, 26, 27])
