"""One run per workdir (sge_jax.workdir.lock), checked with real processes."""

import errno
import fcntl
import json
import os
import pathlib
import select
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest

import sge_jax
from sge_jax.workdir import lock as workdir_lock
from sge_jax.workdir.lock import (LOCK_FILE, WorkdirBusyError, WorkdirError,
                                  hold_workdir_lock)

_ROOT = pathlib.Path(sge_jax.__file__).resolve().parents[1]

# argv: workdir, mode, [argument]. Prints one line once it knows its outcome.
_CHILD = r'''
import os, sys, time
from sge_jax.workdir.lock import WorkdirBusyError, hold_workdir_lock

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
elif mode == 'hold-and-exec':  # posix_spawn keeps every fd not close-on-exec
  with hold_workdir_lock(workdir, command='child-run'):
    grandchild = os.posix_spawn(
        sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)'],
        os.environ)
    print(f'ready {grandchild}', flush=True)
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


def _probe(spawn, workdir):
  """'won' or 'busy': whether another process can take the lock right now."""
  child = spawn(workdir, 'try')
  line = _line(child)
  child.wait()
  return line


def _kill(pid):
  try:
    os.kill(pid, signal.SIGKILL)
  except ProcessLookupError:
    pass


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
  assert f'PID {holder.pid} on host {socket.gethostname()}, started 2' in message
  assert 'command: child-run --seed=1' in message
  assert f'kill {holder.pid}' in message
  assert json.loads((tmp_path / LOCK_FILE).read_text())['pid'] == holder.pid

  holder.send_signal(signal.SIGKILL)
  holder.wait()
  with hold_workdir_lock(tmp_path, command='parent-run'):
    record = json.loads((tmp_path / LOCK_FILE).read_text())
    assert record['pid'] == os.getpid() and record['command'] == 'parent-run'


@pytest.mark.parametrize('tamper', ['remove', 'replace'])
def test_removing_or_replacing_the_record_while_held_lets_no_second_run_in(
    tmp_path, spawn, tamper):
  workdir = tmp_path / 'run'
  holder = spawn(workdir, 'hold')
  assert _line(holder) == 'ready'
  if tamper == 'remove':
    (workdir / LOCK_FILE).unlink()
  else:
    (tmp_path / 'other').write_text('{}')
    os.replace(tmp_path / 'other', workdir / LOCK_FILE)
  assert _probe(spawn, workdir) == 'busy'
  assert _probe(spawn, workdir) == 'busy'   # the first probe's record either
  with pytest.raises(WorkdirBusyError) as error:
    with hold_workdir_lock(workdir, command='x'):
      pass
  assert str(error.value) == (
      f'Workdir {workdir} is in use by another run (its record '
      f'{workdir / LOCK_FILE} was removed or replaced): `fuser -v {workdir}` '
      'shows what holds it.')
  assert holder.poll() is None


def test_stale_record_of_a_killed_run_is_taken_over(tmp_path):
  stale = {'pid': 2 ** 22 + 1, 'host': socket.gethostname(),
           'started': '2020-01-01T00:00:00+00:00', 'command': 'old run'}
  (tmp_path / LOCK_FILE).write_text(json.dumps(stale))
  with hold_workdir_lock(tmp_path, command='new run'):
    record = json.loads((tmp_path / LOCK_FILE).read_text())
    assert record['pid'] == os.getpid() and record['command'] == 'new run'


@pytest.mark.parametrize('mode', ['hold-and-fork', 'hold-and-exec'])
def test_children_do_not_keep_a_killed_runs_lock(tmp_path, spawn, mode):
  holder = spawn(tmp_path, mode)
  grandchild = int(_line(holder).split()[1])
  try:
    assert _probe(spawn, tmp_path) == 'busy'
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert _probe(spawn, tmp_path) == 'won'  # the grandchild still runs
    os.kill(grandchild, 0)
  finally:
    _kill(grandchild)


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
  with hold_workdir_lock(tmp_path, command='outer'):
    with hold_workdir_lock(tmp_path, command='inner'):
      assert json.loads((tmp_path / LOCK_FILE).read_text())['command'] == 'outer'
    assert _probe(spawn, tmp_path) == 'busy'  # the inner exit kept it
  assert _probe(spawn, tmp_path) == 'won'


def _descriptors_of(*paths):
  """This process's descriptors open on ``paths``."""
  found = []
  for fd in os.listdir('/proc/self/fd'):
    try:
      if os.readlink(f'/proc/self/fd/{fd}') in map(str, paths):
        found.append(int(fd))
    except OSError:
      pass   # the descriptor of the listing itself
  return found


def test_descriptors_are_close_on_exec(tmp_path):
  with hold_workdir_lock(tmp_path, command='x'):
    held = _descriptors_of(tmp_path, tmp_path / LOCK_FILE)
    assert len(held) == 2
    for fd in held:
      assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
  assert not _descriptors_of(tmp_path, tmp_path / LOCK_FILE)


def test_release_empties_only_its_record(tmp_path):
  (tmp_path / 'checkpoints').mkdir()
  (tmp_path / 'config.json').write_text('{}')
  with hold_workdir_lock(tmp_path, command='python launch.py --x=1'):
    record = json.loads((tmp_path / LOCK_FILE).read_text())
    assert set(record) == {'pid', 'host', 'started', 'command'}
    assert record['host'] == socket.gethostname()
    assert record['command'] == 'python launch.py --x=1'
  assert (tmp_path / LOCK_FILE).read_text() == ''
  assert sorted(p.name for p in tmp_path.iterdir()) == [
      LOCK_FILE, 'checkpoints', 'config.json']


def test_a_created_workdir_is_removed_again_only_if_nothing_was_written(
    tmp_path):
  with pytest.raises(ValueError):
    with hold_workdir_lock(tmp_path / 'a' / 'b', command='x'):
      assert (tmp_path / 'a' / 'b' / LOCK_FILE).exists()
      raise ValueError('refused while loading the data')
  assert not (tmp_path / 'a' / 'b').exists()
  with hold_workdir_lock(tmp_path / 'a' / 'b', command='x'):
    (tmp_path / 'a' / 'b' / 'config.json').write_text('{}')
  assert (tmp_path / 'a' / 'b' / 'config.json').exists()
  # A workdir that existed is never removed, even one holding only .lock.
  (tmp_path / 'empty').mkdir()
  with hold_workdir_lock(tmp_path / 'empty', command='x'):
    pass
  assert (tmp_path / 'empty').is_dir()


def test_default_command_is_the_command_line(tmp_path):
  with hold_workdir_lock(tmp_path):
    assert json.loads((tmp_path / LOCK_FILE).read_text())['command']


# --------------------------------------------------------------- bad workdirs


def test_workdir_that_is_a_file(tmp_path):
  path = tmp_path / 'run'
  path.write_text('')
  for workdir in (path, path / 'seed_0'):
    with pytest.raises(WorkdirError, match='Not a directory') as error:
      with hold_workdir_lock(workdir, command='x'):
        pass
    assert str(workdir) in str(error.value)
  assert path.read_text() == ''


def test_read_only_workdir(tmp_path, monkeypatch):
  real_open = os.open

  def read_only_open(path, flags, *args, **kwargs):
    if flags & os.O_CREAT:
      raise OSError(errno.EROFS, 'Read-only file system', str(path))
    return real_open(path, flags, *args, **kwargs)

  monkeypatch.setattr(workdir_lock.os, 'open', read_only_open)
  with pytest.raises(WorkdirError) as error:
    with hold_workdir_lock(tmp_path, command='x'):
      pass
  assert str(error.value).startswith(
      f'Workdir {tmp_path} cannot be used (Read-only file system: '
      f'{tmp_path / LOCK_FILE})')
  assert not isinstance(error.value, WorkdirBusyError)


def test_record_that_cannot_be_written(tmp_path, monkeypatch):
  def disk_full(fd, data, offset):
    raise OSError(errno.ENOSPC, 'No space left on device')
  monkeypatch.setattr(workdir_lock.os, 'pwrite', disk_full)
  with pytest.raises(WorkdirError, match='No space left on device'):
    with hold_workdir_lock(tmp_path / 'new', command='x'):
      pass
  assert not (tmp_path / 'new').exists()
  monkeypatch.undo()
  with hold_workdir_lock(tmp_path / 'new', command='x'):  # not left locked
    pass


@pytest.mark.skipif(os.geteuid() == 0, reason='root writes read-only folders')
def test_read_only_workdir_by_permissions(tmp_path):
  tmp_path.chmod(0o555)
  try:
    with pytest.raises(WorkdirError, match=f'Workdir {tmp_path} cannot be used'):
      with hold_workdir_lock(tmp_path, command='x'):
        pass
  finally:
    tmp_path.chmod(0o755)


def test_filesystem_without_locks(tmp_path, monkeypatch):
  def no_locks(fd, operation):
    raise OSError(errno.ENOLCK, 'No locks available')
  monkeypatch.setattr(workdir_lock.fcntl, 'flock', no_locks)
  with pytest.raises(WorkdirError, match='does not support locks'):
    with hold_workdir_lock(tmp_path / 'run', command='x'):
      pass
  assert not (tmp_path / 'run').exists()


def test_where_directories_cannot_be_locked_the_record_is(tmp_path, monkeypatch):
  real_flock = fcntl.flock

  def files_only(fd, operation):  # as NFSv4: EBADF for a directory
    if stat.S_ISDIR(os.fstat(fd).st_mode):
      raise OSError(errno.EBADF, 'Bad file descriptor')
    return real_flock(fd, operation)

  monkeypatch.setattr(workdir_lock.fcntl, 'flock', files_only)
  with hold_workdir_lock(tmp_path, command='x'):
    fd = os.open(tmp_path / LOCK_FILE, os.O_RDWR)
    try:
      with pytest.raises(BlockingIOError):
        real_flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
      os.close(fd)


def test_record_that_is_a_symlink_is_refused(tmp_path):
  (tmp_path / 'elsewhere').write_text('keep')
  (tmp_path / LOCK_FILE).symlink_to(tmp_path / 'elsewhere')
  with pytest.raises(WorkdirError, match='symbolic links'):
    with hold_workdir_lock(tmp_path, command='x'):
      pass
  assert (tmp_path / 'elsewhere').read_text() == 'keep'


def test_lock_is_fast(tmp_path):
  start = time.perf_counter()
  for _ in range(100):
    with hold_workdir_lock(tmp_path, command='x'):
      pass
  assert time.perf_counter() - start < 1.0
