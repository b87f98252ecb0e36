"""The seed stack: S seeds as one program on 2 host devices, against each
seed's sequential run with the existing loop.

Tolerances, from float32 (eps = 2^-24 = 6e-8):

* One step's gradient (plain SGD at rate 1, so the parameter change IS the
  gradient): the stack computes seed s's objective on its whole batch on one
  device, the sequential single-device step the same sums in possibly another
  order (batched vs plain products). A gradient entry is a sum of about
  B*f*k products, each rounded at eps relative, so two summation orders agree
  to ~sqrt(terms) * eps ~ 1e-6 of the array's largest gradient; GRADIENT_RTOL
  = 1e-4 is a wide margin that a wrong pairing of seed, batch or model (an
  O(1) difference) still fails (as tests/train/test_step.py).
* A logged loss: a sum of n <= B*f*J*3*M ~ 1e4 positive terms (reconstruction
  dominates); blocked/pairwise summation keeps its relative rounding within
  log2(n) * eps ~ 1e-6, and the parameters it is evaluated at differ (below)
  only where a gradient is at the rounding level, i.e. where the loss does
  not depend on them to first order. LOSS_RTOL = 1e-5 leaves a margin of 10;
  a wrong batch, permutation or seed changes a loss by percents. Every step
  is logged (``log_every_steps`` 1) so each step's batch is checked.
* Parameters after training with the authors' Adam: Adam moves every parameter
  by at most lr * (1 - b1) / sqrt(1 - b2) = 3.2 lr per step whatever its
  gradient's size, so a rounding-level gradient whose sign differs between the
  two runs can move a parameter by up to 2 * 3.2 lr per step in opposite
  directions: the bound is 2 * 3.2 * lr * steps (as tests/train/test_loop.py).
  It separates seeds (their initial parameters differ by O(0.1)); the losses
  check the rest.
"""

import jax
import numpy as np
import optax
import pytest

from sge_jax.errors import NonFiniteLossError
from sge_jax.models import GaitEncodingModel
from sge_jax.train import loop, pretext, seed_loop
from sge_jax.train import seed_stack as stack_lib
from sge_jax.train.checkpoints import CheckpointStore
from sge_jax.train.devices import replicate, resident_batches, unreplicate
from sge_jax.train.early_stopping import EarlyStopping
from sge_jax.train.state import create_train_state
from sge_jax.train.step import LossSettings, StepDefinition
from tests.fixtures.pipeline import tiny_dataset
from tests.fixtures.processes import REPO, run_job
from tests.fixtures.seed_stack import (assert_same_records, metrics_records,
                                      stack_config, train_stack)

GRADIENT_RTOL = 1e-4
LOSS_RTOL = 1e-5
TWO = tuple(jax.devices()[:2])


# ----------------------------------------------------------------- layout


@pytest.mark.parametrize('num_seeds, per_device, slots', [
    (2, 1, [0, 1]), (4, 2, [0, 1, 2, 3]), (3, 2, [0, 1, 2, 2]),
    (1, 1, [0, 0])])
def test_layout_pads_the_seed_axis_with_the_last_seed(num_seeds, per_device,
                                                      slots):
  layout = stack_lib.seed_layout(range(10, 10 + num_seeds), 2)
  assert layout.per_device == per_device
  assert layout.slot_seed_index.tolist() == slots


def test_placed_stack_comes_back_without_its_padding():
  layout = stack_lib.seed_layout([5, 6, 7], 2)
  tree = {'a': np.arange(3 * 2, dtype=np.float32).reshape(3, 2),
          'key': jax.random.split(jax.random.key(1), 3)}
  placed = stack_lib.place_stack(tree, layout, TWO)
  # Device 1 holds seed 7 and its padding copy.
  np.testing.assert_array_equal(np.asarray(placed['a'])[1], [[4, 5], [4, 5]])
  back = stack_lib.gather_stack(placed, layout)
  np.testing.assert_array_equal(back['a'], tree['a'])
  np.testing.assert_array_equal(jax.random.key_data(back['key']),
                                jax.random.key_data(tree['key']))


