"""sge_jax.distributed in one process: flag checks, the start-up checks (the
coordinator, its port, --process_id claims, cluster variables, the deadline
and Ctrl-C while joining), checksums, config disagreements and the agreement
helpers (which are no-ops for a single process). The multi-process behaviour
is tested with real processes in test_many_processes.py."""

import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from sge_jax import distributed
from sge_jax.distributed import joining
from sge_jax.distributed import watchdog as job_watchdog
from sge_jax.errors import DataError, DistributedError
from tests.fixtures.processes import free_port

JobSettings = distributed.JobSettings


def test_no_flags_is_a_single_process_run():
  settings = JobSettings()
  distributed.check_settings(settings)
  assert not settings.multi_process
  distributed.start(settings)     # nothing to join: returns at once
  assert distributed.process_count() == 1 and distributed.is_main_process()
  assert distributed.process_prefix() == ''


@pytest.mark.parametrize('settings, message', [
    (JobSettings(num_processes=2), '--coordinator_address, --process_id'),
    (JobSettings(coordinator_address='host:1', num_processes=2),
     '--process_id too'),
    (JobSettings(coordinator_address='host', num_processes=2, process_id=0),
     'expected HOST:PORT'),
    (JobSettings(coordinator_address='host:1', num_processes=2, process_id=2),
     'expected 0 to 1'),
    (JobSettings(coordinator_address='host:1', num_processes=0, process_id=0),
     '--num_processes=0 is invalid'),
    (JobSettings(mode='auto', num_processes=2), 'leave out'),
    (JobSettings(mode='slurm'), '--distributed=slurm is invalid'),
    (JobSettings(mode='auto', coordinator_timeout=0), '--coordinator_timeout=0'),
])
def test_bad_job_flags_are_named(settings, message):
  with pytest.raises(DistributedError, match=message):
    distributed.check_settings(settings)


def test_an_unreachable_coordinator_fails_after_the_timeout():
  with socket.socket() as unused:
    unused.bind(('127.0.0.1', 0))
    port = unused.getsockname()[1]      # bound but not listening: refused
    start = time.monotonic()
    with pytest.raises(DistributedError, match='could not be reached within'):
      distributed.wait_for_coordinator(f'127.0.0.1:{port}', 0.5)
  assert 0.5 <= time.monotonic() - start < 5


def _serve_once(server, reply):
  """Accepts one connection on ``server`` and sends ``reply``."""
  def serve():
    connection, _ = server.accept()
    with connection:
      connection.sendall(reply)
      connection.recv(64)
  threading.Thread(target=serve, daemon=True).start()


def test_a_coordinator_passes_the_check():
  with socket.socket() as server:
    server.bind(('127.0.0.1', 0))
    server.listen()
    # What a gRPC server sends first: an HTTP/2 SETTINGS frame.
    _serve_once(server, b'\x00\x00\x00\x04\x00\x00\x00\x00\x00')
    distributed.wait_for_coordinator(f'127.0.0.1:{server.getsockname()[1]}', 5)


def test_a_port_held_by_another_program_is_named():
  # Before, the check passed and JAX aborted after --coordinator_timeout.
  with socket.socket() as server:
    server.bind(('127.0.0.1', 0))
    server.listen()                     # accepts, never answers
    _serve_once(server, b'HTTP/1.1 400 Bad Request\r\n\r\n')
    start = time.monotonic()
    with pytest.raises(DistributedError, match='held by another program'):
      distributed.wait_for_coordinator(f'127.0.0.1:{server.getsockname()[1]}',
                                       1)
  assert time.monotonic() - start < 5


def test_a_coordinator_port_in_use_is_named_before_jax_binds_it(monkeypatch):
  # Before, JAX died of a segmentation fault on process 0.
  monkeypatch.delenv('JAX_COORDINATOR_BIND_ADDRESS', raising=False)
  with socket.socket() as server:
    server.bind(('0.0.0.0', 0))
    server.listen()
    address = f'127.0.0.1:{server.getsockname()[1]}'
    with pytest.raises(DistributedError, match='in use on this host'):
      distributed.check_coordinator_port(address)
  distributed.check_coordinator_port(address)      # free again


