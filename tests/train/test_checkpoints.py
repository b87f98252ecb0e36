"""The Orbax wrapper: typed keys, keep-last-N, damage fallback, shape mismatch."""

import glob
import logging
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

# Orbax leaves an asyncio task behind when it fails to read a damaged file; the
# warning about it comes from Orbax's internals, not from what is tested here.
pytestmark = pytest.mark.filterwarnings(
    'ignore::pytest.PytestUnraisableExceptionWarning')

from sge_jax.train.checkpoints import (CheckpointError, CheckpointMismatchError,
                                       CheckpointStore,
                                       check_newest_checkpoint_fits,
                                       has_checkpoints)
from tests.fixtures import ctrl_c

REPO = pathlib.Path(__file__).resolve().parents[2]


def _tree(offset=0.0):
  return {'w': jnp.arange(2000.0) + offset, 'key': jax.random.key(3),
          'count': np.int32(7)}


def _damage(step_dir):
  """Flips a byte near the end of every stored data file of one checkpoint."""
  for path in glob.glob(f'{step_dir}/**/d/*', recursive=True):
    data = bytearray(open(path, 'rb').read())
    if len(data) > 64:
      data[-40] ^= 0xFF
      open(path, 'wb').write(bytes(data))


def test_round_trip_keeps_typed_keys_and_the_newest_n(tmp_path):
  store = CheckpointStore(tmp_path, max_to_keep=2)
  assert store.restore_latest(_tree()) is None
  for step in (1, 2, 3):
    store.save(step, _tree(step))
  assert store.steps() == [2, 3]
  step, restored = store.restore_latest(_tree())
  assert step == 3
  np.testing.assert_array_equal(restored['w'], np.arange(2000.0) + 3)
  assert jax.dtypes.issubdtype(restored['key'].dtype, jax.dtypes.prng_key)
  np.testing.assert_array_equal(jax.random.key_data(restored['key']),
                                jax.random.key_data(jax.random.key(3)))


def test_damaged_newest_checkpoint_falls_back_with_a_warning(tmp_path, caplog):
  store = CheckpointStore(tmp_path)
  for step in (1, 2):
    store.save(step, _tree(step))
  _damage(tmp_path / '2')
  with caplog.at_level(logging.WARNING):
    step, restored = store.restore_latest(_tree())
  assert step == 1
  np.testing.assert_array_equal(restored['w'], np.arange(2000.0) + 1)
  assert 'falling back to the previous checkpoint' in caplog.text
  assert (tmp_path / 'damaged_2').exists() and store.steps() == [1]
  store.save(2, _tree(2))                      # the step can be written again
  assert store.restore_latest(_tree())[0] == 2
  _damage(tmp_path / '2')                      # ... and be damaged again
  assert store.restore_latest(_tree())[0] == 1
  assert (tmp_path / 'damaged_2').exists() and (tmp_path / 'damaged_2_2').exists()


def test_has_checkpoints_does_not_create_the_directory(tmp_path):
  assert not has_checkpoints(tmp_path / 'checkpoints')
  assert not (tmp_path / 'checkpoints').exists()
  with CheckpointStore(tmp_path / 'checkpoints') as store:
    assert not has_checkpoints(tmp_path / 'checkpoints')
    store.save(3, _tree(3))
  assert has_checkpoints(tmp_path / 'checkpoints')


def test_truncated_data_file_is_detected(tmp_path):
  store = CheckpointStore(tmp_path)
  store.save(1, _tree(1))
  store.save(2, _tree(2))
  for path in glob.glob(f'{tmp_path}/2/**/d/*', recursive=True):
    with open(path, 'r+b') as f:
      f.truncate(8)
  assert store.restore_latest(_tree())[0] == 1


def test_all_damaged_is_an_error_not_a_silent_restart(tmp_path):
  store = CheckpointStore(tmp_path)
  store.save(1, _tree(1))
  _damage(tmp_path / '1')
  with pytest.raises(CheckpointError, match='No checkpoint could be restored'):
    store.restore_latest(_tree())