def test_data_get_a_seed_axis_only_with_a_sorting_task():
  sequences = np.random.default_rng(0).normal(size=(6, 4, 5, 3))
  shared, per_seed = stack_lib.stacked_seed_data(
      sequences, pretext.pretext_tasks('rev_rec', 'LA'), [3, 4], 'train')
  assert not per_seed and shared['inputs'].shape == (3, 6, 4, 5)
  tasks = pretext.pretext_tasks('rev_rec_plus', 'LA')
  stacked, per_seed = stack_lib.stacked_seed_data(sequences, tasks, [3, 4],
                                                  'train')
  assert per_seed and stacked['inputs'].shape == (2, 9, 6, 4, 5)
  for index, seed in enumerate([3, 4]):
    alone = pretext.stacked_pretext_data(sequences, tasks, seed, 'train')
    np.testing.assert_array_equal(stacked['inputs'][index], alone['inputs'])
  assert not np.array_equal(stacked['inputs'][0], stacked['inputs'][1])


# ----------------------------------------------------------------- one step


def _one_step_setup(pretext_name):
  tasks = pretext.pretext_tasks(pretext_name, 'LA')
  model_tasks = pretext.per_model_tasks(tasks)
  model = GaitEncodingModel(hidden=8, num_joints=5)
  definition = StepDefinition(model, model_tasks, LossSettings())
  sequences = np.random.default_rng(0).normal(size=(16, 4, 5, 3)).astype(
      np.float32)
  return tasks, definition, sequences


def _sequential_gradient(definition, tasks, sequences, seed, tx):
  """Seed ``seed``'s first step (of batch 1, shuffled) on one device with
  the train loop's compiled call: (gradient, losses [M])."""
  state = create_train_state(definition.model, tx, jax.random.key(seed),
                             len(definition.model_tasks), 4, 5)
  data = pretext.stacked_pretext_data(sequences, tasks, seed, 'train')
  resident, num_batches = resident_batches(data, 8, TWO[:1])
  calls = loop.make_train_calls(definition, TWO[:1], 1, num_batches, True)
  after, metrics = calls(replicate(state, TWO[:1]), resident,
                         np.ones(len(definition.model_tasks), bool),
                         np.int32(1))
  gradient = jax.tree.map(lambda b, a: np.asarray(b) - np.asarray(a),
                          state.params, unreplicate(after).params)
  return gradient, {term: np.asarray(values.addressable_data(0))[0, 0]
                    for term, values in metrics.items()}


@pytest.mark.parametrize('seeds, pretext_name', [
    ([0, 1, 2, 3], 'rev_rec'), ([4, 5, 6], 'sorting')])
@pytest.mark.slow
def test_one_step_of_each_seed_equals_its_sequential_step(seeds, pretext_name):
  tasks, definition, sequences = _one_step_setup(pretext_name)
  tx = optax.sgd(1.0)
  num_models = len(definition.model_tasks)
  layout = stack_lib.seed_layout(seeds, 2)
  data, per_seed = stack_lib.stacked_seed_data(sequences, tasks, seeds, 'train')
  resident, num_batches = stack_lib.resident_seed_batches(data, per_seed, 8,
                                                          layout, TWO)
  initial = stack_lib.stacked_initial_states(definition.model, tx, seeds,
                                             num_models, 4, 5)
  calls = stack_lib.make_stack_calls(definition, TWO, 1, num_batches, True,
                                     per_seed)
  after, metrics = calls(
      stack_lib.place_stack(initial, layout, TWO), resident,
      stack_lib.place_stack(np.ones((len(seeds), num_models), bool), layout,
                            TWO),
      stack_lib.place_stack(np.ones(len(seeds), np.int32), layout, TWO),
      np.int32(1))
  after = stack_lib.gather_stack(after, layout)
  metrics = stack_lib.gather_stack(metrics, layout)
  for index, seed in enumerate(seeds):
    expected, losses = _sequential_gradient(definition, tasks, sequences, seed,
                                            tx)
    gradient = jax.tree.map(lambda b, a: b[index] - a[index], initial.params,
                            after.params)
    for got, want in zip(jax.tree.leaves(gradient), jax.tree.leaves(expected)):
      scale = max(float(np.abs(want).max()), 1e-30)
      assert float(np.abs(got - want).max()) <= GRADIENT_RTOL * scale
    for term, value in losses.items():
      np.testing.assert_allclose(metrics[term][index, 0], value,
                                 rtol=LOSS_RTOL, err_msg=term)
    assert int(after.step[index]) == 1


