"""Ctrl-C is remembered, so an interrupt that Python loses (raised inside a
finalizer) still stops the run at the next check."""

import gc
import os
import signal

import pytest

from sge_jax import interrupts


class _Finalized:
  """Sends SIGINT to this process while its finalizer runs, where Python
  prints the KeyboardInterrupt as "Exception ignored" and drops it."""

  def __del__(self):
    os.kill(os.getpid(), signal.SIGINT)
    for _ in range(1000):      # bytecodes for the handler to run in
      pass


# The lost KeyboardInterrupt is what pytest reports as an unraisable exception.
@pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')
def test_an_interrupt_lost_in_a_finalizer_is_raised_at_the_next_check():
  previous = signal.getsignal(signal.SIGINT)
  try:
    interrupts.install()
    interrupts.raise_if_requested()            # nothing pending yet
    _Finalized()                               # freed at once: lost interrupt
    gc.collect()
    with pytest.raises(KeyboardInterrupt):
      interrupts.raise_if_requested()
  finally:
    interrupts.clear()
    signal.signal(signal.SIGINT, previous)
