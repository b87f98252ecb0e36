"""The train stage: resumption, early stopping, multi-device, non-finite losses."""

import json

import jax
import numpy as np
import pytest

from sge_jax.errors import NonFiniteLossError
from sge_jax.train import loop, setup
from sge_jax.train.checkpoints import CheckpointStore
from sge_jax.train.devices import resident_batches
from sge_jax.train.early_stopping import EarlyStopping, update_early_stopping
from sge_jax.train.loop import steps_in_next_call, train_encoders
from tests.fixtures import ctrl_c
from tests.fixtures.pipeline import (resolved_run, tiny_config, tiny_dataset,
                                     tiny_run)


class _Interrupted(Exception):
  pass


def _assert_same_params(a, b, rtol=0.0):
  """Bit-identical (rtol=0), or equal to rtol relative to each array's max-norm."""
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    x, y = np.asarray(x), np.asarray(y)
    if rtol:
      assert np.max(np.abs(x - y)) <= rtol * np.max(np.abs(y))
    else:
      np.testing.assert_array_equal(x, y)


@pytest.mark.slow
def test_interrupted_then_resumed_run_ends_like_an_uninterrupted_one(
    tmp_path, monkeypatch):
  config = tiny_config(**{'train.shuffle_batches': True})
  dataset = tiny_dataset(config)
  straight = train_encoders(resolved_run(config), dataset,
                            tmp_path / 'straight')
  assert int(straight.step) == 12

  original_save = CheckpointStore.save

  def save_then_crash(self, step, tree):
    original_save(self, step, tree)
    if step == 6:
      raise _Interrupted()

  monkeypatch.setattr(CheckpointStore, 'save', save_then_crash)
  with pytest.raises(_Interrupted):
    train_encoders(resolved_run(config), dataset, tmp_path / 'resumed')
  monkeypatch.setattr(CheckpointStore, 'save', original_save)
  resumed = train_encoders(resolved_run(config), dataset, tmp_path / 'resumed')
  assert int(resumed.step) == 12
  _assert_same_params(resumed.params, straight.params)
  np.testing.assert_array_equal(jax.random.key_data(resumed.rng),
                                jax.random.key_data(straight.rng))
  # metrics.jsonl describes one run: every step logged once.
  steps = [r['step'] for r in map(json.loads, (tmp_path / 'resumed' / 'metrics.jsonl')
                                  .read_text().splitlines()) if 'loss/total' in r]
  assert steps == [3, 6, 9, 12]
  # Running again finds the run finished.
  again = train_encoders(resolved_run(config), dataset, tmp_path / 'resumed')
  _assert_same_params(again.params, straight.params)


def _press_during_calls(monkeypatch, presses):
  """Ctrl-C while compiled calls run: ``presses[i]`` times during call i."""
  real_make = loop.make_train_calls

  def make(*args):
    run_calls = real_make(*args)
    calls = iter(presses)

    def interrupted(*call_args):
      ctrl_c.press(next(calls, 0))
      return run_calls(*call_args)
    return interrupted

  monkeypatch.setattr(loop, 'make_train_calls', make)


def test_ctrl_c_saves_the_step_reached_and_the_rerun_ends_like_a_straight_run(
    tmp_path, monkeypatch):
  config = tiny_config(**{'train.checkpoint_every_steps': 100})
  dataset = tiny_dataset(config)
  straight = train_encoders(resolved_run(config), dataset,
                            tmp_path / 'straight')
  _press_during_calls(monkeypatch, [0, 1])
  with ctrl_c.commands_handler():
    with pytest.raises(KeyboardInterrupt) as stopped:
      train_encoders(resolved_run(config), dataset, tmp_path / 'run')
  checkpoints = tmp_path / 'run' / 'checkpoints'
  assert str(stopped.value) == (
      f'training stopped at step 6 of 12; checkpoint step 6 saved in '
      f'{checkpoints}')
  assert CheckpointStore(checkpoints).steps() == [6]
  monkeypatch.undo()
  resumed = train_encoders(resolved_run(config), dataset, tmp_path / 'run')
  _assert_same_params(resumed.params, straight.params)