# ----------------------------------------------------------------- training


def _config(**overrides):
  return stack_config(**overrides)


def _stack(config, dataset, seeds, tmp_path=None, name='stack', **kwargs):
  """Trains ``seeds`` as a stack on the two devices; with ``tmp_path``, each
  seed's checkpoints and metrics under ``tmp_path/name/seed_<s>/``."""
  return train_stack(config, dataset, seeds,
                     None if tmp_path is None else tmp_path / name, TWO,
                     **kwargs)


def _records(path):
  return metrics_records(path)


def _assert_same_records(got, want):
  assert_same_records(got, want, LOSS_RTOL)


@pytest.mark.parametrize('seeds, pretext_name', [
    ([0, 1], 'rev_rec'), ([0, 1, 2, 3], 'rev_rec'), ([1, 2, 3], 'sorting')])
@pytest.mark.slow
def test_each_seed_of_the_stack_trains_like_its_sequential_run(
    tmp_path, seeds, pretext_name):
  config = _config(**{'model.pretext': pretext_name})
  dataset = tiny_dataset(config)       # one data set for every seed, as a job
  stacked = _stack(config, dataset, seeds, tmp_path)
  steps = int(config.train.epochs) * 6
  adam_bound = 2 * 3.2 * float(config.train.learning_rate) * steps
  for (state, _), seed in zip(stacked, seeds):
    sequential = loop.train_encoders(_config(**{'model.pretext': pretext_name,
                                                'seed': seed}),
                                     dataset, tmp_path / f'sequential_{seed}')
    assert int(state.step) == int(sequential.step) == steps
    np.testing.assert_array_equal(jax.random.key_data(state.rng),
                                  jax.random.key_data(sequential.rng))
    for got, want in zip(jax.tree.leaves(state.params),
                         jax.tree.leaves(sequential.params)):
      assert np.abs(np.asarray(got) - np.asarray(want)).max() <= adam_bound
    _assert_same_records(
        _records(tmp_path / 'stack' / f'seed_{seed}' / 'metrics.jsonl'),
        _records(tmp_path / f'sequential_{seed}' / 'metrics.jsonl'))
    assert (CheckpointStore(tmp_path / 'stack' / f'seed_{seed}' / 'checkpoints'
                            ).steps()
            == CheckpointStore(tmp_path / f'sequential_{seed}' / 'checkpoints'
                               ).steps())


