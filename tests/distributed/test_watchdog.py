"""sge_jax.distributed.watchdog in one process: the stop records, the lines, and what
a process concludes from the others' entries, on a fake key-value store and a
fake clock. The whole path runs with real processes in test_many_processes.py."""

import subprocess
import sys
import textwrap

import pytest

from sge_jax.distributed import watchdog as job_watchdog
from sge_jax.errors import PeerStoppedError
from sge_jax.distributed.watchdog import (CRASHED, ERROR, INTERRUPTED, SILENT, PeerView,
                                  Stop)


class FakeStore:
  """The two calls of JAX's distributed runtime client the watchdog uses."""

  def __init__(self):
    self.entries = {}

  def key_value_set(self, key, value, allow_overwrite=False):
    if key in self.entries and not allow_overwrite:
      raise RuntimeError(f'ALREADY_EXISTS: key {key} already exists.')
    self.entries[key] = value

  def key_value_dir_get(self, prefix):
    return sorted((key, value) for key, value in self.entries.items()
                  if key.startswith(prefix))


class FakeClock:

  def __init__(self):
    self.now = 100.0

  def __call__(self):
    return self.now


def _views(count=3, clock=None):
  """One PeerView per process over one shared store."""
  store, clock = FakeStore(), clock or FakeClock()
  return store, clock, [PeerView(store, index, count, clock)
                        for index in range(count)]


def test_a_stop_survives_the_store_and_garbage_is_ignored():
  stop = Stop(2, CRASHED, 1, 'RuntimeError: é "quoted"')
  assert Stop.from_json(stop.to_json()) == stop
  for garbage in ('', '{', '[]', '{"origin": "x"}', 'null'):
    assert Stop.from_json(garbage) is None


def test_each_kind_of_stop_reads_as_one_line_naming_the_process():
  lines = {kind: job_watchdog.peer_line(Stop(1, kind, 1, 'Thing: it\nbroke'),
                                        '[process 0] ')
           for kind in (ERROR, INTERRUPTED, CRASHED, SILENT)}
  assert lines[ERROR] == ('[process 0] error: process 1 stopped the job: '
                          'Thing: it\nbroke')
  assert lines[INTERRUPTED].startswith(
      '[process 0] interrupted: process 1 was interrupted (Ctrl-C)')
  assert lines[CRASHED].startswith('[process 0] error: process 1 crashed')
  assert lines[SILENT].startswith(
      '[process 0] error: process 1 stopped answering')
  for kind in (INTERRUPTED, CRASHED, SILENT):
    assert lines[kind].endswith('run the same command again in every process '
                                'to resume')
  # The same words as the error stop_together raises on the other processes.
  assert lines[ERROR] == '[process 0] error: ' + str(
      PeerStoppedError(1, 'Thing: it\nbroke'))


def test_what_a_process_publishes_for_its_own_failure():
  assert job_watchdog.cause_of(KeyboardInterrupt(), 3, 130) == Stop(
      3, INTERRUPTED, 130)
  assert job_watchdog.cause_of(ValueError('bad\n  value'), 3, 2) == Stop(
      3, ERROR, 2, 'ValueError: bad value')
  # An error that came from another process keeps that process as origin.
  assert job_watchdog.cause_of(PeerStoppedError(0, 'DataError: x'), 3, 2) == (
      Stop(0, ERROR, 2, 'DataError: x'))
  long = job_watchdog.describe(RuntimeError('x' * 5000))
  assert len(long) == job_watchdog._MAX_WHAT and long.endswith('...')


def test_a_process_whose_heartbeat_stands_still_is_named_silent():
  _, clock, (zero, one, two) = _views()
  for view in (zero, one, two):
    view.beat()
  zero.poll()
  clock.now += 9
  one.beat()                      # process 2 beats no more
  zero.poll()
  assert zero.silent_peers(10) == []
  clock.now += 2
  assert zero.silent_peers(10) == [2]
  assert not zero.all_peers_left()      # process 1 still beats
  clock.now += job_watchdog.GONE_SECONDS + 1
  assert zero.all_peers_left()          # now both are quiet


