"""Ctrl-C that stops a run without losing its work.

``install`` (done by ``sge_jax.cli`` for every command) replaces Python's
SIGINT handler by one that remembers the request and, outside the regions
below, raises KeyboardInterrupt at once.

* ``deferred(announce)``: the long training loops run inside it. The first
  Ctrl-C only records the request and prints ``announce`` (e.g. "stopping after
  the current step..."); the loop checks ``stop_requested`` between compiled
  calls, saves and raises ``KeyboardInterrupt(<what was saved where>)``. A
  second Ctrl-C raises at once. (The train state is donated to each compiled
  call, so an exception between its dispatch and the assignment of its result
  would lose the state.)
* ``uninterruptible()``: a checkpoint save runs inside it. Every Ctrl-C is only
  recorded; outside a deferred region the request is raised once the block
  has finished, so a save is never cut half-way.

Outside both, the request is still remembered: Python turns SIGINT into a
KeyboardInterrupt at the next bytecode of the main thread, and if that bytecode
belongs to a finalizer or a weakref callback (JAX runs such callbacks while it
frees buffers), the exception is printed as "Exception ignored" and lost; the
loops' checks then stop the run at most one call later.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Iterator

_requested = False
_announcements: list[str] = []     # of the open deferred regions, innermost last
_uninterruptible = 0               # depth of uninterruptible() blocks


def _say(text: str) -> None:
  # os.write, not print: the handler may run while the main thread is inside
  # sys.stderr's own write, which print would re-enter (RuntimeError).
  os.write(2, f'\n{text}\n'.encode())


def _handle_interrupt(signum, frame) -> None:
  del signum, frame
  global _requested
  first, _requested = not _requested, True
  if _uninterruptible:
    _say(_announcements[-1] if first and _announcements else
         'finishing the checkpoint being written, then stopping...')
    return
  if _announcements and first:
    _say(_announcements[-1])
    return
  raise KeyboardInterrupt


def install() -> None:
  """Makes SIGINT raise KeyboardInterrupt and remember it (main thread only)."""
  clear()
  if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGINT, _handle_interrupt)


def clear() -> None:
  """Forgets a remembered Ctrl-C (for a process that goes on after one)."""
  global _requested
  _requested = False


def stop_requested() -> bool:
  """Whether Ctrl-C was pressed since ``install``."""
  return _requested


def raise_if_requested() -> None:
  """Raises KeyboardInterrupt when Ctrl-C was pressed since ``install``."""
  if _requested:
    raise KeyboardInterrupt


@contextlib.contextmanager
def deferred(announce: str) -> Iterator[None]:
  """Within the block a first Ctrl-C only prints ``announce`` and sets
  ``stop_requested``; the block is expected to check it and stop cleanly. A
  request the block left unhandled is raised when it ends."""
  _announcements.append(announce)
  try:
    yield
  finally:
    _announcements.pop()
  if not _announcements and not _uninterruptible:
    raise_if_requested()


@contextlib.contextmanager
def uninterruptible() -> Iterator[None]:
  """Within the block Ctrl-C is only recorded (see the module docstring)."""
  global _uninterruptible
  _uninterruptible += 1
  try:
    yield
  finally:
    _uninterruptible -= 1
  if not _announcements and not _uninterruptible:
    raise_if_requested()
