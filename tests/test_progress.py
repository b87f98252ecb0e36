"""sge_jax.progress: throttled progress lines with an ETA, on a fake clock."""

import logging

import pytest

from sge_jax import progress
from tests.fixtures.progress import FakeClock, fresh_last_line  # pylint: disable=unused-import


def test_format_duration():
  assert progress.format_duration(0) == '0:00'
  assert progress.format_duration(61.4) == '1:01'
  assert progress.format_duration(3 * 3600 + 5) == '3:00:05'
  assert progress.format_duration(-3) == '0:00'


def test_lines_are_throttled_and_carry_an_eta(caplog):
  clock = FakeClock()
  task = progress.Progress('protocol B test -> train, CAGEs', 6560, 'queries',
                           interval_s=10.0, clock=clock)
  with caplog.at_level(logging.INFO, logger=progress.__name__):
    clock.now += 4.0
    task.advance(1000)          # 4 s: within the interval, silent
    clock.now += 8.0
    task.advance(2200)          # 12 s: a line; 2200 in the 8 s since the
    clock.now += 1.0            # first advance -> 3360 left in 12.2 s
    task.advance(100)           # 1 s after the line: silent
  assert caplog.messages == [
      '[eval] protocol B test -> train, CAGEs: 3200/6560 queries (48.8%), '
      'ETA 0:12']


def test_the_eta_leaves_out_the_time_before_the_first_advance(caplog):
  # The first batch takes 100 s (compilation), every later one 1 s: the ETA
  # is the later batches' rate, not the mean that the start-up would inflate.
  clock = FakeClock()
  task = progress.Progress('CAGEs', 100, 'batches', interval_s=10.0,
                           clock=clock)
  with caplog.at_level(logging.INFO, logger=progress.__name__):
    clock.now += 100.0
    task.advance()              # a line: one advance, rate since the start
    for _ in range(10):
      clock.now += 1.0
      task.advance()            # a line after 10 s: 10 batches in 10 s
  assert caplog.messages == [
      '[eval] CAGEs: 1/100 batches (1.0%), ETA 2:45:00',
      '[eval] CAGEs: 11/100 batches (11.0%), ETA 1:29']


def test_a_finished_task_writes_no_line(caplog):
  clock = FakeClock()
  task = progress.Progress('walks', 2, 'rankings', interval_s=1.0, clock=clock)
  with caplog.at_level(logging.INFO, logger=progress.__name__):
    clock.now += 5.0
    task.advance(2)
  assert caplog.messages == []


def test_short_tasks_in_a_row_are_not_silent_past_the_interval(caplog):
  # Each task lasts 4 s, too short for a line of its own; the silence counts
  # from the first one's start, so the third writes a line at 12 s.
  clock = FakeClock()
  with caplog.at_level(logging.INFO, logger=progress.__name__):
    for name in ('a', 'b', 'c'):
      task = progress.Progress(name, 4, 'blocks', interval_s=10.0, clock=clock)
      for _ in range(3):
        clock.now += 1.0
        task.advance()
      clock.now += 1.0
      task.advance()
  assert caplog.messages == ['[eval] c: 2/4 blocks (50.0%), ETA 0:02']


def test_time_outside_any_task_does_not_count_as_silence(caplog):
  clock = FakeClock()
  progress.Progress('earlier', 1, 'units', interval_s=10.0, clock=clock)
  clock.now += 600.0           # e.g. training, with its own lines
  task = progress.Progress('later', 10, 'units', interval_s=10.0, clock=clock)
  with caplog.at_level(logging.INFO, logger=progress.__name__):
    clock.now += 1.0
    task.advance()
  assert caplog.messages == []