@pytest.mark.parametrize('presses, message', [
    ([2], 'no checkpoint was written'),
    ([0, 2], 'no checkpoint was written'),
    ([0, 0, 2], 'the newest checkpoint, step 6 in {checkpoints}, is kept'),
])
def test_a_second_ctrl_c_stops_at_once_naming_what_is_kept(
    tmp_path, monkeypatch, presses, message):
  config = tiny_config(**{'train.checkpoint_every_steps':
                          3 if len(presses) == 3 else 100})
  _press_during_calls(monkeypatch, presses)
  with ctrl_c.commands_handler():
    with pytest.raises(KeyboardInterrupt) as stopped:
      train_encoders(resolved_run(config), tiny_dataset(config), tmp_path)
  assert str(stopped.value) == (
      'training stopped at once, without saving its current step; '
      + message.format(checkpoints=tmp_path / 'checkpoints'))


@pytest.mark.parametrize('epochs, message', [
    (2, 'training stopped before its first step in this run: nothing was '
        'trained; the newest checkpoint, step 6 in {checkpoints}, is kept'),
    (1, 'training had already finished; the newest checkpoint, step 6 in '
        '{checkpoints}, is kept'),
])
def test_ctrl_c_while_training_is_set_up_says_nothing_was_trained(
    tmp_path, monkeypatch, epochs, message):
  dataset = tiny_dataset(tiny_config())
  train_encoders(tiny_run(**{'train.epochs': 1}), dataset, tmp_path)
  real_initial_state = loop.initial_state

  def interrupted_initial_state(*args):
    ctrl_c.press()
    return real_initial_state(*args)

  monkeypatch.setattr(loop, 'initial_state', interrupted_initial_state)
  with ctrl_c.commands_handler():
    with pytest.raises(KeyboardInterrupt) as stopped:
      train_encoders(tiny_run(**{'train.epochs': epochs}), dataset, tmp_path)
  assert str(stopped.value) == message.format(
      checkpoints=tmp_path / 'checkpoints')


