"""Ctrl-C is remembered, so an interrupt that Python loses (raised inside a
finalizer) still stops the run at the next check; in a deferred region the
first Ctrl-C is a request the loop handles, and a save is never cut."""

import gc
import os
import signal

import pytest

from sge_jax import interrupts
from tests.fixtures import ctrl_c


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


def test_in_a_deferred_region_the_first_ctrl_c_is_a_request_the_second_stops(
    capfd):
  with ctrl_c.commands_handler():
    with pytest.raises(KeyboardInterrupt):
      with interrupts.deferred('stopping after the current step...'):
        ctrl_c.press()
        assert interrupts.stop_requested()      # recorded, nothing raised
        assert 'stopping after the current step...' in capfd.readouterr().err
        ctrl_c.press()                          # the second raises at once
        pytest.fail('the second Ctrl-C did not raise')


def test_a_request_the_region_left_unhandled_is_raised_when_it_ends():
  with ctrl_c.commands_handler():
    with pytest.raises(KeyboardInterrupt):
      with interrupts.deferred('stopping...'):
        ctrl_c.press()
      pytest.fail('the request was not raised at the end of the region')


def test_an_uninterruptible_block_finishes_then_stops(capfd):
  finished = []
  with ctrl_c.commands_handler():
    with pytest.raises(KeyboardInterrupt):
      with interrupts.uninterruptible():
        ctrl_c.press(3)
        finished.append(True)
  assert finished == [True]
  assert 'finishing the checkpoint being written' in capfd.readouterr().err


def test_inside_a_deferred_region_a_save_is_finished_and_the_loop_decides():
  with ctrl_c.commands_handler():
    with interrupts.deferred('stopping...'):
      with interrupts.uninterruptible():
        ctrl_c.press(2)
      assert interrupts.stop_requested()        # no raise: the loop saves
      interrupts.clear()                        # (as if it had handled it)
