"""One run per workdir (sge_jax.workdir_lock), checked with real processes."""

import errno
import json
import os
import pathlib
import select
import signal
import socket
import subprocess
import sys
import time

import pytest

import sge_jax
from sge_jax import workdir_lock
from sge_jax.workdir_lock import (LOCK_FILE, WorkdirBusyError, WorkdirError,
                                  hold_workdir_lock, read_lock_record)

_ROOT = pathlib.Path(sge_jax.__file__).resolve().parents[1]

# argv: workdir, mode, [argument]. Prints one line once it knows its outcome.
_CHILD = r'''
import fcntl, json, os, socket, sys, time
from sge_jax.workdir_lock import WorkdirBusyError, hold_workdir_lock

workdir, mode = sys.argv[1], sys.argv[2]
argument = sys.argv[3] if len(sys.argv) > 3 else None


def wait_for(path):
  while not os.path.exists(path):
    time.sleep(0.005)


if mode == 'hold':
  with hold_workdir_lock(workdir, command='child-run --seed=1'):
    print('ready', flush=True)
    time.sleep(60)
elif mode == 'hold-and-fork':
  with hold_workdir_lock(workdir, command='child-run'):
    grandchild = os.fork()
    if grandchild == 0:
      time.sleep(60)
      os._exit(0)
    print(f'ready {grandchild}', flush=True)
    time.sleep(60)
elif mode == 'raw-flock':  # a lock held by a process other than the recorded one
  fd = os.open(os.path.join(workdir, '.lock'), os.O_RDWR | os.O_CREAT)
  fcntl.flock(fd, fcntl.LOCK_EX)
  os.write(fd, json.dumps({'pid': int(argument), 'host': socket.gethostname(),
                           'started': 'then', 'command': 'gone'}).encode())
  print('ready', flush=True)
  time.sleep(60)
elif mode in ('try', 'race'):
  if mode == 'race':
    print('waiting', flush=True)
    wait_for(argument + '.go')
  try:
    with hold_workdir_lock(workdir, command='child-try'):
      print('won', flush=True)
      if mode == 'race':
        wait_for(argument + '.done')
  except WorkdirBusyError:
    print('busy', flush=True)
'''


@pytest.fixture
def spawn():
  """Starts child processes; kills those still running at the end."""
  children = []

  def start(workdir, mode, argument=None):
    args = [sys.executable, '-c', _CHILD, str(workdir), mode]
    if argument is not None:
      args.append(str(argument))
    child = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=_ROOT, env={**os.environ, 'PYTHONPATH': str(_ROOT)})
    children.append(child)
    return child

  yield start
  for child in children:
    if child.poll() is None:
      child.kill()
    child.wait()
    child.stdout.close()
    child.stderr.close()


def _line(child, timeout=10.0):
  ready, _, _ = select.select([child.stdout], [], [], timeout)
  assert ready, f'child {child.pid} printed nothing in {timeout} s'
  line = child.stdout.readline().strip()
  if not line:
    child.wait()
    pytest.fail(f'child {child.pid} exited: {child.stderr.read()}')
  return line


def _dead_pid():
  """A PID that existed a moment ago and no longer does."""
  child = subprocess.Popen([sys.executable, '-c', ''])
  child.wait()
  return child.pid


def _probe(spawn, workdir):
  """'won' or 'busy': whether another process can take the lock right now."""
  child = spawn(workdir, 'try')
  line = _line(child)
  child.wait()
  return line


# ------------------------------------------------------------ across processes


def test_held_lock_refuses_a_second_run_then_dies_with_its_holder(tmp_path,
                                                                  spawn):
  holder = spawn(tmp_path, 'hold')
  assert _line(holder) == 'ready'

  with pytest.raises(WorkdirBusyError) as error:
    with hold_workdir_lock(tmp_path, command='parent-run'):
      pass
  message = str(error.value)
  assert '\n' not in message
  assert f'Workdir {tmp_path} is in use by another run' in message
  assert f'PID {holder.pid} on host {socket.gethostname()}' in message
  assert 'command: child-run --seed=1' in message
  assert f'kill {holder.pid}' in message and 'if that process is gone' in message
  assert read_lock_record(tmp_path)['pid'] == holder.pid  # untouched

  holder.send_signal(signal.SIGKILL)
  holder.wait()
  with hold_workdir_lock(tmp_path, command='parent-run') as lock:
    assert lock.previous_record['pid'] == holder.pid  # the killed run's record
    assert lock.record['pid'] == os.getpid()
    assert read_lock_record(tmp_path) == lock.record


def test_stale_record_of_a_dead_pid_is_taken_over(tmp_path):
  stale = {'pid': _dead_pid(), 'host': socket.gethostname(),
           'started': '2020-01-01T00:00:00+00:00', 'command': 'old run'}
  (tmp_path / LOCK_FILE).write_text(json.dumps(stale))
  with hold_workdir_lock(tmp_path, command='new run') as lock:
    assert lock.previous_record == stale
    record = json.loads((tmp_path / LOCK_FILE).read_text())
    assert record['pid'] == os.getpid() and record['command'] == 'new run'


def test_lock_held_although_the_recorded_pid_is_gone(tmp_path, spawn):
  holder = spawn(tmp_path, 'raw-flock', _dead_pid())
  assert _line(holder) == 'ready'
  with pytest.raises(WorkdirBusyError) as error:
    with hold_workdir_lock(tmp_path, command='parent-run'):
      pass
  message = str(error.value)
  assert 'no longer running' in message
  assert f'fuser -v {tmp_path / LOCK_FILE}' in message