def test_other_shapes_are_a_mismatch_and_leave_the_checkpoint_alone(tmp_path):
  store = CheckpointStore(tmp_path)
  store.save(1, _tree())
  wrong = dict(_tree(), w=jnp.zeros(10))
  with pytest.raises(CheckpointMismatchError, match='w: saved'):
    store.restore_latest(wrong)
  assert store.steps() == [1]


# ------------------------------------------------------ interruptions and faults

_FULL_DISK_SAVE = r'''
import resource, signal, sys
import numpy as np
from sge_jax.errors import WorkdirError
from sge_jax.train.checkpoints import CheckpointStore

store = CheckpointStore(sys.argv[1])
store.save(1, {'w': np.zeros(1000, np.float32)})
# Files beyond 64 KiB fail with EFBIG, as on a full disk: a real failure of
# TensorStore's own writes, not a mock.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE,
                   (1 << 16, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
rng = np.random.default_rng(0)
try:
  store.save(2, {'w': rng.normal(size=(8, 100000)).astype(np.float32)})
except WorkdirError as error:
  print(error)
import time; time.sleep(1)   # TensorStore's abandoned writes end meanwhile
'''


@pytest.mark.slow
def test_a_save_that_fails_for_lack_of_space_is_one_line_and_keeps_the_rest(
    tmp_path):
  run = subprocess.run([sys.executable, '-c', _FULL_DISK_SAVE, str(tmp_path)],
                       capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
  assert run.returncode == 0, run.stderr[-3000:]
  assert run.stdout.strip() == (
      f'cannot write checkpoint step 2 in {tmp_path}: File too large (errno '
      '27); raise the file size limit (ulimit -f) and run the same command '
      'again; the previous checkpoints are kept')
  assert 'Traceback' not in run.stderr and 'Event loop' not in run.stderr
  assert sorted(p.name for p in tmp_path.iterdir()) == ['1']
  step, restored = CheckpointStore(tmp_path).restore_latest(
      {'w': np.zeros(1000, np.float32)})
  assert step == 1


def test_unfinished_saves_are_removed_before_the_steps_are_listed(tmp_path):
  with CheckpointStore(tmp_path) as store:
    store.save(1, _tree(1))
  for name in ('2.orbax-checkpoint-tmp', '3.orbax-checkpoint-tmp-1700000000'):
    (tmp_path / name / 'default').mkdir(parents=True)
  store = CheckpointStore(tmp_path)
  assert sorted(p.name for p in tmp_path.iterdir()) == ['1']
  assert store.steps() == [1]
  store.save(2, _tree(2))
  assert store.steps() == [1, 2]


def test_ctrl_c_waits_for_the_save_to_finish(tmp_path, monkeypatch):
  store = CheckpointStore(tmp_path)
  real_save = store._manager.save

  def interrupted_save(*args, **kwargs):
    ctrl_c.press(2)                    # twice: "stop at once" too
    return real_save(*args, **kwargs)

  monkeypatch.setattr(store._manager, 'save', interrupted_save)
  with ctrl_c.commands_handler():
    with pytest.raises(KeyboardInterrupt):   # raised once the save is done
      store.save(1, _tree(1))
  assert sorted(p.name for p in tmp_path.iterdir()) == ['1']
  assert CheckpointStore(tmp_path).restore_latest(_tree())[0] == 1


def test_the_newest_checkpoint_is_checked_from_its_metadata_alone(tmp_path):
  with CheckpointStore(tmp_path) as store:
    store.save(1, _tree())
    store.save(2, dict(_tree(), w=jnp.zeros(10)))
  with pytest.raises(CheckpointMismatchError, match='checkpoint 2 .* tree/w: saved'):
    check_newest_checkpoint_fits(tmp_path, _tree())
  check_newest_checkpoint_fits(tmp_path, dict(_tree(), w=jnp.zeros(10)))
  # A step whose metadata cannot be read is passed over for the next older.
  (tmp_path / '2' / 'default' / '_METADATA').unlink()
  check_newest_checkpoint_fits(tmp_path, _tree())
  with pytest.raises(CheckpointMismatchError, match='checkpoint 1 '):
    check_newest_checkpoint_fits(tmp_path, dict(_tree(), w=jnp.zeros(10)))
  assert sorted(path.name for path in tmp_path.iterdir()) == ['1', '2']
