"""Progress of the recognition network's training, in the train stage's style.

The RN trains ``rn.epochs_per_call`` epochs per compiled call
(``recognition.train_and_score``). After each call one line gives the epoch,
the train loss, the validation accuracy and the speed: the first call's time
(compilation included), then epochs per second and the ETA::

  [rn] epoch 50/300: train loss 0.1654, val acc 0.968 | first call (compilation included) 65.9 s
  [rn] epoch 100/300: train loss 0.04427, val acc 0.995 | 0.88 epochs/s  ETA 3:47

Within a call every finished epoch reports to the host (``epoch_finished``,
a ``jax.debug.callback`` in the epoch program that reads only the epoch
counter, so no number changes), and a ``Progress`` line
(``sge_jax.progress``, at most one every 10 s) keeps a long call from being
silent::

  [rn] recognition network: 73/300 epochs (24.3%), ETA 2:41
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Callable, Iterator, Optional

import jax

from sge_jax.progress import Progress, format_duration

_log = logging.getLogger(__name__)
STAGE = 'rn'
TASK = 'recognition network'


class RNProgress:
  """The progress lines of one RN training of ``epochs`` epochs.

  Args:
    epochs: epochs to train.
    logger: where lines go (INFO).
    clock: seconds (tests pass a fake one).
  """

  def __init__(self, epochs: int, logger: logging.Logger = _log,
               clock: Callable[[], float] = time.perf_counter):
    self.epochs = int(epochs)
    self._logger = logger
    self._clock = clock
    self._last = clock()
    self._first_call_seconds: Optional[float] = None
    self._timed_epochs = 0
    self._timed_seconds = 0.0
    self._done = 0
    self.epoch_progress = Progress(TASK, self.epochs, 'epochs', stage=STAGE,
                                   logger=logger)

  def line(self, done: int, train_loss: float,
           val_accuracy: Optional[float]) -> str:
    """The line after a call that ended at epoch ``done``; the speed counts
    the calls after the first (whose time is mostly compilation)."""
    val = '' if val_accuracy is None else f', val acc {val_accuracy:.3f}'
    if not self._timed_epochs:
      timing = (f'first call (compilation included) '
                f'{self._first_call_seconds:.1f} s')
    else:
      rate = self._timed_epochs / max(self._timed_seconds, 1e-9)
      timing = (f'{rate:.2f} epochs/s  ETA '
                f'{format_duration((self.epochs - done) / rate)}')
    return (f'[{STAGE}] epoch {done}/{self.epochs}: train loss '
            f'{train_loss:.4g}{val} | {timing}')

  def call_done(self, done: int, train_loss: float,
                val_accuracy: Optional[float] = None) -> None:
    """Logs the line of a call that ended at epoch ``done`` (1-based)."""
    now = self._clock()
    seconds, self._last = now - self._last, now
    if self._first_call_seconds is None:
      self._first_call_seconds = seconds
    else:
      self._timed_epochs += done - self._done
      self._timed_seconds += seconds
    self._done = done
    self._logger.info('%s', self.line(done, train_loss, val_accuracy))

  @contextlib.contextmanager
  def tracking(self) -> Iterator['RNProgress']:
    """While open, ``epoch_finished`` advances this training's epoch count."""
    _TRACKED.append(self)
    try:
      yield self
    finally:
      jax.effects_barrier()      # the callbacks still on their way count too
      _TRACKED.remove(self)


# The RN trainings in progress (innermost last): where the host side of the
# epoch program's callback reports. A module-level list because the compiled
# program holds the callback once, whichever training runs it.
_TRACKED: list[RNProgress] = []


def epoch_finished(epoch) -> None:
  """Host side of the per-epoch ``jax.debug.callback``: one more epoch of
  the training in progress (none: nothing)."""
  del epoch
  if _TRACKED:
    _TRACKED[-1].epoch_progress.advance()