@pytest.mark.slow
def test_a_seed_whose_models_all_stopped_is_frozen_while_the_others_train(
    tmp_path, monkeypatch):
  config = _config(**{'train.log_every_steps': 3,
                      'train.checkpoint_every_steps': 3})
  dataset = tiny_dataset(config)
  # The first epoch ends for seed 0, then for seed 1: seed 0 stops its model
  # 1, seed 1 all three; later epoch ends change nothing.
  decisions = iter([np.array([True, False, True]), np.zeros(3, bool)])

  def stop_at_the_first_epoch_end(state, losses, rule):
    del losses, rule
    return EarlyStopping(state.history, state.plateaus,
                         next(decisions, state.active))

  monkeypatch.setattr(seed_loop, 'update_early_stopping',
                      stop_at_the_first_epoch_end)
  (zero, zero_stop), (one, one_stop) = _stack(config, dataset, [0, 1], tmp_path)
  assert zero_stop.active.tolist() == [True, False, True]
  assert not one_stop.active.any()
  assert int(zero.step) == 12 and int(one.step) == 6
  # Seed 1 ended at its epoch-1 checkpoint, bit for bit (optimizer too).
  with CheckpointStore(tmp_path / 'stack' / 'seed_1' / 'checkpoints') as store:
    assert store.steps() == [3, 6]
    saved = store.restore(6, {'state': one, 'early_stopping':
                              one_stop.as_tree()})['state']
  for got, want in zip(jax.tree.leaves((one.params, one.opt_state)),
                       jax.tree.leaves((saved.params, saved.opt_state))):
    np.testing.assert_array_equal(got, want)
  with CheckpointStore(tmp_path / 'stack' / 'seed_0' / 'checkpoints') as store:
    assert store.steps() == [6, 9, 12]
    halfway = store.restore(6, {'state': zero, 'early_stopping':
                                zero_stop.as_tree()})['state']
  frozen = jax.tree.map(lambda a, b: np.array_equal(a[1], b[1]), zero.params,
                        halfway.params)
  moved = jax.tree.map(lambda a, b: np.array_equal(a[0], b[0]), zero.params,
                       halfway.params)
  assert all(jax.tree.leaves(frozen)) and not all(jax.tree.leaves(moved))


class _Killed(Exception):
  pass


def _assert_same_seed_runs(got, want):
  """Bit-identical final states and early stopping, seed by seed."""
  for (state, stopping), (expected, expected_stopping) in zip(got, want):
    assert int(state.step) == int(expected.step)
    for a, b in zip(jax.tree.leaves((state.params, state.opt_state)),
                    jax.tree.leaves((expected.params, expected.opt_state))):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(stopping.history, expected_stopping.history)


def test_a_kill_between_two_seeds_saves_resumes_each_from_its_own_step(
    tmp_path, monkeypatch):
  config = _config(**{'train.log_every_steps': 3,
                      'train.checkpoint_every_steps': 3})
  dataset = tiny_dataset(config)
  straight = _stack(config, dataset, [0, 1], tmp_path, name='straight')
  original_save = CheckpointStore.save

  def save_then_die(self, step, tree):
    original_save(self, step, tree)
    if step == 6 and self.directory.parent.name == 'seed_0':
      raise _Killed()           # seed 1's step 6 is never written

  monkeypatch.setattr(CheckpointStore, 'save', save_then_die)
  with pytest.raises(_Killed):
    _stack(config, dataset, [0, 1], tmp_path, name='killed')
  monkeypatch.undo()
  killed = tmp_path / 'killed'
  assert CheckpointStore(killed / 'seed_0' / 'checkpoints').steps() == [3, 6]
  assert CheckpointStore(killed / 'seed_1' / 'checkpoints').steps() == [3]
  resumed = _stack(config, dataset, [0, 1], tmp_path, name='killed')
  _assert_same_seed_runs(resumed, straight)
  for seed in ('seed_0', 'seed_1'):
    assert (_records(killed / seed / 'metrics.jsonl')
            == _records(tmp_path / 'straight' / seed / 'metrics.jsonl'))
  # Running again finds every seed finished.
  _assert_same_seed_runs(_stack(config, dataset, [0, 1], tmp_path,
                                name='killed'), straight)


@pytest.mark.slow
def test_a_stop_request_saves_every_seed_and_the_rerun_ends_like_a_straight_run(
    tmp_path):
  config = _config(**{'train.log_every_steps': 3})
  dataset = tiny_dataset(config)
  straight = _stack(config, dataset, [0, 1, 2])
  polls = iter([False, True])
  with pytest.raises(KeyboardInterrupt) as stopped:
    _stack(config, dataset, [0, 1, 2], tmp_path,
           stop_requested=lambda: next(polls, True))
  assert str(stopped.value) == (
      "training stopped at step 3 of 12 (seeds 0,1,2); each seed's step is "
      'saved in its checkpoints folder')
  for seed in (0, 1, 2):
    assert CheckpointStore(tmp_path / 'stack' / f'seed_{seed}' / 'checkpoints'
                           ).steps() == [3]
  _assert_same_seed_runs(_stack(config, dataset, [0, 1, 2], tmp_path),
                         straight)


