"""The compiled step: stacked axes, two devices, no recompilation, TF Adam."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sge_jax import optim, pretext
from sge_jax.models import GaitEncodingModel
from sge_jax.train_state import TrainState, create_train_state
from sge_jax.train_step import (LossSettings, StepDefinition,
                                make_parallel_train_step, replicate, shard_batch,
                                unreplicate)

LENGTH, JOINTS, HIDDEN, BATCH = 4, 5, 16, 8


def _setup(pretext_name='rev_rec', batch=BATCH, seed=0):
  tasks = pretext.pretext_tasks(pretext_name, 'LA')
  model_tasks = pretext.per_model_tasks(tasks)
  model = GaitEncodingModel(hidden=HIDDEN, num_joints=JOINTS)
  definition = StepDefinition(model, model_tasks, LossSettings(temperature=0.1))
  tx = optim.tf_adam_with_value_clipping(5e-4, 5.0)
  state = create_train_state(model, tx, jax.random.key(seed), len(model_tasks),
                             LENGTH, JOINTS)
  sequences = np.random.default_rng(seed).normal(
      size=(batch, LENGTH, JOINTS, 3)).astype(np.float32)
  data = pretext.stacked_pretext_data(sequences, tasks, seed, 'train')
  return definition, state, data


def _run(definition, state, batch, num_devices, steps=1):
  devices = tuple(jax.devices()[:num_devices])
  step = make_parallel_train_step(definition, devices)
  state = replicate(state, devices)
  sharded = shard_batch(batch, num_devices)
  for _ in range(steps):
    state, metrics = step(state, sharded, jax.random.key(7))
  return unreplicate(state), unreplicate(metrics)


def _assert_trees_close(a, b, rtol):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    x, y = np.asarray(x), np.asarray(y)
    scale = max(float(np.max(np.abs(y))), 1e-12)
    assert float(np.max(np.abs(x - y))) / scale <= rtol


def test_stacked_step_equals_three_independent_steps():
  definition, state, data = _setup()
  stacked_state, stacked_metrics = _run(definition, state, data, 1)
  for m, task in enumerate(definition.model_tasks):
    single_params = jax.tree.map(lambda p: p[m:m + 1], state.params)
    single = TrainState(step=state.step, params=single_params,
                        opt_state=state.tx.init(single_params), rng=state.rng,
                        tx=state.tx)
    single_definition = StepDefinition(definition.model, (task,), definition.loss)
    single_batch = {name: array[m:m + 1] for name, array in data.items()}
    single_state, single_metrics = _run(single_definition, single, single_batch, 1)
    _assert_trees_close(single_state.params,
                        jax.tree.map(lambda p: p[m:m + 1], stacked_state.params),
                        rtol=1e-6)
    for name, value in single_metrics.items():
      np.testing.assert_allclose(value[0], stacked_metrics[name][m], rtol=1e-6)


@pytest.mark.parametrize('pretext_name', ['rev_rec', 'rev_rec_plus'])
def test_two_devices_match_one_device_on_the_same_global_batch(pretext_name):
  assert len(jax.devices()) >= 2, 'conftest should provide 2 host devices'
  definition, state, data = _setup(pretext_name)
  one_state, one_metrics = _run(definition, state, data, 1, steps=2)
  two_state, two_metrics = _run(definition, state, data, 2, steps=2)
  for name in one_metrics:
    np.testing.assert_allclose(two_metrics[name], one_metrics[name], rtol=1e-5,
                               err_msg=name)
  _assert_trees_close(two_state.params, one_state.params, rtol=1e-5)
  assert int(two_state.step) == 2


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
                             metrics['reconstruction'], rtol=1e-5)
  assert not np.allclose(swapped_metrics['contrastive'], metrics['contrastive'],
                         rtol=1e-4)


def test_no_recompilation_across_steps_and_finite_gradients(compile_counter):
  definition, state, data = _setup()
  devices = tuple(jax.devices()[:1])
  step = make_parallel_train_step(definition, devices)
  state = replicate(state, devices)
  sharded = shard_batch(data, 1)
  state, metrics = step(state, sharded, jax.random.key(0))
  compiles_after_first = compile_counter()
  for _ in range(3):
    new_data = jax.tree.map(lambda a: a + 0.1, sharded)
    state, metrics = step(state, new_data, jax.random.key(0))
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


def test_shard_batch_keeps_contiguous_shards():
  batch = {'inputs': np.arange(2 * 8).reshape(2, 8, 1, 1)}
  shards = shard_batch(batch, 2)['inputs']
  assert shards.shape == (2, 2, 4, 1, 1)
  np.testing.assert_array_equal(shards[1, 0, :, 0, 0], [4, 5, 6, 7])
  with pytest.raises(ValueError, match='divisible'):
    shard_batch({'inputs': np.zeros((1, 7, 1, 1))}, 2)
