"""One run per workdir: an exclusive lock on the workdir directory itself.

``with hold_workdir_lock(workdir): ...`` holds ``flock(LOCK_EX | LOCK_NB)`` on
the directory, taken or refused at once (:class:`WorkdirBusyError` names the
holder's PID, host, start time and command, from its record ``.lock``, written
after locking and emptied on release). A directory cannot be unlinked or
replaced under its holder, so removing or replacing ``.lock`` lets no second run
in. The kernel frees the lock with the holder's last descriptor (a killed run's
at once); descriptors are close-on-exec and closed in forked children. Nested
blocks in one process share the lock. A workdir the lock created is removed on
release if nothing but ``.lock`` was written there. Where directories cannot be
locked (NFSv4), ``.lock`` is locked instead, and deleting it while held lets a
second run in; NFS mounted ``nolock`` locks per host only.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import pathlib
import shlex
import socket
import sys
import time
from typing import Iterator, Optional

from sge_jax.errors import WorkdirBusyError, WorkdirError

LOCK_FILE = '.lock'
_held: dict[tuple[int, int], list] = {}  # (dev, inode) -> [fds, depth, created]


def _close_in_forked_child() -> None:
  for fds, _, _ in _held.values():  # close only: LOCK_UN would free the parent's
    for fd in fds:
      os.close(fd)
  _held.clear()


os.register_at_fork(after_in_child=_close_in_forked_child)


@contextlib.contextmanager
def hold_workdir_lock(workdir: str | os.PathLike[str],
                      command: Optional[str] = None) -> Iterator[None]:
  """Holds the lock of ``workdir`` (created if missing) during the block, or
  raises WorkdirBusyError (held elsewhere) or WorkdirError (a file, not
  writable, no locks). ``command`` (default: this process's) is recorded."""
  workdir = pathlib.Path(workdir)
  key = _acquire(workdir, command or shlex.join(sys.argv or [sys.executable]))
  try:
    yield
  finally:
    _held[key][1] -= 1
    if _held[key][1] == 0:
      fds, _, created = _held.pop(key)
      _release(workdir, fds, created, True)


def _acquire(workdir: pathlib.Path, command: str) -> tuple[int, int]:
  created = locked = False
  fds = []
  try:
    with contextlib.suppress(FileExistsError):
      workdir.mkdir(parents=True)
      created = True
    fds.append(os.open(workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
    status = os.fstat(fds[0])
    key = (status.st_dev, status.st_ino)
    if key in _held:
      os.close(fds.pop())
      _held[key][1] += 1
      return key
    fds.append(os.open(workdir / LOCK_FILE, os.O_RDWR | os.O_CREAT
                       | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644))
    _lock(workdir, *fds)
    locked = True
    if not os.path.samestat(status, os.stat(workdir)):  # moved while locking
      raise WorkdirError(f'Workdir {workdir} was moved away while being locked; '
                         'run the same command again.')
    started = datetime.datetime.now().astimezone().isoformat(timespec='seconds')
    record = {'pid': os.getpid(), 'host': socket.gethostname(),
              'started': started, 'command': command}
    os.ftruncate(fds[1], 0)
    os.pwrite(fds[1], (json.dumps(record) + '\n').encode(), 0)
  except BaseException as error:
    _release(workdir, fds, created and not isinstance(error, WorkdirBusyError),
             locked)
    if isinstance(error, OSError):
      raise WorkdirError(
          f'Workdir {workdir} cannot be used ({error.strerror}: '
          f'{error.filename or workdir / LOCK_FILE}): a run writes its lock, '
          'checkpoints and results there. Choose a writable directory, or fix '
          'that path.') from error
    raise
  _held[key] = [fds, 1, created]
  return key


def _lock(workdir: pathlib.Path, directory: int, record: int) -> None:
  try:
    try:
      fcntl.flock(directory, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise
    except OSError:  # directories cannot be locked here: lock the record
      fcntl.flock(record, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    raise WorkdirBusyError(_busy_message(workdir, record)) from None
  except OSError as error:
    raise WorkdirError(
        f'Workdir {workdir} cannot be locked: its filesystem does not support '
        f'locks ({error.strerror}). Use a workdir on a local disk.') from error


def _release(workdir: pathlib.Path, fds: list[int], created: bool,
             locked: bool) -> None:
  """Empties the record, removes a created workdir holding nothing else."""
  with contextlib.suppress(OSError):
    if locked:
      os.ftruncate(fds[1], 0)
    if created and os.listdir(workdir) in ([], [LOCK_FILE]):
      with contextlib.suppress(FileNotFoundError):
        os.unlink(workdir / LOCK_FILE)
      os.rmdir(workdir)
  for fd in fds:
    os.close(fd)  # the last descriptor closed unlocks


def _busy_message(workdir: pathlib.Path, record_fd: int) -> str:
  record = {}
  for _ in range(5):  # the holder may be writing its record right now
    with contextlib.suppress(OSError, ValueError):
      record = json.loads(os.pread(record_fd, 1 << 16, 0))
      break
    time.sleep(0.02)
  find = f'`fuser -v {workdir}` shows what holds it'
  if not isinstance(record, dict) or 'pid' not in record:
    return (f'Workdir {workdir} is in use by another run (its record '
            f'{workdir / LOCK_FILE} was removed or replaced): {find}.')
  pid, host = record['pid'], record.get('host')
  command = ' '.join(str(record.get('command')).split())[:300]
  return (f'Workdir {workdir} is in use by another run: PID {pid} on host '
          f'{host}, started {record.get("started")}, command: {command}. Wait '
          f'for it to finish or stop it (kill {pid} on {host}); the lock of a '
          f'stopped run is freed at once (if it persists, {find}).')
