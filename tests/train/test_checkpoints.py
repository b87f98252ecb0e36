"""The Orbax wrapper: typed keys, keep-last-N, damage fallback, shape mismatch."""

import glob
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

# Orbax leaves an asyncio task behind when it fails to read a damaged file; the
# warning about it comes from Orbax's internals, not from what is tested here.
pytestmark = pytest.mark.filterwarnings(
    'ignore::pytest.PytestUnraisableExceptionWarning')

from sge_jax.train.checkpoints import (CheckpointError, CheckpointMismatchError,
                                   check_newest_checkpoint_fits,
                                   has_checkpoints,
                                   CheckpointStore)


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
