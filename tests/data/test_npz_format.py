"""Generic skeleton .npz: cutting, stored order, split rule, errors, real GIST file."""

import pathlib

import numpy as np
import pytest

from sge_jax.data import joints
from sge_jax.data.npz_format import load_npz_dataset, parse_value_set
from sge_jax.data.windows import cut_windows
from sge_jax.errors import DataError

GIST = pathlib.Path('/work/shared/data/real_kinect_gait/gist_gait_normal.npz')

# (person, trial, view, frames) per recording, in stored order.
_RECORDINGS = [
    (4, 1, 1, 40), (4, 2, 2, 33), (4, 3, 1, 51),
    (9, 1, 2, 26), (9, 2, 1, 45), (9, 3, 2, 38),
]


def _recordings(num_joints=20, seed=0):
  rng = np.random.default_rng(seed)
  return [rng.normal(size=(frames, num_joints, 3)).astype(np.float32)
          for *_, frames in _RECORDINGS]


def _write_npz(path, recordings, **extra):
  lengths = [r.shape[0] for r in recordings]
  fields = dict(
      positions=np.concatenate(recordings),
      seq_offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
      seq_person=np.array([p for p, *_ in _RECORDINGS], dtype=np.int32),
      seq_trial=np.array([t for _, t, *_ in _RECORDINGS], dtype=np.int32),
      seq_view=np.array([v for _, _, v, _ in _RECORDINGS], dtype=np.int32))
  fields.update(extra)
  fields = {k: v for k, v in fields.items() if v is not None}
  np.savez(path, **fields)
  return path


def test_parse_value_set():
  assert parse_value_set('1-10') == frozenset(range(1, 11))
  assert parse_value_set('1,3,5-7') == {1, 3, 5, 6, 7}
  assert parse_value_set(' 4 ') == {4}
  assert parse_value_set('2, 8 - 9') == {2, 8, 9}


@pytest.mark.parametrize('text', ['', '1-', 'a', '5-3', '1,,x', '1..3'])
def test_parse_value_set_rejects(text):
  with pytest.raises(DataError, match='train_values'):
    parse_value_set(text)


def test_windows_stored_order_and_trial_split(tmp_path):
  recordings = _recordings()
  path = _write_npz(tmp_path / 'walks.npz', recordings)
  dataset = load_npz_dataset(path, 6, 'trial', '1,3')

  assert dataset.name == 'walks' and dataset.length == 6
  assert list(dataset.splits) == ['train', 'test']
  train_indices = [0, 2, 3, 5]  # trials 1 and 3, in stored order
  expected = [cut_windows(recordings[i], 6) for i in train_indices]
  train = dataset.split('train')
  np.testing.assert_array_equal(train.sequences, np.concatenate(expected))
  np.testing.assert_array_equal(
      train.recordings,
      np.concatenate([[i] * len(w) for i, w in zip(train_indices, expected)]))
  np.testing.assert_array_equal(
      train.labels,
      np.concatenate([[_RECORDINGS[i][0]] * len(w)
                      for i, w in zip(train_indices, expected)]))
  # (40-20)//6=3, (51-20)//6=5, (26-20)//6=1, (38-20)//6=3
  assert train.num_sequences == 12

  test = dataset.split('test')
  np.testing.assert_array_equal(np.unique(test.recordings), [1, 4])
  assert test.num_sequences == (33 - 20) // 6 + (45 - 20) // 6
  assert train.sequences.dtype == np.float32 and train.labels.dtype == np.int64


def test_split_by_view(tmp_path):
  path = _write_npz(tmp_path / 'walks.npz', _recordings())
  dataset = load_npz_dataset(path, 4, split_field='view', train_values='2')
  np.testing.assert_array_equal(np.unique(dataset.split('train').recordings),
                                [1, 3, 5])
  np.testing.assert_array_equal(np.unique(dataset.split('test').recordings),
                                [0, 2, 4])


def test_empty_split_because_recordings_are_short(tmp_path):
  path = _write_npz(tmp_path / 'walks.npz', _recordings())
  with pytest.raises(DataError, match='shorter than 51 frames'):
    load_npz_dataset(path, 31, 'trial', '1')


def test_short_recordings_yield_no_windows(tmp_path):
  path = _write_npz(tmp_path / 'walks.npz', _recordings())
  dataset = load_npz_dataset(path, 10, 'trial', '1')
  # Recording 3 has 26 frames: 6 usable, fewer than f=10.
  np.testing.assert_array_equal(np.unique(dataset.split('train').recordings),
                                [0])


def test_joint_names_and_bones_from_file_or_layout(tmp_path):
  path = _write_npz(tmp_path / 'plain.npz', _recordings())
  dataset = load_npz_dataset(path, 6, 'trial', '1')
  assert tuple(dataset.joint_names) == joints.KINECT_V1.joint_names
  assert tuple(dataset.bones) == joints.KINECT_V1.bones

  names = np.array([f'j{i}' for i in range(20)])
  path = _write_npz(tmp_path / 'named.npz', _recordings(),
                    joint_names=names, bones=np.array([[0, 1], [1, 2]]))
  dataset = load_npz_dataset(path, 6, 'trial', '1')
  assert tuple(dataset.joint_names) == tuple(names.tolist())
  assert tuple(dataset.bones) == ((0, 1), (1, 2))

  path = _write_npz(tmp_path / 'odd.npz', _recordings(num_joints=18))
  dataset = load_npz_dataset(path, 6, 'trial', '1')
  assert dataset.num_joints == 18
  assert dataset.joint_names is None and dataset.bones is None