def test_forked_child_does_not_keep_a_killed_runs_lock(tmp_path, spawn):
  holder = spawn(tmp_path, 'hold-and-fork')
  grandchild = int(_line(holder).split()[1])
  try:
    assert _probe(spawn, tmp_path) == 'busy'
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert _probe(spawn, tmp_path) == 'won'  # the grandchild still runs
    os.kill(grandchild, 0)
  finally:
    try:
      os.kill(grandchild, signal.SIGKILL)
    except ProcessLookupError:
      pass


def test_racing_processes_one_wins(tmp_path, spawn):
  flag = tmp_path / 'flag'
  workdir = tmp_path / 'run'
  children = [spawn(workdir, 'race', flag) for _ in range(4)]
  for child in children:
    assert _line(child) == 'waiting'
  pathlib.Path(f'{flag}.go').touch()
  outcomes = sorted(_line(child) for child in children)
  pathlib.Path(f'{flag}.done').touch()
  assert outcomes == ['busy', 'busy', 'busy', 'won']
  for child in children:
    assert child.wait(timeout=10) == 0


# ------------------------------------------------------------ within a process


def test_reentrant_in_one_process_released_by_the_outermost(tmp_path, spawn):
  with hold_workdir_lock(tmp_path, command='outer') as outer:
    with hold_workdir_lock(tmp_path, command='inner') as inner:
      assert inner is outer and inner.record['command'] == 'outer'
    assert _probe(spawn, tmp_path) == 'busy'  # the inner exit kept it
  assert _probe(spawn, tmp_path) == 'won'


def test_release_clears_only_its_record(tmp_path):
  (tmp_path / 'checkpoints').mkdir()
  (tmp_path / 'config.json').write_text('{}')
  with hold_workdir_lock(tmp_path, command='python launch.py --x=1') as lock:
    record = json.loads((tmp_path / LOCK_FILE).read_text())
    assert record == lock.record
    assert set(record) == {'pid', 'host', 'started', 'command'}
    assert record['host'] == socket.gethostname()
    assert record['command'] == 'python launch.py --x=1'
  assert (tmp_path / LOCK_FILE).read_text() == ''  # kept, record cleared
  assert sorted(p.name for p in tmp_path.iterdir()) == [
      LOCK_FILE, 'checkpoints', 'config.json']
  assert read_lock_record(tmp_path) is None


def test_missing_workdir_is_created(tmp_path):
  with hold_workdir_lock(tmp_path / 'a' / 'b', command='x') as lock:
    assert lock.path == tmp_path / 'a' / 'b' / LOCK_FILE
  assert (tmp_path / 'a' / 'b').is_dir()


def test_default_command_is_the_command_line(tmp_path):
  with hold_workdir_lock(tmp_path) as lock:
    assert lock.record['command']


# --------------------------------------------------------------- bad workdirs


def test_workdir_that_is_a_file(tmp_path):
  path = tmp_path / 'run'
  path.write_text('')
  with pytest.raises(WorkdirError, match=f'Workdir {path} is a file'):
    with hold_workdir_lock(path, command='x'):
      pass
  with pytest.raises(WorkdirError, match='is a file, not a directory'):
    with hold_workdir_lock(path / 'seed_0', command='x'):
      pass


def test_read_only_workdir(tmp_path, monkeypatch):
  def read_only_open(path, *args, **kwargs):
    raise OSError(errno.EROFS, 'Read-only file system', str(path))
  monkeypatch.setattr(workdir_lock.os, 'open', read_only_open)
  with pytest.raises(WorkdirError) as error:
    with hold_workdir_lock(tmp_path, command='x'):
      pass
  assert str(error.value).startswith(
      f'Workdir {tmp_path} is not writable (Read-only file system: '
      f'{tmp_path / LOCK_FILE})')
  assert not isinstance(error.value, WorkdirBusyError)


@pytest.mark.skipif(os.geteuid() == 0, reason='root writes read-only folders')
def test_read_only_workdir_by_permissions(tmp_path):
  tmp_path.chmod(0o555)
  try:
    with pytest.raises(WorkdirError, match=f'Workdir {tmp_path} is not writable'):
      with hold_workdir_lock(tmp_path, command='x'):
        pass
  finally:
    tmp_path.chmod(0o755)


def test_filesystem_without_locks(tmp_path, monkeypatch):
  def no_locks(fd, operation):
    raise OSError(errno.ENOLCK, 'No locks available')
  monkeypatch.setattr(workdir_lock.fcntl, 'flock', no_locks)
  with pytest.raises(WorkdirError, match='does not support file locks'):
    with hold_workdir_lock(tmp_path, command='x'):
      pass


def test_lock_file_that_is_a_symlink_is_refused(tmp_path):
  (tmp_path / 'elsewhere').write_text('')
  (tmp_path / LOCK_FILE).symlink_to(tmp_path / 'elsewhere')
  with pytest.raises(WorkdirError, match='symbolic link'):
    with hold_workdir_lock(tmp_path, command='x'):
      pass
  assert (tmp_path / 'elsewhere').read_text() == ''


def test_lock_is_fast(tmp_path):
  start = time.perf_counter()
  for _ in range(100):
    with hold_workdir_lock(tmp_path, command='x'):
      pass
  assert time.perf_counter() - start < 1.0
