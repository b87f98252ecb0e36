"""Tests of the recognition network and its model-selection rules."""

import math

import jax
import numpy as np
import pytest

from sge_jax.config import get_config
from sge_jax.evaluate import recognition, rn_inputs
from sge_jax.errors import ConfigError, DataError
from tests.fixtures import ctrl_c


def _clustered_encodings(rng, people, per_person, centres, noise, length=4):
  """CAGEs [N, f, D] scattered around one centre [D] per person."""
  labels = np.repeat(np.asarray(people), per_person)
  encodings = (centres[labels][:, None, :]
               + noise * rng.normal(size=(labels.size, length,
                                          centres.shape[1])))
  return encodings.astype(np.float32), labels


def _separable_problem(seed=0, num_people=5, dim=16):
  rng = np.random.default_rng(seed)
  # Person ids are arbitrary, non-contiguous ints.
  people = np.arange(num_people) * 7 + 3
  centres = np.zeros((people.max() + 1, dim))
  centres[people] = 3.0 * rng.normal(size=(num_people, dim))
  train = _clustered_encodings(rng, people, 12, centres, noise=0.3)
  test = _clustered_encodings(rng, people, 4, centres, noise=0.3)
  return train, test


def _settings(**overrides):
  values = dict(manner='ap', selection='fixed', epochs=40, batch_size=32,
                learning_rate=5e-3, hidden=32, epochs_per_call=16, seed=0)
  values.update(overrides)
  return recognition.RNSettings(**values)


def _accuracy(result, split, labels):
  predictions = result.classes[np.argmax(result.scores[split], axis=1)]
  return float(np.mean(predictions == labels))


class TestNetwork:

  def test_architecture_and_authors_init(self):
    model = recognition.RecognitionNetwork(hidden=64, num_classes=7)
    params = model.init(jax.random.key(0), np.zeros((1, 300), np.float32))
    params = params['params']
    assert params['hidden']['kernel'].shape == (300, 64)
    assert params['output']['kernel'].shape == (64, 7)
    np.testing.assert_array_equal(params['hidden']['bias'], 0)
    np.testing.assert_array_equal(params['output']['bias'], 0)
    # Normal(0, 1) weights, not a fan-in-scaled default.
    assert abs(float(np.std(params['hidden']['kernel'])) - 1.0) < 0.02

  def test_samples_per_manner(self):
    encodings = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    np.testing.assert_array_equal(rn_inputs.rn_samples(encodings, 'ap'),
                                  encodings)
    sc = rn_inputs.rn_samples(encodings, 'sc')
    assert sc.shape == (2, 1, 12)
    np.testing.assert_array_equal(sc[1, 0], encodings[1].ravel())


class TestTraining:

  @pytest.mark.parametrize('manner', ['ap', 'sc'])
  @pytest.mark.slow
  def test_separable_encodings_are_recognised(self, manner):
    (train_x, train_y), (test_x, test_y) = _separable_problem()
    result = recognition.train_and_score(
        train_x, train_y, {'test': (test_x, test_y)},
        _settings(manner=manner, epochs=60 if manner == 'sc' else 40,
                  batch_size=8 if manner == 'sc' else 32))
    assert _accuracy(result, 'test', test_y) >= 0.95
    np.testing.assert_array_equal(result.classes, np.unique(train_y))
    assert result.scores['test'].shape == (test_y.size, 5)
    per_sequence = 4 if manner == 'ap' else 1
    assert result.samples_per_epoch == train_y.size * per_sequence

  def test_batch_count_drops_the_incomplete_batch(self):
    (train_x, train_y), (test_x, test_y) = _separable_problem()
    result = recognition.train_and_score(
        train_x, train_y, {'test': (test_x, test_y)},
        _settings(epochs=1, batch_size=50))
    # 60 sequences x 4 frames = 240 samples -> 4 batches of 50, 40 dropped.
    assert result.samples_per_epoch == 240
    assert (result.batch_size, result.batches_per_epoch) == (50, 4)
    tiny = recognition.train_and_score(
        train_x[:2], train_y[:2], {}, _settings(epochs=1, batch_size=128))
    assert (tiny.batch_size, tiny.batches_per_epoch) == (8, 1)

  def test_same_seed_same_scores_other_seed_differs(self):
    (train_x, train_y), (test_x, test_y) = _separable_problem()
    tests = {'test': (test_x, test_y)}
    first = recognition.train_and_score(train_x, train_y, tests,
                                        _settings(epochs=3))
    again = recognition.train_and_score(train_x, train_y, tests,
                                        _settings(epochs=3))
    other = recognition.train_and_score(train_x, train_y, tests,
                                        _settings(epochs=3, seed=1))
    np.testing.assert_array_equal(first.scores['test'], again.scores['test'])
    assert not np.allclose(first.scores['test'], other.scores['test'])

  @pytest.mark.slow
  def test_no_recompilation_across_epochs_and_calls(self, compile_counter):
    # Warm up the shape-independent pieces, then compare a one-call run with a
    # four-call run (whose last call is padded with inactive epochs) on fresh
    # shapes: both must compile the same number of programs.
    rng = np.random.default_rng(0)

    def run(num_sequences, epochs):
      encodings = rng.normal(size=(num_sequences, 3, 8)).astype(np.float32)
      labels = np.arange(num_sequences) % 3
      recognition.train_and_score(
          encodings, labels, {'test': (encodings[:5], labels[:5])},
          _settings(epochs=epochs, epochs_per_call=2, batch_size=4))

    run(9, 2)
    start = compile_counter()
    run(10, 2)
    one_call = compile_counter() - start
    start = compile_counter()
    run(11, 7)
    four_calls = compile_counter() - start
    assert one_call >= 1
    assert four_calls == one_call

  def test_unknown_test_person_is_rejected(self):
    (train_x, train_y), (test_x, test_y) = _separable_problem()
    test_y = test_y.copy()
    test_y[0] = 999
    with pytest.raises(DataError, match='999'):
      recognition.train_and_score(train_x, train_y, {'test': (test_x, test_y)},
                                  _settings(epochs=1))