def test_later_calls_and_a_resumed_stack_compile_nothing(tmp_path,
                                                         compile_counter):
  dataset = tiny_dataset(_config())
  _stack(_config(**{'train.epochs': 1}), dataset, [0, 1, 2], tmp_path)
  compiled = compile_counter()
  (state, _), *_ = _stack(_config(**{'train.epochs': 3}), dataset, [0, 1, 2],
                          tmp_path)
  assert int(state.step) == 18
  assert compile_counter() == compiled


@pytest.mark.slow
def test_two_processes_of_one_device_train_the_stack_like_one_of_two(tmp_path):
  # 3 seeds on 2 devices of 2 processes: process 1 holds seed 2 and its
  # padding copy. The slots compute the same programs as in one process of
  # two devices, so the two runs agree within the tolerances above.
  job = tmp_path / 'job'
  finished = run_job([f'--out={job}', '--seeds=0,1,2'], tmp_path / 'logs',
                     num_processes=2, local_devices=1, timeout=300,
                     script=REPO / 'tests' / 'fixtures' / 'seed_stack_job.py')
  for index, result in enumerate(finished):
    assert result.returncode == 0, f'process {index}:\n{result.stderr[-3000:]}'
  held = [np.load(job / f'process_{index}.npz') for index in (0, 1)]
  for name in held[0].files:             # every process holds every seed
    np.testing.assert_array_equal(held[0][name], held[1][name])
  config = _config(**{'train.log_every_steps': 3,
                      'train.checkpoint_every_steps': 6})
  one = _stack(config, tiny_dataset(config), [0, 1, 2], tmp_path, name='one')
  adam_bound = 2 * 3.2 * float(config.train.learning_rate) * 12
  for seed, (state, _) in zip([0, 1, 2], one):
    assert int(held[0][f'{seed}/step']) == int(state.step) == 12
    for index, leaf in enumerate(jax.tree.leaves(state.params)):
      assert np.abs(held[0][f'{seed}/param_{index}'] - leaf).max() <= adam_bound
    _assert_same_records(_records(job / f'seed_{seed}' / 'metrics.jsonl'),
                         _records(tmp_path / 'one' / f'seed_{seed}'
                                  / 'metrics.jsonl'))
    assert CheckpointStore(job / f'seed_{seed}' / 'checkpoints').steps() == [
        6, 12]


@pytest.mark.slow
def test_a_non_finite_loss_names_the_seed_and_keeps_every_good_checkpoint(
    tmp_path):
  dataset = tiny_dataset(_config())
  good = _stack(_config(**{'train.epochs': 1}), dataset, [0, 1], tmp_path)
  exploding = _config(**{'train.learning_rate': 1e38})
  with pytest.raises(NonFiniteLossError, match=(
      r'model rev_rec/\w of seed 0 became nan at step 8; .*last good '
      r'checkpoint \(step 6\) in .*seed_0/checkpoints is kept')):
    _stack(exploding, dataset, [0, 1], tmp_path)
  for seed, (state, stopping) in zip([0, 1], good):
    with CheckpointStore(tmp_path / 'stack' / f'seed_{seed}' / 'checkpoints'
                         ) as store:
      assert store.steps() == [6]
      saved = store.restore(6, {'state': state,
                                'early_stopping': stopping.as_tree()})
    for a, b in zip(jax.tree.leaves(saved['state'].params),
                    jax.tree.leaves(state.params)):
      np.testing.assert_array_equal(a, b)
