"""Progress lines of the recognition network's training (rn_progress)."""

import logging
import re

import jax
import numpy as np
import pytest

from sge_jax import progress
from sge_jax.config import RNSettings
from sge_jax.evaluate import recognition, rn_progress
from tests.fixtures.progress import FakeClock, fresh_last_line  # pylint: disable=unused-import


def test_each_call_logs_a_line_with_the_eta_of_the_calls_after_the_first(
    caplog):
  clock = FakeClock()
  tracker = rn_progress.RNProgress(300, clock=clock)
  with caplog.at_level(logging.INFO, logger=rn_progress.__name__):
    clock.now += 65.9
    tracker.call_done(50, 0.1654, 0.968)
    clock.now += 50.0            # 50 epochs in 50 s: 1 epoch/s, 200 left
    tracker.call_done(100, 0.04427, 0.995)
    clock.now += 30.0            # 100 epochs in 80 s: 1.25 epochs/s, 150 left
    tracker.call_done(150, 0.01513)
  assert caplog.messages == [
      '[rn] epoch 50/300: train loss 0.1654, val acc 0.968 | first call '
      '(compilation included) 65.9 s',
      '[rn] epoch 100/300: train loss 0.04427, val acc 0.995 | 1.00 epochs/s'
      '  ETA 3:20',
      '[rn] epoch 150/300: train loss 0.01513 | 1.25 epochs/s  ETA 2:00']


def _problem(classes=3, per_class=12, length=4, dim=5):
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(classes), per_class)
  encodings = (rng.normal(size=(labels.size, length, dim))
               + labels[:, None, None]).astype(np.float32)
  return encodings, labels


@pytest.mark.slow
def test_epochs_inside_a_call_are_reported_and_change_no_number(
    caplog, monkeypatch):
  encodings, labels = _problem()
  settings = RNSettings(epochs=6, epochs_per_call=4, batch_size=8, hidden=4,
                        selection='fixed')
  monkeypatch.setattr(progress, 'INTERVAL_S', 0.0)     # a line per epoch
  with caplog.at_level(logging.INFO, logger=rn_progress.__name__):
    reported = recognition.train_and_score(
        encodings, labels, {'test': (encodings, labels)}, settings)
  calls = [m for m in caplog.messages if m.startswith('[rn] epoch')]
  assert [m.split(':')[0] for m in calls] == ['[rn] epoch 4/6',
                                               '[rn] epoch 6/6']
  assert 'first call (compilation included)' in calls[0]
  assert re.search(r'epochs/s  ETA 0:00$', calls[1])
  within = sorted(int(re.match(r'\[rn\] recognition network: (\d)/6 epochs',
                               m).group(1))
                  for m in caplog.messages if 'recognition network' in m)
  assert within == [1, 2, 3, 4, 5]     # the sixth ends the task: no line

  # The same training without the callback: bit-identical results.
  monkeypatch.setattr(jax.debug, 'callback', lambda *args, **kwargs: None)
  recognition._run_epochs.clear_cache()
  try:
    silent = recognition.train_and_score(
        encodings, labels, {'test': (encodings, labels)}, settings)
  finally:
    recognition._run_epochs.clear_cache()
  np.testing.assert_array_equal(reported.scores['test'], silent.scores['test'])
  np.testing.assert_array_equal(reported.history.train_loss,
                                silent.history.train_loss)
  for got, want in zip(jax.tree.leaves(reported.params),
                       jax.tree.leaves(silent.params)):
    np.testing.assert_array_equal(got, want)


def test_no_training_in_progress_ignores_the_callback():
  rn_progress.epoch_finished(3)      # e.g. a callback arriving late
