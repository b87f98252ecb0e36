"""Progress lines with an ETA for long loops (evaluation; the train stage's
lines use the same duration format).

A ``Progress`` counts done units of one task and logs at most one line every
``interval_s`` seconds, e.g.::

  [eval] protocol B test -> train, CAGEs: 3200/6560 queries (48.8%), ETA 0:12

Every ``Progress`` of a process shares one clock of the last line written
(``_last_line``), so a run of short tasks, none long enough for a line of its
own, is not silent for longer than the interval either: the first task still
running when the interval has passed writes the next line.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Optional

_log = logging.getLogger(__name__)

# Seconds between two progress lines at most (unless nothing advances).
INTERVAL_S = 10.0


def format_duration(seconds: float) -> str:
  """'m:ss', or 'h:mm:ss' from one hour on."""
  seconds = max(0, int(round(seconds)))
  hours, rest = divmod(seconds, 3600)
  minutes, seconds = divmod(rest, 60)
  return f'{hours}:{minutes:02d}:{seconds:02d}' if hours else f'{minutes}:{seconds:02d}'


class _LastLine:
  """When the process last wrote a progress line (monotonic seconds)."""

  def __init__(self):
    self.time: Optional[float] = None


_last_line = _LastLine()


class Progress:
  """Progress of one task of ``total`` units, logged with an ETA.

  Args:
    task: what is done, e.g. 'protocol B test -> train, CAGEs'.
    total: units to do (> 0 for any line to be written).
    unit: their name, plural ('queries').
    stage: the line's prefix tag, e.g. 'eval' -> '[eval] ...'.
    interval_s: at least this long between two lines of the process
      (default ``INTERVAL_S``).
    logger: where lines go (INFO).
    clock: monotonic seconds (tests pass a fake one).
  """

  def __init__(self, task: str, total: int, unit: str, *, stage: str = 'eval',
               interval_s: Optional[float] = None,
               logger: logging.Logger = _log,
               clock: Callable[[], float] = time.monotonic):
    self.task = task
    self.total = int(total)
    self.unit = unit
    self.stage = stage
    self.interval_s = INTERVAL_S if interval_s is None else interval_s
    self.done = 0
    # (time, units done) at the first advance: the ETA's rate counts from
    # there, so start-up (e.g. compiling the first batch) does not inflate it.
    self._first_advance: Optional[tuple[float, int]] = None
    self._logger = logger
    self._clock = clock
    self._start = clock()
    # The silence counts from the last line, or from now when that was longer
    # ago than the interval (time spent outside any Progress).
    if (_last_line.time is None
        or not 0 <= self._start - _last_line.time <= self.interval_s):
      _last_line.time = self._start

  def line(self, now: float) -> str:
    """'[eval] <task>: done/total <unit> (p%), ETA m:ss'.

    The ETA is the units left at the rate since the first advance (at the
    rate since the start while only one advance was made)."""
    since, done_then = self._first_advance or (self._start, 0)
    if self.done <= done_then or now <= since:
      since, done_then = self._start, 0
    elapsed = max(now - since, 1e-9)
    remaining = ((self.total - self.done) * elapsed
                 / max(self.done - done_then, 1))
    percent = 100.0 * self.done / max(self.total, 1)
    return (f'[{self.stage}] {self.task}: {self.done}/{self.total} {self.unit} '
            f'({percent:.1f}%), ETA {format_duration(remaining)}')

  def advance(self, count: int = 1) -> None:
    """``count`` more units done; logs a line when the interval has passed
    since the process's last progress line and work remains."""
    now = self._clock()
    if self._first_advance is None:
      self._first_advance = (now, self.done + int(count))
    self.done += int(count)
    if self.done >= self.total or now - _last_line.time < self.interval_s:
      return
    _last_line.time = now
    self._logger.info('%s', self.line(now))