def test_missing_split_field(tmp_path):
  path = _write_npz(tmp_path / 'walks.npz', _recordings(), seq_view=None)
  with pytest.raises(DataError) as error:
    load_npz_dataset(path, 6, split_field='view')
  message = str(error.value)
  assert 'walks.npz' in message and "'seq_view'" in message
  assert 'person, trial' in message


def test_unparsable_train_values(tmp_path):
  path = _write_npz(tmp_path / 'walks.npz', _recordings())
  with pytest.raises(DataError, match="train_values='1-x'"):
    load_npz_dataset(path, 6, train_values='1-x')


@pytest.mark.parametrize('train_values, empty', [('1-3', 'test'), ('7', 'train')])
def test_empty_split(tmp_path, train_values, empty):
  path = _write_npz(tmp_path / 'walks.npz', _recordings())
  with pytest.raises(DataError) as error:
    load_npz_dataset(path, 6, 'trial', train_values)
  message = str(error.value)
  assert 'walks.npz' in message and f'the {empty} split is empty' in message


def test_nan_positions_name_the_first_bad_frame(tmp_path):
  recordings = _recordings()
  recordings[1][5, 7, 2] = np.nan
  path = _write_npz(tmp_path / 'walks.npz', recordings)
  with pytest.raises(DataError) as error:
    load_npz_dataset(path, 6)
  assert 'walks.npz' in str(error.value)
  assert '[frame, joint, axis] = [45, 7, 2]' in str(error.value)


@pytest.mark.parametrize('positions', [
    lambda p: p.astype(np.complex64),        # would drop the imaginary part
    lambda p: p[:, :0],                       # no joints
    lambda p: p > 0,                          # booleans
])
def test_positions_of_a_wrong_kind_are_refused(tmp_path, positions):
  recordings = _recordings()
  lengths = np.cumsum([0] + [r.shape[0] for r in recordings])
  path = _write_npz(tmp_path / 'walks.npz', recordings,
                    positions=positions(np.concatenate(recordings)),
                    seq_offsets=lengths)
  with pytest.raises(DataError, match='walks.npz: positions must be a real '
                     r'\[T, J, 3\] array with J >= 1'):
    load_npz_dataset(path, 6)


def test_missing_fields_and_bad_offsets(tmp_path):
  path = _write_npz(tmp_path / 'noperson.npz', _recordings(), seq_person=None)
  with pytest.raises(DataError, match='noperson.npz lacks the field.*seq_person'):
    load_npz_dataset(path, 6)

  recordings = _recordings()
  path = _write_npz(tmp_path / 'offsets.npz', recordings,
                    seq_offsets=np.array([0, 40, 30, 290], dtype=np.int64))
  with pytest.raises(DataError, match='offsets.npz: seq_offsets'):
    load_npz_dataset(path, 6)

  path = _write_npz(tmp_path / 'persons.npz', recordings,
                    seq_person=np.zeros(4, dtype=np.int32))
  with pytest.raises(DataError, match=r'persons.npz: seq_person .*\[6\]'):
    load_npz_dataset(path, 6)


def test_missing_or_corrupt_file(tmp_path):
  with pytest.raises(DataError, match='nothere.npz.*does not exist'):
    load_npz_dataset(tmp_path / 'nothere.npz', 6)
  corrupt = tmp_path / 'corrupt.npz'
  corrupt.write_bytes(b'not a zip archive')
  with pytest.raises(DataError, match='Cannot read .*corrupt.npz'):
    load_npz_dataset(corrupt, 6)


@pytest.mark.skipif(not GIST.is_file(), reason='real GIST recordings not present')
def test_real_gist_recordings():
  dataset = load_npz_dataset(GIST, 6, 'trial', '1-10')
  assert dataset.name == 'gist_gait_normal'
  assert dataset.num_joints == 25
  assert dataset.joint_names[0] == 'SpineBase'
  assert len(dataset.bones) == 24

  with np.load(GIST) as raw:
    trials = raw['seq_trial']
    offsets = raw['seq_offsets']
    positions = raw['positions']
  for split_name, in_train in (('train', True), ('test', False)):
    split = dataset.split(split_name)
    assert np.unique(split.labels).tolist() == list(range(10))
    recording_trials = trials[split.recordings]
    assert ((recording_trials <= 10) == in_train).all()
    # Stored order: recordings appear in file order, each one contiguous.
    assert (np.diff(split.recordings) >= 0).all()
  first = int(dataset.split('test').recordings[0])
  np.testing.assert_array_equal(
      dataset.split('test').sequences[:3],
      cut_windows(positions[offsets[first]:offsets[first + 1]], 6)[:3])
