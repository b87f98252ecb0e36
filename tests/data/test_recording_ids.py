"""Recording ids (walks): the authors'-layout recordings file, walk grouping
from every source, and walks that never straddle train and test."""

import numpy as np
import pytest

from sge_jax.data import recording_ids
from sge_jax.data.authors_layout import load_authors_dataset
from sge_jax.data.authors_writer import write_authors_split
from sge_jax.data.npz_format import load_npz_dataset
from sge_jax.data.synthetic import make_synthetic_dataset
from sge_jax.data.windows import EDGE_FRAMES_DROPPED
from sge_jax.errors import DataError
from sge_jax.evaluate.walks import group_windows

LENGTH = 6


def _split(seed, people, per_person, num_joints=20):
  rng = np.random.default_rng(seed)
  labels = np.repeat(np.asarray(people), per_person)
  sequences = rng.normal(size=(labels.size, LENGTH, num_joints, 3))
  return sequences.astype(np.float32), labels


def _write(root, train_recordings=None, test_recordings=None, name='MYSET'):
  folder = root / name / str(LENGTH)
  train = _split(0, [1, 2], 4)
  test = _split(1, [1, 2], 2)
  written = {
      'train': write_authors_split(folder, name, LENGTH, *train, train=True,
                                   recordings=train_recordings),
      'test': write_authors_split(folder, name, LENGTH, *test, train=False,
                                  recordings=test_recordings)}
  return folder, written


def test_recordings_file_round_trips_through_the_authors_layout(tmp_path):
  train_ids = np.array([10, 10, 11, 11, 12, 12, 13, 13])
  test_ids = np.array([20, 20, 21, 21])
  folder, written = _write(tmp_path, train_ids, test_ids)
  assert written['train'][-1] == (folder / 'MYSET_train_npy_data'
                                  / 'recordings_MYSET_6.npy')
  assert written['test'][-1].name == 'recordings_MYSET_6.npy'
  # A plain int64 array: readable without pickles, by any tool.
  raw = np.load(written['train'][-1], allow_pickle=False)
  assert raw.dtype == np.int64
  dataset = load_authors_dataset(tmp_path, 'MYSET', LENGTH)
  np.testing.assert_array_equal(dataset.split('train').recordings, train_ids)
  np.testing.assert_array_equal(dataset.split('test').recordings, test_ids)


def test_without_the_file_recordings_are_unknown(tmp_path):
  _, written = _write(tmp_path)
  assert all('recordings_' not in path.name for paths in written.values()
             for path in paths)
  dataset = load_authors_dataset(tmp_path, 'MYSET', LENGTH)
  assert dataset.split('train').recordings is None
  assert not recording_ids.known(dataset.split('test').recordings)


def test_a_recording_in_train_and_test_is_refused_at_load(tmp_path):
  _write(tmp_path, np.array([1, 1, 2, 2, 3, 3, 4, 4]),
         np.array([4, 4, 5, 5]))
  with pytest.raises(DataError, match=r'recording\(s\) 4 hold sequences of '
                     'both the train and the test split'):
    load_authors_dataset(tmp_path, 'MYSET', LENGTH)


def _bad_file(path):
  path.write_bytes(b'\x93NUMPY garbage, not an array')


@pytest.mark.parametrize('content, message', [
    (np.arange(3), 'holds 3 recording ids, but the split has 8 sequences'),
    (np.array([0, 1, 2, 3, 4, 5, 6, -2]), 'must be >= 0'),
    (np.zeros(8, np.float32), 'expected an integer array'),
    (np.zeros((8, 1), np.int64), 'expected an integer array'),
    (np.array([{'a': 1}] * 8, dtype=object),
     'expected an integer array [N] of recording ids, got object (8,)'),
    (_bad_file, 'Cannot read'),
])
def test_a_broken_recordings_file_is_named_with_the_fix(tmp_path, content,
                                                        message):
  folder, _ = _write(tmp_path)
  path = folder / 'MYSET_train_npy_data' / 'recordings_MYSET_6.npy'
  if callable(content):
    content(path)
  else:
    np.save(path, content, allow_pickle=True)
  with pytest.raises(DataError) as error:
    load_authors_dataset(tmp_path, 'MYSET', LENGTH)
  assert message in str(error.value)
  assert str(path) in str(error.value)
  assert 'delete it to load the split without recordings' in str(error.value)


def test_a_pickled_recordings_file_never_runs_code(tmp_path):
  folder, _ = _write(tmp_path)
  path = folder / 'MYSET_train_npy_data' / 'recordings_MYSET_6.npy'
  marker = tmp_path / 'ran'

  class Payload:
    def __reduce__(self):
      return (open, (str(marker), 'w'))

  np.save(path, np.array([Payload()], dtype=object), allow_pickle=True)
  with pytest.raises(DataError, match='expected an integer array'):
    load_authors_dataset(tmp_path, 'MYSET', LENGTH)
  assert not marker.exists()