@pytest.mark.slow
def test_two_devices_train_like_one(tmp_path):
  config = tiny_config()
  dataset = tiny_dataset(config)
  run = resolved_run(config)
  one = train_encoders(run, dataset, tmp_path / 'one', jax.devices()[:1])
  two = train_encoders(run, dataset, tmp_path / 'two', jax.devices()[:2])
  # Adam moves every parameter by about +/-lr per step whatever its gradient's
  # size, so float32 rounding in a near-zero gradient (the summation order
  # differs between 1 and 2 devices, and between CPUs) can flip a step: the
  # parameters agree only to within those steps. The losses, smooth in the
  # parameters, agree closely; the exact gradient equivalence is tested in
  # tests/train/test_step.py.
  steps = int(config.train.epochs) * (dataset.split('train').num_sequences
                                      // int(config.train.batch_size))
  adam_bound = 2 * 3.2 * float(config.train.learning_rate) * steps
  for x, y in zip(jax.tree.leaves(two.params), jax.tree.leaves(one.params)):
    assert np.max(np.abs(np.asarray(x) - np.asarray(y))) <= adam_bound
  losses = [[r['loss/total_all_models'] for r in map(
      json.loads, (tmp_path / run / 'metrics.jsonl').read_text().splitlines())
             if 'loss/total_all_models' in r] for run in ('one', 'two')]
  np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
  config = tiny_config(**{'train.epochs': 1})
  dataset = tiny_dataset(config)
  good = train_encoders(resolved_run(config), dataset, tmp_path)
  exploding = tiny_config(**{'train.epochs': 2, 'train.learning_rate': 1e38})
  with pytest.raises(NonFiniteLossError,
                     match=r'became nan at step 8.*last good checkpoint \(step 6\)'):
    train_encoders(resolved_run(exploding), dataset, tmp_path)
  store = CheckpointStore(tmp_path / 'checkpoints')
  assert store.latest_step() == 6
  restored = setup.restore_trained_params(resolved_run(config), tmp_path, 6, 20)
  _assert_same_params(restored, good.params)


def test_paper_early_stopping_counts_a_plateau_then_stops_on_a_rise():
  state = EarlyStopping.start(2)
  losses = [[5.0, 5.0], [4.0, 3.0], [3.000001, 2.0], [3.000002, 1.0],
            [3.000003, 0.5], [3.1, 0.4]]
  for epoch_losses in losses:
    state = update_early_stopping(state, np.array(epoch_losses), 'paper')
  # Model 0: 4.0 then three values equal to 5 decimals (plateau), then a rise.
  assert state.plateaus.tolist() == [1, 0]
  assert state.active.tolist() == [False, True]
  never = EarlyStopping.start(2)
  for epoch_losses in losses:
    never = update_early_stopping(never, np.array(epoch_losses), 'none')
  assert never.active.all()


def test_stopped_models_are_frozen(tmp_path, monkeypatch):
  config = tiny_config(**{'train.early_stopping': 'paper', 'train.epochs': 4})
  dataset = tiny_dataset(config)

  def stop_model_one_after_first_epoch(state, losses, rule):
    del losses, rule
    return EarlyStopping(state.history, state.plateaus, np.array([True, False, True]))

  monkeypatch.setattr(loop, 'update_early_stopping',
                      stop_model_one_after_first_epoch)
  frozen = train_encoders(resolved_run(config), dataset, tmp_path)
  metrics = [json.loads(line) for line in
             (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert metrics[-1]['active'] == {'rev_rec/x': True, 'rev_rec/y': False,
                                   'rev_rec/z': True}
  after_one_epoch = train_encoders(tiny_run(**{'train.epochs': 1}), dataset,
                                   tmp_path / 'one_epoch')
  _assert_same_params(jax.tree.map(lambda p: p[1], frozen.params),
                      jax.tree.map(lambda p: p[1], after_one_epoch.params))
  moved = jax.tree.map(lambda a, b: np.abs(a[0] - b[0]).max(), frozen.params,
                       after_one_epoch.params)
  assert max(jax.tree.leaves(moved)) > 0


def test_calls_end_at_epoch_ends_and_at_the_last_step():
  assert steps_in_next_call(0, 5, 7, 70) == 5
  assert steps_in_next_call(5, 5, 7, 70) == 2          # a prime epoch of 7
  assert steps_in_next_call(7, 5, 7, 70) == 5
  assert steps_in_next_call(68, 5, 7, 70) == 2


@pytest.mark.slow
def test_a_prime_number_of_batches_trains_with_one_program(tmp_path,
                                                           compile_counter):
  # 84 sequences in batches of 12: 7 per epoch; up to 3 steps per call gives
  # calls of 3, 3, 1 per epoch.
  prime = {'data.synthetic.num_people': 7, 'train.batch_size': 12,
           'train.log_every_steps': 3}
  config = tiny_config(**prime, **{'train.epochs': 2})
  dataset = tiny_dataset(config)
  state = train_encoders(resolved_run(config), dataset, tmp_path / 'a')
  assert int(state.step) == 14
  steps = [json.loads(line)['step'] for line in
           (tmp_path / 'a' / 'metrics.jsonl').read_text().splitlines()
           if 'loss/total' in line]
  assert steps == [3, 6, 7, 10, 13, 14]
  compiled = compile_counter()
  train_encoders(tiny_run(**prime, **{'train.epochs': 3}), dataset,
                 tmp_path / 'a')
  assert compile_counter() == compiled


def test_resident_batches_are_contiguous_device_shards():
  data = {'inputs': np.arange(3 * 10).reshape(3, 10, 1, 1).astype(np.float32),
          'targets': np.zeros((3, 10, 1, 1), np.float32)}
  resident, num_batches = resident_batches(data, 4, jax.devices()[:2])
  assert num_batches == 2                      # sequences 8 and 9 are dropped
  inputs = np.asarray(resident['inputs'])      # [n_dev, M, batches, B/n_dev, ...]
  assert inputs.shape == (2, 3, 2, 2, 1, 1)
  np.testing.assert_array_equal(inputs[1, 0, 1, :, 0, 0], [6, 7])
  np.testing.assert_array_equal(inputs[0, 2, 0, :, 0, 0], [20, 21])


def test_later_epochs_compile_nothing(tmp_path, compile_counter):
  dataset = tiny_dataset(tiny_config())
  train_encoders(tiny_run(**{'train.epochs': 1}), dataset, tmp_path)
  compiled_for_first_epoch = compile_counter()
  state = train_encoders(tiny_run(**{'train.epochs': 3}), dataset, tmp_path)
  assert int(state.step) == 18
  assert compile_counter() == compiled_for_first_epoch