def test_a_process_id_is_claimed_once_per_host(monkeypatch):
  if not sys.platform.startswith('linux'):
    pytest.skip('abstract Unix sockets are Linux only')
  monkeypatch.setattr(joining, '_CLAIMS', [])
  address = f'127.0.0.1:{free_port()}'
  distributed.claim_process_id(address, 1)
  distributed.claim_process_id(address, 2)          # another id: fine
  with pytest.raises(DistributedError,
                     match='already runs as --process_id=1 of the job'):
    distributed.claim_process_id(address, 1)
  for claim in joining._CLAIMS:
    claim.close()
  distributed.claim_process_id(address, 1)          # released with its holder
  joining._CLAIMS[-1].close()


SLURM = {'SLURM_JOB_ID': '12', 'SLURM_STEP_NODELIST': 'node[1-2]',
         'SLURM_NTASKS': '2', 'SLURM_PROCID': '0', 'SLURM_LOCALID': '0'}
OMPI = {'OMPI_MCA_orte_hnp_uri': '1531576320.0;tcp://10.0.0.1,10.0.0.2:34911',
        'OMPI_COMM_WORLD_SIZE': '2', 'OMPI_COMM_WORLD_RANK': '1',
        'OMPI_COMM_WORLD_LOCAL_RANK': '0'}


@pytest.mark.parametrize('environ, message', [
    ({'SLURM_JOB_ID': '12', 'SLURM_NTASKS': '2'},
     'SLURM variables are incomplete (SLURM_STEP_NODELIST, SLURM_PROCID, '
     'SLURM_LOCALID missing): start the command with srun'),
    ({**SLURM, 'SLURM_PROCID': 'x'}, "malformed (SLURM_PROCID='x' malformed)"),
    ({'OMPI_MCA_orte_hnp_uri': OMPI['OMPI_MCA_orte_hnp_uri']},
     'Open MPI variables are incomplete (OMPI_COMM_WORLD_SIZE, '
     'OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_LOCAL_RANK missing)'),
    ({'OMPI_COMM_WORLD_SIZE': '2', 'OMPI_COMM_WORLD_RANK': '0',
      'OMPI_COMM_WORLD_LOCAL_RANK': '0'}, 'OMPI_MCA_orte_hnp_uri missing'),
    ({**OMPI, 'OMPI_MCA_orte_hnp_uri': 'garbage'},
     "OMPI_MCA_orte_hnp_uri='garbage' malformed"),
])
def test_incomplete_cluster_variables_are_named(environ, message):
  with pytest.raises(DistributedError, match=re.escape(message)):
    distributed.check_cluster_variables(environ)


@pytest.mark.parametrize('environ', [
    {}, SLURM, OMPI, {**SLURM, 'OMPI_COMM_WORLD_SIZE': '2'},   # SLURM wins
    {'PATH': '/bin'}])
def test_complete_or_absent_cluster_variables_pass(environ):
  distributed.check_cluster_variables(environ)


_JOINING = textwrap.dedent('''
    import sys, time
    from sge_jax.distributed import joining
    print('joining', flush=True)
    with joining._joining(float(sys.argv[1]), 'the others never came'):
      time.sleep(30)     # as jax.distributed.initialize waits, here for ever
''')


