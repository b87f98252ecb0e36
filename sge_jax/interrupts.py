"""Ctrl-C that always stops a run.

Python turns SIGINT into a KeyboardInterrupt at the next bytecode of the main
thread. If that bytecode belongs to a finalizer or a weakref callback (JAX runs
such callbacks while it frees buffers), the exception is printed as "Exception
ignored" and lost, and the run goes on. ``install`` replaces the handler by one
that also remembers the request; the long loops (encoder training, the
recognition network) call ``raise_if_requested`` between compiled calls, so a
lost interrupt is raised again there, at most one call later.
"""

from __future__ import annotations

import signal
import threading

_requested = False


def _handle_interrupt(signum, frame) -> None:
  del signum, frame
  global _requested
  _requested = True
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


def raise_if_requested() -> None:
  """Raises KeyboardInterrupt when Ctrl-C was pressed since ``install``."""
  if _requested:
    raise KeyboardInterrupt
