"""One run per workdir: an exclusive lock on ``<workdir>/.lock`` held for a whole run.

Usage::

  with hold_workdir_lock(workdir, command='python launch.py --config=...'):
    ...  # train, encode, evaluate: nothing else can write this workdir now

How it works and what it guarantees:

* The lock is ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``<workdir>/.lock``: taken
  at once or refused at once (:class:`WorkdirBusyError`, one line naming the
  holder's PID, host, start time and command). It never waits.
* The kernel releases a flock when the last descriptor of the open file goes
  away, so the lock of a run that crashed or was SIGKILLed is free at once; the
  next run takes it over (and finds the dead run's record in
  :attr:`WorkdirLock.previous_record`). A lock file that merely records a PID
  that no longer exists is therefore never in the way.
* The descriptor is close-on-exec, and children *forked* without exec (e.g.
  multiprocessing workers) close their copy right after the fork, so a
  leftover child cannot keep a killed run's workdir locked. If the lock is
  held anyway while its recorded PID is gone from this host (a process that got
  the descriptor some other way, or a process in another PID namespace), the
  message says so and names ``fuser -v <workdir>/.lock`` to find it.
* The lock file holds the holder's record as JSON: ``pid``, ``host``,
  ``started`` (UTC, ISO 8601) and ``command``. Releasing clears that record and
  unlocks; the (empty) ``.lock`` file stays. It is never deleted: deleting a
  lock file lets two processes lock two different files of the same name.
  Nothing else in the workdir is touched, but a missing workdir is created.
* Two processes racing for the lock: exactly one wins; the path is checked to
  still name the locked file afterwards, so a ``.lock`` deleted by hand while
  held cannot give two winners either.
* Re-entrant per process: taking the lock of a workdir this process already
  holds (nested ``with`` blocks, from any thread) succeeds at once and yields
  the same :class:`WorkdirLock`; the lock is released when the outermost block
  exits. Two runs in one process therefore are not kept apart.

NFS and other network filesystems: Linux emulates flock on NFS with POSIX
byte-range locks, which work across hosts only when the server supports locking
(NFSv4, or NFSv3 with lockd) and the share is not mounted with ``nolock``
(then the lock is local to each host and two hosts can both hold it). After a
client crash the server frees the lock only when the client's lease expires
(about 90 s for NFSv4). Whether the recorded PID is alive can only be checked
on the holder's host. Filesystems without lock support fail with a
:class:`WorkdirError` saying so: use a workdir on a local disk there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import fcntl
import json
import os
import pathlib
import shlex
import socket
import sys
import threading
import time
from typing import Any, Iterator, Optional

from sge_jax.errors import WorkdirBusyError, WorkdirError

LOCK_FILE = '.lock'

# Largest record read back; a record is about 200 bytes plus the command.
_MAX_RECORD_BYTES = 1 << 16


@dataclasses.dataclass(frozen=True)
class WorkdirLock:
  """A held workdir lock.

  Attributes:
    workdir: the locked directory.
    path: the lock file, ``<workdir>/.lock``.
    record: what the lock file says about this holder (pid, host, started,
      command).
    previous_record: the record a run that ended without releasing left in the
      lock file (it was killed or crashed), or None.
  """
  workdir: pathlib.Path
  path: pathlib.Path
  record: dict[str, Any]
  previous_record: Optional[dict[str, Any]]


@dataclasses.dataclass
class _Held:
  fd: int
  depth: int
  lock: WorkdirLock


# (st_dev, st_ino) of a lock file -> this process's hold on it.
_held: dict[tuple[int, int], _Held] = {}
_registry_lock = threading.Lock()


def _forget_locks_in_forked_child() -> None:
  """After fork: the child closes its copies, so only the parent holds the lock.

  (Only closing: flock(LOCK_UN) here would unlock the parent's lock too.)
  """
  global _registry_lock
  for held in _held.values():
    try:
      os.close(held.fd)
    except OSError:
      pass
  _held.clear()
  _registry_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_locks_in_forked_child)


@contextlib.contextmanager
def hold_workdir_lock(workdir: str | os.PathLike[str],
                      command: Optional[str] = None) -> Iterator[WorkdirLock]:
  """Holds the exclusive lock of ``workdir`` for the duration of the block.

  Args:
    workdir: the run directory; created if missing.
    command: what the run is, for the message another run gets (default: this
      process's command line).

  Yields:
    The :class:`WorkdirLock`.

  Raises:
    WorkdirBusyError: another process holds the lock.
    WorkdirError: the workdir is a file, is not writable, or its filesystem
      does not support locks.
  """
  workdir = pathlib.Path(workdir)
  if command is None:
    command = shlex.join(sys.argv) if sys.argv and sys.argv[0] else sys.executable
  with _registry_lock:
    held = _acquire(workdir, command)
    held.depth += 1
  try:
    yield held.lock
  finally:
    with _registry_lock:
      held.depth -= 1
      if held.depth == 0:
        _release(held)


def read_lock_record(workdir: str | os.PathLike[str]) -> Optional[dict[str, Any]]:
  """The record in ``<workdir>/.lock`` (held, or left by a dead run), or None."""
  try:
    fd = os.open(pathlib.Path(workdir) / LOCK_FILE,
                 os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
  except OSError:
    return None
  try:
    return _read_record(fd)
  finally:
    os.close(fd)


# ------------------------------------------------------------------ acquiring


def _acquire(workdir: pathlib.Path, command: str) -> _Held:
  _prepare_workdir(workdir)
  path = workdir / LOCK_FILE
  for _ in range(10):
    fd = _open_lock_file(path, workdir)
    try:
      status = os.fstat(fd)
      key = (status.st_dev, status.st_ino)
      if key in _held:  # this process holds it already: re-entrant
        os.close(fd)
        return _held[key]
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        raise WorkdirBusyError(_busy_message(workdir, path, _read_record(
            fd, retries=5))) from None
      except OSError as error:
        if error.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS,
                           errno.EINVAL):
          raise WorkdirError(
              f'Workdir {workdir} cannot be locked: its filesystem does not '
              f'support file locks ({error.strerror}). Use a workdir on a local '
              'disk.') from error
        raise
      if _names_file(path, key):
        return _take(fd, key, workdir, path, command)
      # Deleted or replaced between open() and flock(): lock the new file.
      fcntl.flock(fd, fcntl.LOCK_UN)
      os.close(fd)
    except BaseException:
      with contextlib.suppress(OSError):
        os.close(fd)
      raise
  raise WorkdirError(f'Cannot lock {path}: the file keeps being replaced; '
                     'something other than sge-jax is deleting it.')


def _prepare_workdir(workdir: pathlib.Path) -> None:
  try:
    is_file = workdir.exists() and not workdir.is_dir()
  except OSError as error:  # a parent folder cannot be searched
    raise _not_writable(workdir, error) from error
  if is_file:
    raise WorkdirError(
        f'Workdir {workdir} is a file, not a directory. Choose another workdir '
        'or move the file away.')
  try:
    workdir.mkdir(parents=True, exist_ok=True)
  except (FileExistsError, NotADirectoryError) as error:
    raise WorkdirError(
        f'Workdir {workdir} cannot be created: {error.filename} is a file, not '
        'a directory. Choose another workdir.') from error
  except OSError as error:
    raise _not_writable(workdir, error) from error


def _open_lock_file(path: pathlib.Path, workdir: pathlib.Path) -> int:
  try:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                   0o644)
  except OSError as error:
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
      raise _not_writable(workdir, error) from error
    if error.errno in (errno.ELOOP, errno.EISDIR):
      what = 'symbolic link' if error.errno == errno.ELOOP else 'directory'
      raise WorkdirError(
          f'{path} is a {what}, not a lock file: remove it (sge-jax did not '
          'make it).') from error
    raise WorkdirError(f'Cannot open the lock file {path}: {error.strerror}.'
                       ) from error


def _not_writable(workdir: pathlib.Path, error: OSError) -> WorkdirError:
  reason = error.strerror or str(error)
  if error.filename and pathlib.Path(error.filename) != workdir:
    reason += f': {error.filename}'
  return WorkdirError(
      f'Workdir {workdir} is not writable ({reason}): a run writes its '
      'lock, checkpoints and results there. Choose a writable workdir or fix '
      'its permissions.')


def _names_file(path: pathlib.Path, key: tuple[int, int]) -> bool:
  try:
    status = os.stat(path, follow_symlinks=False)
  except FileNotFoundError:
    return False
  return (status.st_dev, status.st_ino) == key


def _take(fd: int, key: tuple[int, int], workdir: pathlib.Path,
          path: pathlib.Path, command: str) -> _Held:
  previous = _read_record(fd)
  record = {
      'pid': os.getpid(),
      'host': socket.gethostname(),
      'started': datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec='seconds'),
      'command': command,
  }
  data = (json.dumps(record) + '\n').encode()
  try:
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
  except OSError as error:
    raise _not_writable(workdir, error) from error
  held = _Held(fd=fd, depth=0, lock=WorkdirLock(
      workdir=workdir, path=path, record=record, previous_record=previous))
  _held[key] = held
  return held


def _release(held: _Held) -> None:
  """Clears this holder's record (only its own), unlocks and closes."""
  for key, value in list(_held.items()):
    if value is held:
      del _held[key]
  try:
    current = _read_record(held.fd)
    if current is not None and current.get('pid') == held.lock.record['pid']:
      os.ftruncate(held.fd, 0)
  except OSError:
    pass  # the record is advisory; unlocking is what matters
  finally:
    try:
      fcntl.flock(held.fd, fcntl.LOCK_UN)
    finally:
      os.close(held.fd)


# ---------------------------------------------------------------- the record


def _read_record(fd: int, retries: int = 0) -> Optional[dict[str, Any]]:
  """The JSON record, or None when empty or unreadable.

  With ``retries``, an empty or half-written record (the holder may be writing
  it right now) is read again a few times, 20 ms apart.
  """
  for attempt in range(retries + 1):
    try:
      record = json.loads(os.pread(fd, _MAX_RECORD_BYTES, 0).decode())
      if isinstance(record, dict):
        return record
    except (OSError, ValueError):
      pass
    if attempt < retries:
      time.sleep(0.02)
  return None


def _busy_message(workdir: pathlib.Path, path: pathlib.Path,
                  record: Optional[dict[str, Any]]) -> str:
  find = f'find it with `fuser -v {path}` and stop it'
  if record is None:
    return (f'Workdir {workdir} is in use by another run (its lock file {path} '
            f'is locked but holds no record). Wait for that run to finish or '
            f'stop it: {find}.')
  pid, host = record.get('pid'), record.get('host')
  started, command = record.get('started'), record.get('command')
  holder = (f'PID {pid} on host {host}, started {started}, command: '
            f'{_one_line(str(command))}')
  this_host = host == socket.gethostname()
  if this_host and isinstance(pid, int) and not _pid_exists(pid):
    return (f'Workdir {workdir} is locked by a run that is no longer running '
            f'({holder}), yet another process still holds {path} open (a '
            f'process it started, or one in another PID namespace): {find}, '
            'then start again.')
  stop = f'kill {pid}' + ('' if this_host else f' on {host}')
  return (f'Workdir {workdir} is in use by another run: {holder}. Wait for it '
          f'to finish or stop it ({stop}); if that process is gone, the lock '
          f'is freed automatically, and if this error persists another '
          f'process holds {path} open: {find}.')


def _pid_exists(pid: int) -> bool:
  if pid <= 0:
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # exists, owned by another user
  except OSError:
    return True  # cannot tell: do not claim it is gone
  return True


def _one_line(text: str) -> str:
  text = ' '.join(text.split())
  return text if len(text) <= 300 else text[:297] + '...'