def test_a_finished_or_stopped_process_is_not_silent():
  _, clock, (zero, one, two) = _views()
  one.mark_done()
  two.publish(Stop(2, ERROR, 2, 'DataError: x'))
  zero.poll()
  clock.now += 1000
  assert zero.silent_peers(10) == []
  assert zero.all_peers_left()


def test_a_process_follows_the_lowest_origin_but_not_its_own():
  _, _, (zero, one, two) = _views()
  assert zero.stop_by_another() is None
  two.publish(Stop(2, CRASHED, 1, 'RuntimeError: a'))
  one.publish(Stop(1, ERROR, 2, 'DataError: b'))
  zero.poll()
  assert zero.stop_by_another() == Stop(1, ERROR, 2, 'DataError: b')
  # Process 1 following process 0's own stop is no news to process 0.
  store, _, (zero, one) = _views(count=2)
  zero.publish(Stop(0, ERROR, 2, 'DataError: c'))
  one.publish(Stop(0, ERROR, 2, 'DataError: c'))
  zero.poll()
  assert zero.stop_by_another() is None
  store.entries['sge_jax/stopped/7'] = Stop(7, ERROR, 2).to_json()  # no such process
  store.entries['sge_jax/other/1'] = 'x'
  zero.poll()
  assert zero.stop_by_another() is None


def _verdict(view, clock, each_poll):
  """job_watchdog.verdict on a fake clock; ``each_poll()`` plays the others."""
  original_poll = view.poll

  def poll():
    each_poll()
    original_poll()

  view.poll = poll

  def sleep(seconds):
    clock.now += seconds

  return job_watchdog.verdict(view, seconds=5, sleep=sleep)


def test_after_a_failure_here_live_processes_mean_the_fault_is_ours():
  _, clock, (zero, one, two) = _views()
  polls = []

  def others_beat():
    polls.append(clock.now)
    one.beat()
    two.beat()

  assert _verdict(zero, clock, others_beat) is None
  assert len(polls) == 2            # one beat of each sufficed


def test_after_a_failure_here_a_silent_process_is_blamed():
  _, clock, (zero, one, two) = _views()
  start = clock.now
  assert _verdict(zero, clock, one.beat) == Stop(
      2, SILENT, 1, 'no heartbeat for 5 s')
  assert clock.now - start == pytest.approx(5)


def test_after_a_failure_here_a_published_stop_explains_it():
  _, clock, (zero, one, _) = _views()

  def one_stops():
    if clock.now > 101:
      one.publish(Stop(1, INTERRUPTED, 130))

  assert _verdict(zero, clock, one_stops) == Stop(1, INTERRUPTED, 130)
  assert clock.now < 103


_END_JOB = textwrap.dedent('''
    import threading, time
    from sge_jax.distributed import watchdog as job_watchdog
    from sge_jax.distributed.watchdog import PeerView, Stop

    class Store:
      def key_value_set(self, key, value, allow_overwrite=False):
        print('set', key, value, flush=True)
      def key_value_dir_get(self, prefix):
        return []

    # Process 0 of 2: it waits (up to --peer_timeout) for process 1 to leave.
    job_watchdog._view = PeerView(Store(), 0, 2)
    job_watchdog._peer_timeout = 1.0
    def watchdog():
      time.sleep(0.2)
      job_watchdog.end_job('second line', 9, Stop(1, 'error', 9))
    threading.Thread(target=watchdog, daemon=True).start()
    print('output before', flush=True)
    job_watchdog.end_job('the one line', 2, Stop(0, 'error', 2, 'E: x'),
                         details='details\\n')
''')


def test_the_first_of_two_threads_ends_the_process_with_one_line():
  finished = subprocess.run([sys.executable, '-c', _END_JOB],
                            capture_output=True, text=True, timeout=60)
  assert finished.returncode == 2
  assert finished.stdout == (
      'output before\n'
      'set sge_jax/stopped/0 {"origin": 0, "kind": "error", "status": 2, '
      '"what": "E: x"}\n')
  assert finished.stderr == 'details\nthe one line\n'