@pytest.fixture(scope='module')
def noisy_run():
  # Overlapping classes and a high learning rate: accuracies go up and down.
  rng = np.random.default_rng(4)
  people = np.arange(4)
  centres = 0.6 * rng.normal(size=(4, 8))
  train_x, train_y = _clustered_encodings(rng, people, 15, centres, 1.0, 3)
  tests = {name: _clustered_encodings(rng, people, 6, centres, 1.0, 3)
           for name in ('A', 'B')}
  settings = _settings(selection='val', epochs=12, epochs_per_call=5,
                       learning_rate=5e-2, val_fraction=0.2, batch_size=16)
  return recognition.train_and_score(train_x, train_y, tests,
                                     settings), tests


class TestSelection:

  @staticmethod
  def _score_accuracy(scores, labels, classes):
    return float(np.mean(classes[np.argmax(scores, axis=1)] == labels))

  def test_fixed_is_the_last_epoch(self, noisy_run):
    result, tests = noisy_run
    fixed = result.rules['fixed']
    for name, (_, labels) in tests.items():
      assert fixed.epochs[name] == 12
      assert self._score_accuracy(fixed.scores[name], labels, result.classes
                                  ) == pytest.approx(
                                      result.history.test_accuracy[name][-1])

  def test_paper_is_the_first_best_test_epoch_per_split(self, noisy_run):
    result, tests = noisy_run
    paper = result.rules['paper']
    for name, (_, labels) in tests.items():
      curve = result.history.test_accuracy[name]
      assert paper.epochs[name] == int(np.argmax(curve)) + 1
      assert self._score_accuracy(paper.scores[name], labels, result.classes
                                  ) == pytest.approx(curve.max())
    # The run is informative only if the test curves are not flat.
    assert any(np.ptp(c) > 0 for c in result.history.test_accuracy.values())

  def test_val_is_the_best_validation_epoch(self, noisy_run):
    result, tests = noisy_run
    accuracy = result.history.val_accuracy
    loss = result.history.val_loss
    # Best accuracy, ties to the lower validation loss, then the earlier epoch.
    best = min(range(accuracy.size), key=lambda e: (-accuracy[e], loss[e], e))
    val = result.rules['val']
    for name, (_, labels) in tests.items():
      assert val.epochs[name] == best + 1
      assert self._score_accuracy(val.scores[name], labels, result.classes
                                  ) == pytest.approx(
                                      result.history.test_accuracy[name][best])
    # Informative only if the validation pick is not simply the last epoch.
    assert best + 1 != result.rules['fixed'].epochs['A']
    assert result.selection == 'val'
    assert result.selected_epochs == val.epochs
    for name in tests:
      np.testing.assert_array_equal(result.scores[name], val.scores[name])

  def test_val_training_excludes_the_held_out_sequences(self, noisy_run):
    result, _ = noisy_run
    # 15 sequences per person, fraction 0.2 -> 3 held out of each of 4 people.
    assert result.num_val_sequences == 12
    assert result.num_train_sequences == 48
    assert result.samples_per_epoch == 48 * 3

  def test_fixed_and_paper_runs_have_no_validation_split(self):
    (train_x, train_y), (test_x, test_y) = _separable_problem()
    result = recognition.train_and_score(
        train_x, train_y, {'test': (test_x, test_y)},
        _settings(selection='paper', epochs=2))
    assert set(result.rules) == {'fixed', 'paper'}
    assert result.num_val_sequences == 0
    assert result.history.val_accuracy is None
    assert result.selected_epochs == result.rules['paper'].epochs

  def test_without_test_tracking_there_is_no_paper_rule(self):
    (train_x, train_y), (test_x, test_y) = _separable_problem()
    tests = {'test': (test_x, test_y)}
    result = recognition.train_and_score(
        train_x, train_y, tests,
        _settings(selection='val', epochs=3, track_test=False))
    assert set(result.rules) == {'fixed', 'val'}
    assert result.history.test_accuracy == {}
    assert result.history.val_accuracy.shape == (3,)
    # 'paper' needs the per-epoch test scores, so it turns tracking on.
    paper = recognition.train_and_score(
        train_x, train_y, tests,
        _settings(selection='paper', epochs=3, track_test=False))
    assert paper.history.test_accuracy['test'].shape == (3,)

  def test_val_without_any_holdout_is_an_error(self):
    encodings = np.zeros((3, 2, 4), np.float32)
    with pytest.raises(DataError, match='selection=fixed'):
      recognition.train_and_score(encodings, np.array([1, 2, 3]), {},
                                  _settings(selection='val', epochs=1))


