"""The metrics log's scalars as TensorBoard event files (``train.tensorboard``).

With ``config.train.tensorboard`` on, every record ``MetricsLog`` writes to
``metrics.jsonl`` is also written, scalar by scalar, to event files in
``<workdir>/tensorboard/`` (``tensorboard --logdir <workdir>``), by
tensorboardX, an optional extra (``pip install -e '.[tensorboard]'``)
imported only here and only when the field is on. ``require_writer`` checks
that it is installed before any work starts (``validate_config``).

Tags are the record's keys, one per model where the value is a dict:
``loss/total/rev_rec/x``, ``loss/total_all_models``, ``steps_per_s``,
``validation/reconstruction/rev_rec/x``; the x axis is the record's ``step``.
Records without a step, text (warnings) and values that are not finite
numbers are left out. Each run, and each resumption, writes a new event
file.
"""

from __future__ import annotations

import math
import numbers
import os
import pathlib
import time
import uuid
from typing import Any, Iterator, Mapping

from sge_jax.errors import ConfigError

TENSORBOARD_DIR = 'tensorboard'
MISSING_LIBRARY = (
    'config.train.tensorboard=True needs the TensorBoard writer library '
    "(tensorboardX), which is not installed: pip install -e '.[tensorboard]' "
    '(or pip install tensorboardX), or run without '
    '--config.train.tensorboard=True.')


def _library():
  """tensorboardX's synchronous event file writer, its scalar summary and
  its Event proto; ConfigError (one line naming the extra) when missing."""
  try:
    # pylint: disable=import-outside-toplevel
    from tensorboardX.event_file_writer import EventsWriter
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.summary import scalar
  except ImportError:
    raise ConfigError(MISSING_LIBRARY) from None
  return EventsWriter, Event, scalar


def require_writer() -> None:
  """Raises ConfigError naming the extra when tensorboardX is not installed
  (called before any work for a run with ``train.tensorboard`` on)."""
  _library()


def scalars(record: Mapping[str, Any], prefix: str = ''
            ) -> Iterator[tuple[str, float]]:
  """(tag, value) of every finite number in a metrics record; a dict value
  gives one tag per key ('loss/total' -> 'loss/total/rev_rec/x'). ``stage``,
  ``step`` and ``epoch`` are the axis and the grouping, not scalars; bools
  (which models are active) are left out."""
  for key, value in record.items():
    tag = f'{prefix}{key}'
    if not prefix and key in ('stage', 'step', 'epoch'):
      continue
    if isinstance(value, Mapping):
      yield from scalars(value, f'{tag}/')
    elif (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and math.isfinite(value)):
      yield tag, float(value)


class EventWriter:
  """Writes metrics records as TensorBoard scalars to one new event file
  under ``directory``, synchronously: each record is on disk when ``write``
  returns, as its metrics.jsonl line is (tensorboardX's SummaryWriter would
  queue it for a background thread that flushes every two minutes).

  Args:
    directory: ``<workdir>/tensorboard`` (created on the first record).

  Raises:
    ConfigError: tensorboardX is not installed (``MISSING_LIBRARY``).
  """

  def __init__(self, directory: str | pathlib.Path):
    self.directory = pathlib.Path(directory)
    self._events_writer, self._event, self._scalar = _library()
    self._file = None

  def write(self, record: Mapping[str, Any]) -> None:
    """Adds the scalars of a JSON-safe record (``json_safe``: Python numbers,
    None for non-finite ones) at its step (nothing for a record without one).

    Raises:
      OSError: the folder or the event file cannot be written.
    """
    step = record.get('step')
    if not isinstance(step, numbers.Integral) or isinstance(step, bool):
      return
    values = list(scalars(record))
    if not values:
      return
    if self._file is None:
      self.directory.mkdir(parents=True, exist_ok=True)
      # A file of its own per writer, also for a run resumed in the same second.
      self._file = self._events_writer(str(self.directory / 'events'),
                                       f'.{os.getpid()}.{uuid.uuid4().hex[:8]}')
    summary = self._scalar(*values[0])      # one event holds every scalar
    for tag, value in values[1:]:
      summary.value.extend(self._scalar(tag, value).value)
    self._file.write_event(self._event(wall_time=time.time(), step=int(step),
                                       summary=summary))
    self._file.flush()
