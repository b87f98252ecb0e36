"""Many processes, one job: start-up, process roles, agreement between processes.

A multi-process job runs the same command in every process (one per host, or
one per GPU); JAX's own runtime (``jax.distributed``) connects them, and
``jax.pmap`` then spans every device of every process. This package holds what
the job needs besides the maths:

* ``start(settings)`` joins the job. It must run before anything touches a
  device (JAX fixes the device set when its backend starts). Its checks turn
  what JAX would end in a crash (a coordinator port in use, a --process_id
  taken twice, incomplete cluster variables, processes that never all join)
  into one line, and it starts the watchdog (``sge_jax.distributed.watchdog``) that
  ends every process in one line when one of them stops.
* Roles: process 0 is the *main* process. It alone writes the workdir's files
  (config.json, metrics.jsonl, encodings.npz, results, report, plots) and takes
  the workdir lock; every process takes part in training and in each checkpoint
  save and restore (Orbax requires it; only process 0 writes array data).
* Agreement: ``stop_together`` turns an error on one process into an error on
  every process (otherwise the others would wait in a collective forever), and
  ``check_same_config`` and ``check_same_on_every_process`` stop the job when
  processes run different configs or loaded different data, naming the first
  that differs from process 0.

A single-process run (no flags) never calls ``jax.distributed``; every helper
here is then a no-op, so such a run is exactly what it was before.

Every function that exchanges values between processes is a collective: every
process must call it, in the same order.
"""

from __future__ import annotations

import contextlib
import json
import logging
import zlib
from typing import Any, Iterator, Mapping, Optional, Sequence

import numpy as np

from sge_jax.distributed.joining import (CLUSTER_VARIABLES, DISTRIBUTED_MODES,
                                         JobSettings, check_cluster_variables,
                                         check_coordinator_port,
                                         check_settings, claim_process_id,
                                         cluster_variable_problems,
                                         jax_heartbeat_timeout,
                                         log_warnings_only, start,
                                         wait_for_coordinator)
from sge_jax.errors import USER_ERRORS, DistributedError, PeerStoppedError

# Longest message an error on one process passes to the others (bytes).
_MESSAGE_BYTES = 1024


# ----------------------------------------------------------------- roles


def process_index() -> int:
  import jax  # pylint: disable=g-import-not-at-top
  return jax.process_index()


def process_count() -> int:
  import jax  # pylint: disable=g-import-not-at-top
  return jax.process_count()


def is_main_process() -> bool:
  """True on process 0, the one that writes the workdir's files."""
  return process_index() == 0


def process_prefix() -> str:
  """'[process i] ' in a multi-process job, '' for a single process."""
  return f'[process {process_index()}] ' if process_count() > 1 else ''


class _ProcessPrefix(logging.Filter):
  """Prefixes every record with the process index."""

  def __init__(self, prefix: str):
    super().__init__()
    self._prefix = prefix

  def filter(self, record: logging.LogRecord) -> bool:
    if not str(record.msg).startswith(self._prefix):
      record.msg = self._prefix + str(record.msg)
    return True


def quiet_other_processes() -> None:
  """Processes other than 0 log only warnings and errors, prefixed with their
  index (process 0 logs as a single process does)."""
  if process_count() == 1 or is_main_process():
    return
  log_warnings_only()
  prefix = process_prefix()
  for handler in logging.getLogger().handlers:
    handler.addFilter(_ProcessPrefix(prefix))


# ----------------------------------------------------------------- agreement


def gather(values: np.ndarray) -> np.ndarray:
  """[P, ...] ``values`` of every process, in process order (a collective).

  Integers must fit 32 bits (JAX without x64 truncates 64-bit ones).
  """
  if process_count() == 1:
    return np.asarray(values)[None]
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return np.asarray(multihost_utils.process_allgather(np.asarray(values)))


def barrier(name: str) -> None:
  """Waits until every process reaches the barrier ``name`` (a collective)."""
  if process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)


def _encode_message(text: str) -> np.ndarray:
  raw = text.encode('utf-8', errors='replace')[:_MESSAGE_BYTES]
  return np.frombuffer(raw.ljust(_MESSAGE_BYTES, b'\0'), np.uint8)


def _decode_message(buffer: np.ndarray) -> str:
  return bytes(np.asarray(buffer, np.uint8)).rstrip(b'\0').decode(
      'utf-8', errors='replace')


def raise_if_any_failed(error: Optional[BaseException]) -> None:
  """Every process learns whether any failed (a collective).

  Raises:
    ``error`` on the process that had it; PeerStoppedError naming the first
    failed process and its message on every other process.
  """
  if process_count() == 1:
    if error is not None:
      raise error
    return
  messages = [_decode_message(row) for row in gather(
      _encode_message(f'{type(error).__name__}: {error}' if error else ''))]
  if error is not None:
    raise error
  failed = [index for index, message in enumerate(messages) if message]
  if failed:
    raise PeerStoppedError(failed[0], messages[failed[0]])


