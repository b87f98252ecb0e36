"""Many processes, one job: start-up, process roles, agreement between processes.

A multi-process job runs the same command in every process (one per host, or
one per GPU); JAX's own runtime (``jax.distributed``) connects them, and
``jax.pmap`` then spans every device of every process. This module holds what
the job needs besides the maths:

* ``start(settings)`` joins the job. It must run before anything touches a
  device (JAX fixes the device set when its backend starts). Its checks turn
  what JAX would end in a crash (a coordinator port in use, a --process_id
  taken twice, incomplete cluster variables, processes that never all join)
  into one line, and it starts the watchdog (``sge_jax.job_watchdog``) that
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
import dataclasses
import errno
import json
import logging
import os
import re
import select
import signal
import socket
import sys
import threading
import time
import zlib
from typing import Any, Iterator, Mapping, Optional, Sequence

import numpy as np

from sge_jax import job_watchdog
from sge_jax.errors import USER_ERRORS, DistributedError, PeerStoppedError

# How ``--distributed`` selects the way of joining a job.
DISTRIBUTED_MODES = ('', 'auto')
# Longest message an error on one process passes to the others (bytes).
_MESSAGE_BYTES = 1024
# Process 0 gives up waiting for the others this much later than they give up
# waiting for it: they then leave while its coordinator still runs (a process
# that loses the coordinator is aborted by JAX).
_COORDINATOR_GRACE_SECONDS = 5
# JAX's own timeouts are ours plus this: ours end the job in one line, JAX's
# in a C++ abort.
_JAX_MARGIN_SECONDS = 30
# How a process recognises a JAX coordinator: the HTTP/2 connection preface,
# and the SETTINGS frame every HTTP/2 server sends first.
_HTTP2_PREFACE = b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'
_HTTP2_EMPTY_SETTINGS = b'\x00\x00\x00\x04\x00\x00\x00\x00\x00'
_HTTP2_SETTINGS_FRAME = 0x04
_PROBE_SECONDS = 2.0
# This process's --process_id claims (claim_process_id), held until it exits.
_CLAIMS: list[socket.socket] = []


@dataclasses.dataclass(frozen=True)
class JobSettings:
  """How this process joins a multi-process job (the launch.py flags).

  Attributes:
    mode: '' (explicit addresses, or a single process when none is given) or
      'auto' (JAX detects the cluster: Cloud TPU, SLURM, Open MPI).
    coordinator_address: 'host:port' of process 0's coordination service.
    num_processes: how many processes the job has.
    process_id: this process's index, 0 .. num_processes - 1.
    coordinator_timeout: seconds to wait for the coordinator and for every
      process to join.
    peer_timeout: seconds a process that stopped answering (or is not at the
      final shutdown) is waited for before the whole job is stopped.
  """
  mode: str = ''
  coordinator_address: str = ''
  num_processes: Optional[int] = None
  process_id: Optional[int] = None
  coordinator_timeout: int = 300
  peer_timeout: int = 100

  @property
  def explicit(self) -> bool:
    return bool(self.coordinator_address or self.num_processes is not None
                or self.process_id is not None)

  @property
  def multi_process(self) -> bool:
    return self.mode == 'auto' or self.explicit


def check_settings(settings: JobSettings) -> None:
  """Raises DistributedError naming the flag at fault (before any JAX call)."""
  if settings.mode not in DISTRIBUTED_MODES:
    raise DistributedError(
        f'--distributed={settings.mode} is invalid: use --distributed=auto (JAX '
        'detects the cluster: Cloud TPU, SLURM, Open MPI), or leave it out and '
        'pass --coordinator_address, --num_processes and --process_id')
  if settings.mode == 'auto' and settings.explicit:
    raise DistributedError(
        '--distributed=auto detects the job itself: leave out '
        '--coordinator_address, --num_processes and --process_id, or drop '
        '--distributed=auto')
  if settings.explicit:
    missing = [name for name, value in (
        ('--coordinator_address', settings.coordinator_address),
        ('--num_processes', settings.num_processes),
        ('--process_id', settings.process_id)) if value in (None, '')]
    if missing:
      raise DistributedError(
          f'a multi-process job needs {", ".join(missing)} too: pass '
          '--coordinator_address=HOST:PORT (process 0\'s host), '
          '--num_processes=N and --process_id=I (0..N-1) to every process')
    host, _, port = settings.coordinator_address.rpartition(':')
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
      raise DistributedError(
          f'--coordinator_address={settings.coordinator_address} is invalid: '
          'expected HOST:PORT, e.g. --coordinator_address=10.0.0.1:1234')
    if settings.num_processes < 1:
      raise DistributedError(
          f'--num_processes={settings.num_processes} is invalid: expected 1 or more')
    if not 0 <= settings.process_id < settings.num_processes:
      raise DistributedError(
          f'--process_id={settings.process_id} is invalid: expected 0 to '
          f'{settings.num_processes - 1} (--num_processes={settings.num_processes})')
  for name in ('coordinator_timeout', 'peer_timeout'):
    if getattr(settings, name) < 1:
      raise DistributedError(f'--{name}={getattr(settings, name)} is invalid: '
                             'expected seconds, 1 or more')


def _is_coordinator(connection: socket.socket, timeout: float) -> bool:
  """True when the server at the other end of ``connection`` answers as JAX's
  coordination service (a gRPC server) does, within ``timeout`` seconds: with
  an HTTP/2 SETTINGS frame."""
  try:
    connection.settimeout(timeout)
    connection.sendall(_HTTP2_PREFACE + _HTTP2_EMPTY_SETTINGS)
    header = b''
    while len(header) < 9:
      chunk = connection.recv(9 - len(header))
      if not chunk:
        break
      header += chunk
    return len(header) == 9 and header[3] == _HTTP2_SETTINGS_FRAME
  except OSError:
    return False


def wait_for_coordinator(address: str, timeout: float) -> None:
  """Returns once JAX's coordination service answers at ``address`` (host:port).

  JAX's own wait for an unreachable coordinator, or for a port held by another
  program, ends in an abort (SIGABRT, a C++ stack trace, nothing Python can
  catch); this check fails first, as one line.

  Raises:
    DistributedError: no coordinator answered within ``timeout`` seconds.
  """
  host, _, port = address.rpartition(':')
  deadline = time.monotonic() + timeout
  last_error: Optional[OSError] = None
  foreign = False
  while time.monotonic() < deadline:
    left = max(deadline - time.monotonic(), 0.1)
    try:
      with socket.create_connection((host.strip('[]'), int(port)),
                                    timeout=min(1.0, left)) as connection:
        if _is_coordinator(connection, min(_PROBE_SECONDS, left)):
          return
        foreign = True
    except OSError as error:
      last_error, foreign = error, False
    time.sleep(0.25)
  if foreign:
    raise DistributedError(
        f'--coordinator_address={address} is held by another program: for '
        f'--coordinator_timeout={timeout:g} s it accepted connections but did '
        'not answer as a JAX coordinator. Pick a free port for '
        '--coordinator_address, the same in every process')
  raise DistributedError(
      f'the coordinator --coordinator_address={address} could not be reached '
      f'within --coordinator_timeout={timeout:g} s ({last_error}): start '
      'process 0 (it hosts the coordinator) with the same address, check the '
      'host name and that the port is open, or raise --coordinator_timeout')


def check_coordinator_port(address: str) -> None:
  """Raises DistributedError when process 0 cannot open the coordinator's port
  (JAX then dies of a segmentation fault, and the others abort later).

  JAX binds every interface (``[::]:port``) unless JAX_COORDINATOR_BIND_ADDRESS
  says otherwise; the check binds the same way without keeping the port.
  """
  bind_address = os.environ.get('JAX_COORDINATOR_BIND_ADDRESS',
                                '[::]:' + address.rpartition(':')[2])
  host, _, port = bind_address.rpartition(':')
  host = host.strip('[]')
  if not port.isdigit():
    return      # JAX reports a malformed JAX_COORDINATOR_BIND_ADDRESS itself
  if host in ('', '::', '0.0.0.0'):
    candidates = [(socket.AF_INET6, '::'), (socket.AF_INET, '0.0.0.0')]
  else:
    candidates = [(socket.AF_INET6 if ':' in host else socket.AF_INET, host)]
  error = OSError(errno.EADDRNOTAVAIL, 'no address to bind')
  for family, bind_host in candidates:
    try:
      with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and bind_host == '::':
          probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        probe.bind((bind_host, int(port)))
      return
    except OSError as caught:   # no IPv6 here: try IPv4
      error = caught
      if caught.errno == errno.EADDRINUSE:
        break
  if error.errno == errno.EADDRINUSE:
    raise DistributedError(
        f'process 0 cannot open the coordinator port {port} '
        f'(--coordinator_address={address}): it is in use on this host, by '
        'another program, an earlier run that is still going, or a second '
        'process started with --process_id=0. Pick a free port for '
        '--coordinator_address, the same in every process')
  raise DistributedError(
      f'process 0 cannot open the coordinator port {port} '
      f'(--coordinator_address={address}): {error.strerror or error}. Pick '
      'another port (1024 to 65535) for --coordinator_address, the same in '
      'every process')


def claim_process_id(address: str, process_id: int) -> None:
  """Stops a second process on this host that joins the same job with the
  same --process_id (JAX aborts one of the two at once and the rest of the job
  after --coordinator_timeout). The claim, an abstract Unix socket (Linux
  only), lasts as long as this process.

  Raises:
    DistributedError: another process here holds the claim.
  """
  if not sys.platform.startswith('linux'):
    return
  claim = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
  try:
    claim.bind(f'\0sge_jax:{address}:{process_id}')
  except OSError as error:
    claim.close()
    if error.errno != errno.EADDRINUSE:
      return
    raise DistributedError(
        f'another process on this host already runs as --process_id='
        f'{process_id} of the job at --coordinator_address={address}: give '
        'every process its own --process_id (0 to --num_processes - 1)'
    ) from None
  _CLAIMS.append(claim)


# The variables JAX's cluster detection reads (jax._src.clusters), per
# cluster: with some of a cluster's set and others missing JAX either ignores
# the cluster or fails with a KeyError.
CLUSTER_VARIABLES = {
    'SLURM': ('SLURM_JOB_ID', 'SLURM_STEP_NODELIST', 'SLURM_NTASKS',
              'SLURM_PROCID', 'SLURM_LOCALID'),
    'Open MPI': ('OMPI_MCA_orte_hnp_uri', 'OMPI_COMM_WORLD_SIZE',
                 'OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_LOCAL_RANK'),
}
_INTEGER_VARIABLES = frozenset({
    'SLURM_JOB_ID', 'SLURM_NTASKS', 'SLURM_PROCID', 'SLURM_LOCALID',
    'OMPI_COMM_WORLD_SIZE', 'OMPI_COMM_WORLD_RANK',
    'OMPI_COMM_WORLD_LOCAL_RANK'})
_CLUSTER_FIX = {
    'SLURM': 'start the command with srun inside the allocation (sbatch and '
             'salloc alone set only some of them)',
    'Open MPI': 'start the command with mpirun of Open MPI 4 (Open MPI 5 no '
                'longer sets OMPI_MCA_orte_hnp_uri)',
}
# How JAX reads the launcher's address from OMPI_MCA_orte_hnp_uri.
_ORTE_URI = re.compile(r'tcp://(.+?)[,:]|tcp6://\[(.+?)[,\]]')


def cluster_variable_problems(environ: Mapping[str, str]) -> list[str]:
  """What is wrong with each cluster's variables in ``environ`` that some are
  set for (none when one cluster's are complete: JAX then joins that one)."""
  problems = []
  for cluster, names in CLUSTER_VARIABLES.items():
    present = [name for name in names if name in environ]
    if not present:
      continue
    missing = [name for name in names if name not in environ]
    malformed = [f'{name}={environ[name]!r}' for name in present
                 if name in _INTEGER_VARIABLES
                 and not environ[name].strip().isdigit()]
    uri = environ.get('OMPI_MCA_orte_hnp_uri')
    if cluster == 'Open MPI' and uri is not None and not _ORTE_URI.search(uri):
      malformed.append(f'OMPI_MCA_orte_hnp_uri={uri!r}')
    if not missing and not malformed:
      return []
    states, details = [], []
    if missing:
      states.append('incomplete')
      details.append(f'{", ".join(missing)} missing')
    if malformed:
      states.append('malformed')
      details.append(f'{", ".join(malformed)} malformed')
    problems.append(f'the {cluster} variables are {" and ".join(states)} '
                    f'({"; ".join(details)}): {_CLUSTER_FIX[cluster]}')
  return problems


def check_cluster_variables(environ: Mapping[str, str]) -> None:
  """Raises DistributedError when --distributed=auto would meet incomplete
  cluster variables (JAX would ignore them, fail with a KeyError, or wait for
  a coordinator that never comes)."""
  problems = cluster_variable_problems(environ)
  if problems:
    raise DistributedError(
        f'--distributed=auto: {"; ".join(problems)}; or pass '
        '--coordinator_address, --num_processes and --process_id instead')


def _not_joined_message(settings: JobSettings) -> str:
  """What a process that waited --coordinator_timeout for the others says."""
  timeout = f'--coordinator_timeout={settings.coordinator_timeout}'
  if settings.mode == 'auto':
    return (f'the processes of the job did not all join within {timeout} s '
            '(--distributed=auto): check that every process of the cluster job '
            "runs this command and that process 0's host is reachable, or raise "
            '--coordinator_timeout')
  count, index = settings.num_processes, settings.process_id
  if index == 0:
    return (f'not every process joined the job within {timeout} s: process 0 '
            f'waited at {settings.coordinator_address} for {count - 1} more. '
            'Start each with the same --coordinator_address and its own '
            f'--process_id (1 to {count - 1}, each once), or raise '
            '--coordinator_timeout')
  return (f'not every process joined the job within {timeout} s: process '
          f'{index} reached the coordinator at {settings.coordinator_address}, '
          'but a process is missing or two were started with the same '
          f'--process_id. Start all {count} processes, each with its own '
          f'--process_id (0 to {count - 1}), or raise --coordinator_timeout')


@contextlib.contextmanager
def _joining(seconds: float, message: str) -> Iterator[None]:
  """Ends the process in one line unless the block (joining the job) finishes
  within ``seconds``: ``error: <message>``, exit 2. Ctrl-C meanwhile ends it
  at once, exit 130.

  JAX's own timeout while the processes join is a C++ abort, and while the
  main thread waits inside JAX, Python runs no signal handler; a watcher
  thread does both jobs instead (JAX lets other threads run meanwhile), woken
  by the signal through ``signal.set_wakeup_fd``.
  """
  finished = threading.Event()
  in_main_thread = threading.current_thread() is threading.main_thread()
  wake_read, wake_write = os.pipe()
  os.set_blocking(wake_write, False)
  if in_main_thread:
    previous_handler = signal.signal(signal.SIGINT, lambda *_: None)
    previous_fd = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)

  def leave(line: str, status: int) -> None:
    print(line, file=sys.stderr, flush=True)
    os._exit(status)  # pylint: disable=protected-access

  def watch() -> None:
    deadline = time.monotonic() + seconds
    while not finished.is_set():
      left = deadline - time.monotonic()
      if left <= 0:
        leave(f'error: {message}', 2)
      ready, _, _ = select.select([wake_read], [], [], min(left, 0.25))
      interrupted = ready and signal.SIGINT in os.read(wake_read, 64)
      if interrupted and not finished.is_set():
        leave('\ninterrupted: the job had not started yet; run the same '
              'command again to start it', 130)

  watcher = threading.Thread(target=watch, name='sge_jax-joining', daemon=True)
  watcher.start()
  try:
    yield
  finally:
    finished.set()
    if in_main_thread:
      signal.set_wakeup_fd(previous_fd)
      signal.signal(signal.SIGINT, previous_handler)
    watcher.join()
    os.close(wake_read)
    os.close(wake_write)


