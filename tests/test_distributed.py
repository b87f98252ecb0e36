"""sge_jax.distributed in one process: flag checks, the coordinator pre-check,
checksums and the agreement helpers (which are no-ops for a single process).
The multi-process behaviour is tested with real processes in
test_many_processes.py."""

import socket
import time

import numpy as np
import pytest

from sge_jax import distributed, job_watchdog
from sge_jax.errors import DataError, DistributedError

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


def test_a_listening_coordinator_passes_the_check():
  with socket.socket() as server:
    server.bind(('127.0.0.1', 0))
    server.listen()
    distributed.wait_for_coordinator(f'127.0.0.1:{server.getsockname()[1]}', 5)


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