@contextlib.contextmanager
def stop_together() -> Iterator[None]:
  """Runs the block on every process; a user error (``USER_ERRORS``) raised in
  it on any process is raised on every process once all reach the block's end
  (a collective), so no process waits for one that stopped."""
  error = None
  try:
    yield
  except USER_ERRORS as caught:
    error = caught
  raise_if_any_failed(error)


def checksum(*arrays: np.ndarray) -> np.uint32:
  """CRC32 of the arrays' bytes (and shapes and dtypes), in order."""
  crc = 0
  for array in arrays:
    array = np.ascontiguousarray(array)
    crc = zlib.crc32(f'{array.dtype.str}{array.shape}'.encode(), crc)
    crc = zlib.crc32(array.tobytes(), crc)
  return np.uint32(crc)


def first_differing_process(values: Sequence[int]) -> Optional[int]:
  """Index of the first value that differs from ``values[0]``, or None."""
  for index, value in enumerate(values):
    if value != values[0]:
      return index
  return None


def check_same_on_every_process(what: str, value: np.uint32, fix: str) -> None:
  """Stops the job on every process when ``value`` (a checksum of ``what``)
  differs between processes (a collective).

  Raises:
    DistributedError: naming the first process whose value differs from
      process 0's, and ``fix``.
  """
  values = [int(v) for v in gather(np.uint32(value))]
  differing = first_differing_process(values)
  if differing is not None:
    raise DistributedError(
        f'process {differing} sees a different {what} than process 0 (CRC32 '
        f'{values[differing]:08x} vs {values[0]:08x}): {fix}')


def gather_text(text: str) -> list[str]:
  """``text`` of every process, in process order (a collective)."""
  raw = np.frombuffer(text.encode('utf-8'), np.uint8)
  lengths = [int(length) for length in gather(np.int32(raw.size))]
  padded = np.zeros(max(lengths), np.uint8)
  padded[:raw.size] = raw
  return [bytes(row[:length]).decode('utf-8', errors='replace')
          for row, length in zip(gather(padded), lengths)]


# How many differing fields a config disagreement names.
_SHOWN_FIELDS = 4
_UNSET = object()


def _shown(value: Any) -> str:
  if value is _UNSET:
    return '(no such field)'
  text = json.dumps(value, ensure_ascii=False)
  return text if len(text) <= 60 else text[:57] + '...'


def config_disagreement(configs: Sequence[Mapping[str, Any]]) -> Optional[str]:
  """Names the fields where the processes' configs differ from process 0's.

  Args:
    configs: every process's flattened config, in process order
      ({'train.learning_rate': 0.001, ..., '--workdir': 'runs/demo'}).

  Returns:
    None when all are equal, else the message of the error: the first
    differing process with its differing fields and values, and the other
    processes that differ too.
  """
  reference = configs[0]
  differing = {}
  for index, fields in enumerate(configs):
    names = sorted(name for name in set(reference) | set(fields)
                   if reference.get(name, _UNSET) != fields.get(name, _UNSET))
    if names:
      differing[index] = names
  if not differing:
    return None
  first = min(differing)
  names = differing[first]
  shown = ', '.join(
      f'{name}={_shown(configs[first].get(name, _UNSET))} (process 0: '
      f'{_shown(reference.get(name, _UNSET))})' for name in names[:_SHOWN_FIELDS])
  if len(names) > _SHOWN_FIELDS:
    shown += f' and {len(names) - _SHOWN_FIELDS} more'
  others = [index for index in differing if index != first]
  also = (f'; process{"es" if len(others) > 1 else ""} '
          f'{", ".join(map(str, others))} differ{"" if len(others) > 1 else "s"} '
          'from process 0 too' if others else '')
  return (f'the processes of this job run different configs: process {first} '
          f'has {shown}{also}. Start every process with the same command: the '
          'same --config file, --config.* overrides and --workdir')


def check_same_config(fields: Mapping[str, Any]) -> None:
  """Stops the job on every process when the processes run different configs
  (a collective; nothing for a single process). Without it a process started
  with another value trains with it silently, and config.json records process
  0's.

  Args:
    fields: this process's whole resolved config, flattened, and whatever else
      must agree ({'train.learning_rate': 0.001, ..., '--workdir': ...}).

  Raises:
    DistributedError: naming the differing fields (``config_disagreement``).
  """
  if process_count() == 1:
    return
  text = json.dumps(dict(fields), sort_keys=True, default=repr)
  own = checksum(np.frombuffer(text.encode('utf-8'), np.uint8))
  if first_differing_process([int(value) for value in gather(own)]) is None:
    return
  message = config_disagreement([json.loads(other)
                                 for other in gather_text(text)])
  raise DistributedError(message or 'the processes of this job run different '
                         'configs: start every process with the same command')