class TestValidationSplit:

  def test_per_person_contiguous_whole_sequences(self):
    labels = np.array([5] * 10 + [9] * 4 + [2] * 1 + [7] * 20)
    train_rows, val_rows = rn_inputs.validation_split(labels, 0.25, seed=0)
    assert np.intersect1d(train_rows, val_rows).size == 0
    np.testing.assert_array_equal(np.union1d(train_rows, val_rows),
                                  np.arange(labels.size))
    for person, count in ((5, 10), (9, 4), (2, 1), (7, 20)):
      rows = np.flatnonzero(labels[val_rows] == person)
      held_out = val_rows[rows]
      expected = min(math.ceil(0.25 * count), count - 1)
      assert held_out.size == expected
      if held_out.size:
        # One contiguous run of that person's stored-order sequences.
        assert np.all(np.diff(held_out) == 1)
      # Every person keeps at least one training sequence.
      assert np.any(labels[train_rows] == person)

  def test_seeded(self):
    labels = np.repeat(np.arange(6), 30)
    first = rn_inputs.validation_split(labels, 0.1, seed=4)[1]
    again = rn_inputs.validation_split(labels, 0.1, seed=4)[1]
    other = rn_inputs.validation_split(labels, 0.1, seed=5)[1]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


class TestSettings:

  def test_from_default_config(self):
    config = get_config()
    config.seed = 7
    settings = recognition.RNSettings.from_config(config)
    assert (settings.manner, settings.selection, settings.seed) == ('ap', 'val',
                                                                    7)
    assert (settings.epochs, settings.batch_size) == (300, 128)
    assert settings.learning_rate == 5e-4

  @pytest.mark.parametrize('field, value', [
      ('manner', 'frames'), ('selection', 'best'), ('epochs', 0),
      ('learning_rate', 0.0), ('val_fraction', 1.0)])
  def test_invalid_values_name_the_field(self, field, value):
    overrides = {'selection': 'val', field: value}
    with pytest.raises(ConfigError, match=f'config.rn.{field}'):
      _settings(**overrides)


def test_ctrl_c_stops_the_recognition_network_between_compiled_calls(
    monkeypatch):
  (train_x, train_y), (test_x, test_y) = _separable_problem()
  real_run_epochs = recognition._run_epochs
  calls = []

  def interrupted(*args, **kwargs):
    calls.append(True)
    if len(calls) == 2:
      ctrl_c.press()       # while the second call runs: it finishes
    return real_run_epochs(*args, **kwargs)

  monkeypatch.setattr(recognition, '_run_epochs', interrupted)
  with ctrl_c.commands_handler():
    with pytest.raises(KeyboardInterrupt) as stopped:
      recognition.train_and_score(train_x, train_y, {'test': (test_x, test_y)},
                                  _settings(epochs=40, epochs_per_call=10))
  assert len(calls) == 2
  assert str(stopped.value).startswith(
      'the recognition network stopped after epoch 20 of 40; it is not saved')