def _join(seconds, interrupt_after=None):
  process = subprocess.Popen([sys.executable, '-c', _JOINING, str(seconds)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
  assert process.stdout.readline() == 'joining\n'
  start = time.monotonic()
  if interrupt_after is not None:
    time.sleep(interrupt_after)
    process.send_signal(signal.SIGINT)
  _, stderr = process.communicate(timeout=60)
  return process.returncode, stderr, time.monotonic() - start


def test_joining_for_too_long_ends_in_one_line():
  # Before, JAX aborted (a C++ stack trace) after --coordinator_timeout.
  status, stderr, seconds = _join(1)
  assert (status, stderr) == (2, 'error: the others never came\n')
  assert 1 <= seconds < 10


def test_ctrl_c_while_joining_ends_at_once():
  # Before, Ctrl-C did nothing until --coordinator_timeout: Python runs no
  # signal handler while JAX waits for the other processes.
  status, stderr, seconds = _join(30, interrupt_after=0.5)
  assert status == 130
  assert stderr.strip() == ('interrupted: the job had not started yet; run '
                            'the same command again to start it')
  assert seconds < 10


def test_the_coordinator_port_must_be_a_port():
  with pytest.raises(DistributedError, match='expected HOST:PORT'):
    distributed.check_settings(JobSettings(
        coordinator_address='host:70000', num_processes=2, process_id=0))


def test_checksum_sees_values_shapes_and_dtypes():
  a = np.arange(6, dtype=np.float32)
  assert distributed.checksum(a) == distributed.checksum(a.copy())
  assert distributed.checksum(a) != distributed.checksum(a.reshape(2, 3))
  assert distributed.checksum(a) != distributed.checksum(a.astype(np.float64))
  changed = a.copy()
  changed[3] += 1e-6
  assert distributed.checksum(a) != distributed.checksum(changed)
  assert isinstance(distributed.checksum(a), np.uint32)


def test_first_differing_process():
  assert distributed.first_differing_process([5, 5, 5]) is None
  assert distributed.first_differing_process([5, 5, 7, 8]) == 2


def test_messages_pass_through_the_fixed_size_buffer():
  text = 'DataError: ' + 'é' * 10
  assert distributed._decode_message(distributed._encode_message(text)) == text
  long = distributed._decode_message(distributed._encode_message('x' * 5000))
  assert long == 'x' * distributed._MESSAGE_BYTES


def test_one_process_agrees_with_itself():
  with pytest.raises(DataError, match='bad'):
    with distributed.stop_together():
      raise DataError('bad')
  with distributed.stop_together():
    pass
  distributed.check_same_on_every_process('data', np.uint32(3), 'fix')
  np.testing.assert_array_equal(distributed.gather(np.uint32(7)), [7])
  distributed.barrier('nothing to wait for')


BASE = {'seed': 0, 'train.learning_rate': 0.001, 'train.temperature': 0.1,
        '--workdir': 'runs/demo'}


def test_equal_configs_agree():
  assert distributed.config_disagreement([BASE, dict(BASE), dict(BASE)]) is None


def test_a_config_disagreement_names_the_fields_values_and_processes():
  other = {**BASE, 'train.temperature': 0.5, 'train.learning_rate': 0.01}
  message = distributed.config_disagreement(
      [BASE, BASE, other, {**BASE, '--workdir': 'elsewhere'}])
  assert message.startswith(
      'the processes of this job run different configs: process 2 has '
      'train.learning_rate=0.01 (process 0: 0.001), train.temperature=0.5 '
      '(process 0: 0.1); process 3 differs from process 0 too.')
  assert 'same --config file, --config.* overrides and --workdir' in message


def test_a_config_disagreement_names_missing_fields_and_stays_short():
  many = {**{f'x.f{i}': i for i in range(10)}, '--workdir': 'a'}
  changed = {**{f'x.f{i}': -i for i in range(1, 10)}, 'extra': 'é' * 100}
  message = distributed.config_disagreement([many, changed])
  # 12 differ (--workdir and x.f0 missing, extra added, x.f1..9), 4 are shown.
  assert 'x.f1=-1 (process 0: 1) and 8 more.' in message
  assert f'extra="{"é" * 56}... (process 0: (no such field))' in message
  assert len(message) < 600
  message = distributed.config_disagreement([BASE, {**BASE, 'extra': 1}])
  assert 'extra=1 (process 0: (no such field))' in message


def test_one_process_has_nothing_to_disagree_with():
  distributed.check_same_config({'anything': object()})
  assert distributed.gather_text('é') == ['é']


def test_jax_notices_a_silent_process_after_the_watchdog_does():
  for peer_timeout in (1, 10, 100):
    assert distributed.jax_heartbeat_timeout(peer_timeout) > (
        peer_timeout + 2 * job_watchdog.POLL_SECONDS + job_watchdog.SETTLE_SECONDS)