def test_the_writer_refuses_bad_recordings(tmp_path):
  sequences, labels = _split(0, [1], 2)
  for bad in (np.array([0]), np.array([0, -1]), np.array([0.5, 1.0])):
    with pytest.raises(DataError, match='recordings must be'):
      write_authors_split(tmp_path, 'X', LENGTH, sequences, labels,
                          train=True, recordings=bad)


def test_npz_walks_are_its_recordings_and_never_straddle(tmp_path):
  frames = [40, 33, 51, 26, 45, 38]
  people = [4, 4, 4, 9, 9, 9]
  trials = [1, 2, 3, 1, 2, 3]
  rng = np.random.default_rng(0)
  positions = [rng.normal(size=(t, 20, 3)).astype(np.float32) for t in frames]
  path = tmp_path / 'walks.npz'
  np.savez(path, positions=np.concatenate(positions),
           seq_offsets=np.concatenate([[0], np.cumsum(frames)]),
           seq_person=np.array(people), seq_trial=np.array(trials))
  dataset = load_npz_dataset(path, LENGTH, 'trial', '1,3')
  walks = {name: group_windows(split.recordings, split.labels)
           for name, split in dataset.splits.items()}
  np.testing.assert_array_equal(walks['train'].recordings, [0, 2, 3, 5])
  np.testing.assert_array_equal(walks['test'].recordings, [1, 4])
  expected = [(frames[i] - 2 * EDGE_FRAMES_DROPPED) // LENGTH
              for i in (0, 2, 3, 5)]
  np.testing.assert_array_equal(walks['train'].num_windows, expected)
  np.testing.assert_array_equal(walks['train'].labels, [4, 4, 9, 9])
  recording_ids.check_walks_in_one_split(
      {name: split.recordings for name, split in dataset.splits.items()},
      str(path))


def test_synthetic_walks_are_separate_recordings_of_each_person():
  dataset = make_synthetic_dataset(3, LENGTH, num_people=3,
                                   recordings_per_person=2,
                                   test_recordings_per_person=1,
                                   frames_per_recording=50)
  train = group_windows(dataset.split('train').recordings,
                        dataset.split('train').labels)
  test = group_windows(dataset.split('test').recordings,
                       dataset.split('test').labels)
  assert train.count == 6 and test.count == 3
  assert set(train.num_windows) == set(test.num_windows) == {
      (50 - 2 * EDGE_FRAMES_DROPPED) // LENGTH}
  assert not recording_ids.shared_recordings(train.recordings,
                                             test.recordings)
  np.testing.assert_array_equal(np.bincount(test.labels), [1, 1, 1])


def test_require_walks_stops_level_walk_only_without_any_recordings():
  known = {'train': np.array([0, 1]), 'test': np.array([2, 2])}
  unknown = {'train': None, 'test': None}
  recording_ids.require_walks('walk', known, 'data')
  recording_ids.require_walks('both', unknown, 'data')
  with pytest.raises(DataError, match="level='walk'.*split\\(s\\) test"):
    recording_ids.require_walks('walk', unknown, 'data')
  partial = {'train': None, 'A': np.array([0]), 'B': np.array([-1])}
  assert recording_ids.splits_without_recordings(partial) == ['B']
  recording_ids.require_walks('walk', partial, 'data')


def test_a_recordings_file_giving_two_people_one_recording_is_named(tmp_path):
  folder, _ = _write(tmp_path, np.array([1, 1, 1, 1, 1, 2, 2, 2]),
                     np.array([5, 5, 6, 6]))
  with pytest.raises(DataError, match='recording 1 holds windows of people '
                     r'\[1, 2\]') as error:
    load_authors_dataset(tmp_path, 'MYSET', LENGTH)
  assert 'MYSET_train_npy_data/recordings_MYSET_6.npy' in str(error.value)


def test_ids_beyond_int64_are_refused(tmp_path):
  folder, _ = _write(tmp_path)
  path = folder / 'MYSET_train_npy_data' / 'recordings_MYSET_6.npy'
  np.save(path, np.full(8, 2**63 + 5, np.uint64))
  with pytest.raises(DataError, match='does not fit in int64'):
    load_authors_dataset(tmp_path, 'MYSET', LENGTH)


def test_rewriting_a_split_without_recordings_removes_the_old_file(tmp_path):
  folder, written = _write(tmp_path, np.arange(8), np.arange(10, 14))
  assert written['train'][-1].exists()
  sequences, labels = _split(5, [1, 2, 3], 2)
  write_authors_split(folder, 'MYSET', LENGTH, sequences, labels, train=True)
  assert not written['train'][-1].exists()
  assert load_authors_dataset(tmp_path, 'MYSET', LENGTH).split(
      'train').recordings is None