def start(settings: JobSettings) -> None:
  """Joins the multi-process job ``settings`` describes and starts this
  process's watchdog (``sge_jax.job_watchdog``); nothing for one process.

  Must run before any JAX call that touches a device. Every way the processes
  can fail to come together ends this process in one line within
  --coordinator_timeout (process 0 a few seconds later than the others, so
  that they leave while its coordinator still runs).

  Raises:
    DistributedError: bad flags, incomplete cluster variables, a coordinator
      port in use, a --process_id taken on this host, an unreachable
      coordinator, or ``--distributed=auto`` outside a cluster JAX recognises.
  """
  check_settings(settings)
  if not settings.multi_process:
    return
  import jax  # pylint: disable=g-import-not-at-top
  if settings.mode == 'auto':
    check_cluster_variables(os.environ)
  timeouts = dict(
      initialization_timeout=(settings.coordinator_timeout
                              + _COORDINATOR_GRACE_SECONDS + _JAX_MARGIN_SECONDS),
      heartbeat_timeout_seconds=jax_heartbeat_timeout(settings.peer_timeout),
      shutdown_timeout_seconds=settings.peer_timeout)
  # wait_for_coordinator fails first when nothing answers: just after the
  # coordinator timeout (it probes up to that); process 0 waits longer still.
  deadline = settings.coordinator_timeout + (
      _COORDINATOR_GRACE_SECONDS if settings.process_id in (0, None) else 2)
  with _joining(deadline, _not_joined_message(settings)):
    if settings.mode == 'auto':
      try:
        jax.distributed.initialize(**timeouts)
      except (ValueError, RuntimeError, KeyError) as error:
        raise DistributedError(
            f'--distributed=auto found no cluster to join ({error}); JAX detects '
            'Cloud TPU pod slices, SLURM and Open MPI jobs. Elsewhere pass '
            '--coordinator_address, --num_processes and --process_id') from None
    else:
      claim_process_id(settings.coordinator_address, settings.process_id)
      if settings.process_id != 0:
        _log_warnings_only()        # before JAX's 'Connecting to ...' line
        wait_for_coordinator(settings.coordinator_address,
                             settings.coordinator_timeout)
      else:
        check_coordinator_port(settings.coordinator_address)
        logging.info('[distributed] process 0 of %d: coordinator at %s, waiting '
                     'up to %d s for the other processes', settings.num_processes,
                     settings.coordinator_address, settings.coordinator_timeout)
      jax.distributed.initialize(
          coordinator_address=settings.coordinator_address,
          num_processes=settings.num_processes, process_id=settings.process_id,
          **timeouts)
  from jax._src import distributed as jax_distributed  # pylint: disable=g-import-not-at-top
  job_watchdog.start(jax_distributed.global_state.client, jax.process_index(),
                     jax.process_count(), settings.peer_timeout)


def jax_heartbeat_timeout(peer_timeout: int) -> int:
  """JAX's heartbeat timeout: longer than --peer_timeout, so the watchdog
  (``sge_jax.job_watchdog``) notices a silent process first and ends the job
  in one line, where JAX would abort every process."""
  return 2 * peer_timeout + _JAX_MARGIN_SECONDS


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


def _log_warnings_only() -> None:
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  absl_logging.set_verbosity(absl_logging.WARNING)


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
  _log_warnings_only()
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
