"""Joining a multi-process job: the flags, the checks that turn what JAX would
end in a crash into one line, and ``start``.

``start(settings)`` joins the job. It must run before anything touches a
device (JAX fixes the device set when its backend starts). Its checks turn
what JAX would end in a crash (a coordinator port in use, a --process_id taken
twice, incomplete cluster variables, processes that never all join) into one
line, and it starts the watchdog (``sge_jax.distributed.watchdog``) that ends
every process in one line when one of them stops.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import re
import select
import signal
import socket
import sys
import threading
import time
from typing import Iterator, Mapping, Optional

from sge_jax.distributed import watchdog
from sge_jax.errors import DistributedError

# How ``--distributed`` selects the way of joining a job.
DISTRIBUTED_MODES = ('', 'auto')
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
  process's watchdog (``sge_jax.distributed.watchdog``); nothing for one process.

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
        log_warnings_only()        # before JAX's 'Connecting to ...' line
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
  watchdog.start(jax_distributed.global_state.client, jax.process_index(),
                     jax.process_count(), settings.peer_timeout)


def jax_heartbeat_timeout(peer_timeout: int) -> int:
  """JAX's heartbeat timeout: longer than --peer_timeout, so the watchdog
  (``sge_jax.distributed.watchdog``) notices a silent process first and ends the job
  in one line, where JAX would abort every process."""
  return 2 * peer_timeout + _JAX_MARGIN_SECONDS


def log_warnings_only() -> None:
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  absl_logging.set_verbosity(absl_logging.WARNING)


