"""A multi-process job stops as one: when one process stops, every other one
ends within a few seconds, each with one line naming that process and why.

JAX's coordination service (``jax.distributed``) holds a key-value store
shared by the processes of the job; this module keeps three kinds of entries
under ``sge_jax/``:

* ``alive/<i>``: a counter that process i's watchdog advances every
  ``POLL_SECONDS`` (its heartbeat);
* ``stopped/<i>``: why process i stopped (a ``Stop``, as JSON), written once,
  before it exits;
* ``done/<i>``: process i finished its work normally.

``start`` runs a daemon thread in every process, the *watchdog*, that writes
the heartbeat and reads the others' entries. When another process has stopped,
it prints that process's line (``error: process 1 stopped the job: ...``) and
ends this one at once; a process whose counter has stood still for
``--peer_timeout`` seconds (killed, out of memory, host down, frozen) is named
as having stopped answering. A failure on this process ends through
``end_job`` (``sge_jax.cli`` calls it), which writes the ``stopped`` entry
first, so the others learn of it.

Every process of a failed job ends with ``os._exit``: a normal exit would wait
at JAX's shutdown barrier for processes that are gone. Exit statuses follow
the commands' rule: 2 for a user error, 130 for Ctrl-C, 1 for a crash or a lost
process; a process stopped by another exits with that process's status.

Why not JAX's own failure detection: JAX ends every process when one misses
its heartbeats, but by a C++ abort (a stack trace; ``missed_heartbeat_callback``
cannot be set from Python in jaxlib 0.10: the call fails with std::bad_cast).
``sge_jax.distributed.start`` therefore gives JAX a heartbeat timeout longer
than ``--peer_timeout``, so this watchdog acts first. One case it cannot
outrun: when process 0, which hosts the coordination service, is killed, the
other processes lose the service at once and JAX aborts them.

For the same reason process 0 leaves last: its exit takes the coordination
service down, so it waits (at most ``--peer_timeout`` s) until every other
process has stopped, finished or gone silent.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any, Callable, NoReturn, Optional

from sge_jax.errors import PeerStoppedError

_PREFIX = 'sge_jax/'
_ALIVE, _STOPPED, _DONE = 'alive', 'stopped', 'done'

# Seconds between two heartbeats (and two reads of the others' entries).
POLL_SECONDS = 0.5
# Seconds the watchdog waits after it saw another process's stop before it
# ends this one: an error raised on every process together (``stop_together``)
# is then reported by this process's own line, not the watchdog's.
SETTLE_SECONDS = 1.0
# After a failure here: how long the others' heartbeats are watched to tell a
# process that is gone (a failed collective) from processes that are alive
# (then the failure is this process's own).
VERDICT_SECONDS = 5.0
# A process whose heartbeat stood still this long while process 0 waits for the
# others to leave counts as gone (it beats every POLL_SECONDS).
GONE_SECONDS = 6 * POLL_SECONDS
# Longest error text passed to the other processes (characters).
_MAX_WHAT = 500

CRASH_STATUS = 1
RESUME_HINT = ('every checkpoint written so far is kept: run the same command '
               'again in every process to resume')

# How a process stopped (Stop.kind).
ERROR, INTERRUPTED, CRASHED, SILENT = 'error', 'interrupted', 'crashed', 'silent'


@dataclasses.dataclass(frozen=True)
class Stop:
  """Why the job stops.

  Attributes:
    origin: index of the process where it began.
    kind: ERROR (a user error), INTERRUPTED (Ctrl-C), CRASHED (a bug) or
      SILENT (the process stopped answering).
    status: the exit status of every process.
    what: '<type>: <message>' of the error; for SILENT how long it was silent.
  """
  origin: int
  kind: str
  status: int
  what: str = ''

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self))

  @classmethod
  def from_json(cls, text: str) -> Optional['Stop']:
    """The Stop a process published, or None for an unreadable entry."""
    try:
      fields = json.loads(text)
      return cls(int(fields['origin']), str(fields['kind']),
                 int(fields['status']), str(fields.get('what', '')))
    except (ValueError, KeyError, TypeError):
      return None


def one_line(text: str) -> str:
  """``text`` on one line, at most _MAX_WHAT characters."""
  text = ' '.join(str(text).split())
  return text if len(text) <= _MAX_WHAT else text[:_MAX_WHAT - 3] + '...'


def describe(error: BaseException) -> str:
  """'<type>: <message>' of an error, on one line."""
  return one_line(f'{type(error).__name__}: {error}')


def peer_line(stop: Stop, prefix: str = '') -> str:
  """The line a process prints when process ``stop.origin`` stopped the job."""
  who = f'process {stop.origin}'
  if stop.kind == INTERRUPTED:
    return f'{prefix}interrupted: {who} was interrupted (Ctrl-C); {RESUME_HINT}'
  if stop.kind == SILENT:
    return (f'{prefix}error: {who} stopped answering ({stop.what}: killed, out '
            f'of memory, or its host failed); {RESUME_HINT}')
  if stop.kind == CRASHED:
    return (f'{prefix}error: {who} crashed ({stop.what}; its output shows the '
            f'traceback); {RESUME_HINT}')
  return f'{prefix}error: {PeerStoppedError(stop.origin, stop.what)}'


def cause_of(error: BaseException, index: int, status: int) -> Stop:
  """The Stop this process publishes for a user error or Ctrl-C."""
  if isinstance(error, PeerStoppedError):
    return Stop(error.origin, ERROR, status, one_line(error.what))
  if isinstance(error, KeyboardInterrupt):
    return Stop(index, INTERRUPTED, status)
  return Stop(index, ERROR, status, describe(error))


class PeerView:
  """What one process knows of the others, read from the key-value store.

  ``client`` is JAX's distributed runtime client (``key_value_set``,
  ``key_value_dir_get``); ``clock`` gives seconds (monotonic).
  """

  def __init__(self, client: Any, index: int, count: int,
               clock: Callable[[], float] = time.monotonic):
    self._client = client
    self.index = index
    self.count = count
    self._clock = clock
    self._beats = 0
    self._lock = threading.Lock()
    self._counters: dict[int, str] = {}
    started = clock()
    # When each peer's counter last changed (or when watching began).
    self._changed = {peer: started for peer in self.peers}
    self.stops: dict[int, Stop] = {}
    self.done: set[int] = set()

  @property
  def peers(self) -> list[int]:
    return [process for process in range(self.count) if process != self.index]

  def _key(self, kind: str, process: Optional[int] = None) -> str:
    return f'{_PREFIX}{kind}/{self.index if process is None else process}'

  def beat(self) -> None:
    self._beats += 1
    self._client.key_value_set(self._key(_ALIVE), str(self._beats),
                               allow_overwrite=True)

  def publish(self, stop: Stop) -> None:
    self._client.key_value_set(self._key(_STOPPED), stop.to_json())

  def mark_done(self) -> None:
    self._client.key_value_set(self._key(_DONE), '1')

  def poll(self) -> None:
    """Reads every entry once."""
    entries = self._client.key_value_dir_get(_PREFIX)
    now = self._clock()
    with self._lock:
      for key, value in entries:
        kind, _, process = key[len(_PREFIX):].partition('/')
        if not process.isdigit() or int(process) >= self.count:
          continue
        process = int(process)
        if kind == _ALIVE and process != self.index:
          if self._counters.get(process) != value:
            self._counters[process] = value
            self._changed[process] = now
        elif kind == _STOPPED:
          stop = Stop.from_json(value)
          if stop is not None:
            self.stops[process] = stop
        elif kind == _DONE:
          self.done.add(process)

  def counter(self, process: int) -> Optional[str]:
    with self._lock:
      return self._counters.get(process)

  def stop_by_another(self) -> Optional[Stop]:
    """A stop that began on another process (the lowest index when several
    did), or None."""
    with self._lock:
      stops = [stop for stop in self.stops.values()
               if stop.origin != self.index]
    return min(stops, key=lambda stop: stop.origin) if stops else None

  def silent_peers(self, seconds: float) -> list[int]:
    """Processes still at work whose heartbeat stood still over ``seconds``."""
    now = self._clock()
    with self._lock:
      return [peer for peer in self.peers
              if peer not in self.done and peer not in self.stops
              and now - self._changed[peer] > seconds]

  def all_peers_left(self) -> bool:
    """Every other process stopped, finished or went silent (GONE_SECONDS)."""
    silent = set(self.silent_peers(GONE_SECONDS))
    with self._lock:
      return all(peer in self.stops or peer in self.done or peer in silent
                 for peer in self.peers)


def verdict(view: PeerView, seconds: float = VERDICT_SECONDS,
            sleep: Callable[[float], None] = time.sleep) -> Optional[Stop]:
  """After a failure on this process: the stop of another process that
  explains it, or None when every other process is alive.

  Watches the others for up to ``seconds``: returns as soon as one has
  published a stop, or every one has beaten since; a process that has not
  beaten by then is named as silent (a collective fails here at once when a
  process it talks to was killed).
  """
  view.poll()
  start = {peer: view.counter(peer) for peer in view.peers}
  waited = 0.0
  while True:
    stop = view.stop_by_another()
    if stop is not None:
      return stop
    still = [peer for peer in view.peers if peer not in view.done
             and view.counter(peer) == start[peer]]
    if not still:
      return None
    if waited >= seconds:
      return Stop(still[0], SILENT, CRASH_STATUS,
                  f'no heartbeat for {seconds:g} s')
    sleep(POLL_SECONDS)
    waited += POLL_SECONDS
    view.poll()


# ----------------------------------------------------------------- this process

_view: Optional[PeerView] = None
_peer_timeout = 100.0
_thread: Optional[threading.Thread] = None
_finished = threading.Event()
# Held by the thread that ends the process (the main thread or the watchdog).
_ending = threading.Lock()


def _prefix() -> str:
  return (f'[process {_view.index}] '
          if _view is not None and _view.count > 1 else '')


def start(client: Any, index: int, count: int, peer_timeout: float) -> None:
  """Starts this process's watchdog (once ``jax.distributed`` is initialised;
  ``client`` is its distributed runtime client)."""
  global _view, _peer_timeout, _thread
  _view = PeerView(client, index, count)
  _peer_timeout = float(peer_timeout)
  _view.beat()
  _finished.clear()
  _thread = threading.Thread(target=_watch, args=(_view,),
                             name='sge_jax-watchdog', daemon=True)
  _thread.start()


def finish() -> None:
  """This process finished its work: the others must not take its silence,
  from now on, for a failure."""
  if _view is None:
    return
  try:
    _view.mark_done()
  except Exception:  # pylint: disable=broad-except
    pass   # the coordination service is gone: nobody is left to tell
  _finished.set()
  if _thread is not None:
    _thread.join(timeout=2 * POLL_SECONDS)


def _watch(view: PeerView) -> None:
  unreachable_since = None
  while not _finished.wait(POLL_SECONDS):
    try:
      view.beat()
      view.poll()
      unreachable_since = None
    except Exception:  # pylint: disable=broad-except
      unreachable_since = unreachable_since or time.monotonic()
      if time.monotonic() - unreachable_since > _peer_timeout:
        _follow(Stop(0, SILENT, CRASH_STATUS, 'its coordination service cannot '
                     f'be reached for {_peer_timeout:g} s'))
      continue
    stop = view.stop_by_another()
    if stop is not None:
      time.sleep(SETTLE_SECONDS)
      _follow(stop)
    silent = view.silent_peers(_peer_timeout)
    if silent:
      _follow(Stop(silent[0], SILENT, CRASH_STATUS,
                   f'no heartbeat for {_peer_timeout:g} s'))


def _follow(stop: Stop) -> None:
  """Ends this process because another stopped (from the watchdog)."""
  end_job(peer_line(stop, _prefix()), stop.status, stop)


def end_job(line: str, status: int, cause: Stop, details: str = '') -> NoReturn:
  """Ends this process of a multi-process job: publishes ``cause`` to the
  others, prints ``details`` (a traceback) and ``line`` on stderr, and exits
  with ``status``; process 0 first waits for the others to leave.

  Of two threads calling it (the main thread and the watchdog) the first ends
  the process; the second waits for that.
  """
  if not _ending.acquire(blocking=False):
    _wait_forever()
  try:
    if threading.current_thread() is threading.main_thread():
      signal.signal(signal.SIGINT, signal.SIG_IGN)   # leaving already
    if _view is not None:
      try:
        _view.publish(cause)
      except Exception:  # pylint: disable=broad-except
        pass
    if details:
      sys.stderr.write(details)
    print(line, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    if _view is not None and _view.index == 0:
      _wait_for_the_others(_view)
  finally:
    try:
      sys.stdout.flush()
      sys.stderr.flush()
    finally:
      os._exit(status)  # pylint: disable=protected-access


def end_after_crash(error: BaseException, prefix: str) -> NoReturn:
  """Ends this process after an unexpected exception: when another process
  stopped or went silent meanwhile (a collective then fails here), with that
  process's line; else as this process's crash, its traceback shown here once
  above the line."""
  cause = None
  if _view is not None and _view.peers:
    try:
      cause = verdict(_view)
    except BaseException:  # pylint: disable=broad-except
      cause = None
  if cause is not None:
    end_job(peer_line(cause, prefix), cause.status, cause)
  index = _view.index if _view is not None else 0
  what = describe(error)
  end_job(f'{prefix}error: crashed: {what} (a bug: the traceback is above); '
          f'{RESUME_HINT}', CRASH_STATUS, Stop(index, CRASHED, CRASH_STATUS,
                                               what),
          details=''.join(traceback.format_exception(error)))


def _wait_for_the_others(view: PeerView) -> None:
  deadline = time.monotonic() + _peer_timeout
  while time.monotonic() < deadline:
    try:
      view.poll()
    except Exception:  # pylint: disable=broad-except
      return
    if view.all_peers_left():
      return
    time.sleep(POLL_SECONDS / 5)


def _wait_forever() -> NoReturn:
  while True:
    try:
      time.sleep(3600)
    except BaseException:  # pylint: disable=broad-except
      pass   # a second Ctrl-C: the other thread is ending the process
