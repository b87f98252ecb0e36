"""Bad inputs give DataError/ConfigError messages that name the file and the fix."""

import dataclasses

import numpy as np
import pytest

from sge_jax.config import get_config, validate_config
from tests.fixtures.data import random_split, write_dataset
from tests.fixtures.pipeline import resolved_run
from sge_jax.data.authors_layout import load_authors_dataset
from sge_jax.data.authors_writer import write_authors_split
from sge_jax.data.loading import check_trainable, load_dataset
from sge_jax.data.synthetic import make_synthetic_dataset
from sge_jax.errors import ConfigError, DataError


@pytest.fixture
def kgbd(tmp_path):
  """A small KGBD set in the authors' layout; returns (root, train folder)."""
  write_dataset(tmp_path / 'KGBD' / '6', 'KGBD', 6, 20, test_tags=['KGBD'])
  return tmp_path, tmp_path / 'KGBD' / '6' / 'KGBD_train_npy_data'


def _authors_config(root, name='KGBD', length=6, **data):
  config = get_config()
  config.data.format = 'authors'
  config.data.root = str(root)
  config.data.name = name
  config.data.length = length
  for key, value in data.items():
    setattr(config.data, key, value)
  return resolved_run(config).data


def _message(error_type, function, *args, **kwargs):
  with pytest.raises(error_type) as error:
    function(*args, **kwargs)
  return str(error.value)


def _assert_getting_data_hint(message):
  assert 'Getting the data' in message
  assert 'python -m sge_jax.preprocess' in message


# ------------------------------------------------------------ folders and names


def test_missing_root(tmp_path):
  message = _message(DataError, load_dataset,
                     _authors_config(tmp_path / 'Datasets'))
  assert str(tmp_path / 'Datasets') in message
  assert 'KGBD_train_npy_data/source_x_KGBD_6.npy' in message
  _assert_getting_data_hint(message)


def test_unknown_dataset_lists_those_on_disk(kgbd):
  root, _ = kgbd
  (root / 'IAS').mkdir()
  message = _message(DataError, load_dataset, _authors_config(root, 'BIWI'))
  assert "Unknown dataset 'BIWI'" in message
  assert 'IAS, KGBD' in message
  _assert_getting_data_hint(message)


def test_unknown_length_lists_lengths_on_disk(kgbd):
  root, _ = kgbd
  (root / 'KGBD' / '10').mkdir()
  message = _message(DataError, load_dataset, _authors_config(root, length=8))
  assert str(root / 'KGBD' / '8') in message
  assert 'Lengths on disk for KGBD: 6, 10' in message


def test_missing_training_folder_lists_expected_paths(tmp_path):
  write_dataset(tmp_path / 'IAS' / '6', 'IAS', 6, 20, test_tags=['IAS-A'],
                with_train=False)
  message = _message(DataError, load_authors_dataset, tmp_path, 'IAS', 6)
  assert 'Missing the training folder' in message
  assert str(tmp_path / 'IAS' / '6' / 'IAS_train_npy_data' / 'source_x_IAS_6.npy'
             ) in message
  assert 'ids_IAS_6.npy' in message
  _assert_getting_data_hint(message)


def test_empty_length_folder_lists_both_data_folders(tmp_path):
  (tmp_path / 'KGBD' / '6').mkdir(parents=True)
  message = _message(DataError, load_authors_dataset, tmp_path, 'KGBD', 6)
  assert 'KGBD_train_npy_data' in message and 't_source_z_KGBD_6.npy' in message
  _assert_getting_data_hint(message)


def test_cme_expected_paths_use_the_casia_b_folder_names(tmp_path):
  (tmp_path / 'CASIA_B_match' / '50' / 'nm.bg').mkdir(parents=True)
  message = _message(DataError, load_authors_dataset, tmp_path, 'CASIA_B_match',
                     50, view='nm.bg')
  assert 'nm.bg/CASIA_B_test_npy_data/t_source_x_CASIA_B_50.npy' in message


def test_missing_test_folder(kgbd):
  root, _ = kgbd
  test_folder = root / 'KGBD' / '6' / 'KGBD_test_npy_data'
  for path in test_folder.iterdir():
    path.unlink()
  test_folder.rmdir()
  message = _message(DataError, load_authors_dataset, root, 'KGBD', 6)
  assert 'Missing the test folder' in message
  assert 't_source_x_KGBD_6.npy' in message


@pytest.mark.parametrize('missing', ['source_y_KGBD_6.npy', 'ids_KGBD_6.npy'])
def test_missing_file_is_named(kgbd, missing):
  root, train_folder = kgbd
  (train_folder / missing).unlink()
  message = _message(DataError, load_authors_dataset, root, 'KGBD', 6)
  assert str(train_folder / missing) in message
  _assert_getting_data_hint(message)


def test_files_for_another_length(kgbd):
  root, train_folder = kgbd
  for path in train_folder.iterdir():
    path.rename(path.with_name(path.name.replace('_6.npy', '_8.npy')))
  message = _message(DataError, load_authors_dataset, root, 'KGBD', 6)
  assert 'source_x_KGBD_8.npy' in message
  assert 'config.data.length' in message


def test_unknown_view_lists_views_on_disk(tmp_path):
  for view in ('view_0', 'view_3'):
    write_dataset(tmp_path / 'KS20' / '6' / view, 'KS20', 6, 25,
                  test_tags=['KS20'])
  message = _message(DataError, load_authors_dataset, tmp_path, 'KS20', 6,
                     view='7')
  assert "Unknown view '7'" in message and 'view_0, view_3' in message
  message = _message(DataError, load_authors_dataset, tmp_path, 'KS20', 6)
  assert 'set --config.data.view' in message and 'view_0, view_3' in message


def test_view_for_a_dataset_without_views(kgbd):
  root, _ = kgbd
  message = _message(DataError, load_authors_dataset, root, 'KGBD', 6, view='1')
  assert "Unknown view '1'" in message and "--config.data.view=''" in message


def test_unknown_cme_condition_lists_conditions(tmp_path):
  write_dataset(tmp_path / 'CASIA_B_match' / '50', 'CASIA_B', 50, 14,
                test_subfolders=['nm', 'cl'], with_train=False)
  message = _message(DataError, load_authors_dataset, tmp_path, 'CASIA_B_match',
                     50, view='bg.nm')
  assert "'bg'" in message and 'cl, nm' in message


def test_unknown_probe_lists_test_splits(tmp_path):
  write_dataset(tmp_path / 'IAS' / '6', 'IAS', 6, 20,
                test_tags=['IAS-A', 'IAS-B'])
  message = _message(DataError, load_dataset,
                     _authors_config(tmp_path, 'IAS', probe='A,C'))
  assert "Unknown test split(s) 'C'" in message and 'A, B' in message
  dataset = load_dataset(_authors_config(tmp_path, 'IAS', probe='B'))
  assert list(dataset.splits) == ['train', 'B']


def test_split_found_twice(tmp_path):
  write_dataset(tmp_path / 'BIWI' / '6', 'BIWI', 6, 20, test_tags=['BIWI'],
                test_subfolders=['Walking'])
  message = _message(DataError, load_authors_dataset, tmp_path, 'BIWI', 6)
  assert "Test split 'Walking' found twice" in message
  assert str(tmp_path / 'BIWI' / '6' / 'BIWI_test_npy_data' / 'Walking') in message


def test_foreign_file_tag_in_test_folder(kgbd):
  root, _ = kgbd
  test_folder = root / 'KGBD' / '6' / 'KGBD_test_npy_data'
  np.save(test_folder / 't_source_x_OTHER_6.npy', np.zeros((6, 20)))
  message = _message(DataError, load_authors_dataset, root, 'KGBD', 6)
  assert 't_source_x_OTHER_6.npy' in message


# ------------------------------------------------------------ array contents


def test_xyz_shape_mismatch(kgbd):
  root, train_folder = kgbd
  y = np.load(train_folder / 'source_y_KGBD_6.npy')
  np.save(train_folder / 'source_y_KGBD_6.npy', y[:-6])
  message = _message(DataError, load_authors_dataset, root, 'KGBD', 6)
  assert 'disagree in shape' in message
  assert 'source_x_KGBD_6.npy' in message and 'source_y_KGBD_6.npy' in message


@pytest.mark.parametrize('bad_value', [np.nan, np.inf])
def test_non_finite_values_name_file_and_first_index(kgbd, bad_value):
  root, train_folder = kgbd
  path = train_folder / 'source_z_KGBD_6.npy'
  z = np.load(path)
  z[13, 4] = bad_value
  z[20, 0] = bad_value
  np.save(path, z)
  message = _message(DataError, load_authors_dataset, root, 'KGBD', 6)
  assert str(path) in message
  assert '2 NaN/Inf' in message and 'index (13, 4)' in message
  assert 'sequence 2, frame 1, joint 4' in message


def test_rows_not_a_multiple_of_the_length(kgbd):
  root, train_folder = kgbd
  for axis in 'xyz':
    path = train_folder / f'source_{axis}_KGBD_6.npy'
    np.save(path, np.load(path)[:-2])
  message = _message(DataError, load_authors_dataset, root, 'KGBD', 6)
  assert 'source_x_KGBD_6.npy' in message
  assert 'not a positive multiple of f=6' in message


def test_three_dimensional_file_with_another_length(kgbd):
  root, train_folder = kgbd
  np.save(train_folder / 'source_x_KGBD_6.npy', np.zeros((3, 4, 20)))
  message = _message(DataError, load_authors_dataset, root, 'KGBD', 6)
  assert 'source_x_KGBD_6.npy' in message
  assert 'f=4 frames' in message and 'config.data.length=6' in message


@pytest.mark.parametrize('array', [np.zeros((12 * 6, 0), np.float32),
                                   np.zeros((12, 6, 0), np.float32)])
def test_a_file_without_joints_is_refused(kgbd, array):
  root, train_folder = kgbd
  for axis in 'xyz':
    np.save(train_folder / f'source_{axis}_KGBD_6.npy', array)
  message = _message(DataError, load_authors_dataset, root, 'KGBD', 6)
  assert 'source_x_KGBD_6.npy' in message and 'holds no joints (J=0)' in message


def test_corrupt_npy_file(kgbd):
  root, train_folder = kgbd
  (train_folder / 'source_x_KGBD_6.npy').write_bytes(b'garbage')
  message = _message(DataError, load_authors_dataset, root, 'KGBD', 6)
  assert 'Cannot read' in message and 'source_x_KGBD_6.npy' in message


def test_target_not_reversed_source(kgbd):
  root, train_folder = kgbd
  path = train_folder / 'target_y_KGBD_6.npy'
  np.save(path, np.load(train_folder / 'source_y_KGBD_6.npy'))
  message = _message(DataError, load_authors_dataset, root, 'KGBD', 6)
  assert str(path) in message and 'not its source file reversed' in message


@pytest.mark.parametrize('ids, expected', [
    ({0: [0, 1, 2, 3], 1: [4, 5, 6, 7], 2: [8, 9, 10]},
     'have no person (first: [11])'),
    ({0: [0, 1, 2, 3], 1: [3, 4, 5, 6, 7], 2: [8, 9, 10, 11]},
     'sequence index 3 is listed twice (persons 0 and 1)'),
    ({0: [0, 1, 2, 3], 1: [4, 5, 6, 7], 2: [8, 9, 10, 12]},
     'lists sequence index 12'),
    ({'anna': list(range(12))}, "person id 'anna' that is not an integer"),
])
def test_bad_ids(kgbd, ids, expected):
  root, train_folder = kgbd
  path = train_folder / 'ids_KGBD_6.npy'
  np.save(path, ids)
  message = _message(DataError, load_authors_dataset, root, 'KGBD', 6)
  assert str(path) in message and expected in message


def test_ids_not_a_dict(kgbd):
  root, train_folder = kgbd
  path = train_folder / 'ids_KGBD_6.npy'
  np.save(path, np.arange(12))
  message = _message(DataError, load_authors_dataset, root, 'KGBD', 6)
  assert str(path) in message and 'pickled dict' in message


def test_joint_count_differs_between_splits(tmp_path):
  length_dir = tmp_path / 'KGBD' / '6'
  write_dataset(length_dir, 'KGBD', 6, 20)
  write_authors_split(length_dir, 'KGBD', 6, *random_split(0, [0], 2, 6, 25),
                      train=False)
  message = _message(DataError, load_authors_dataset, tmp_path, 'KGBD', 6)
  assert 'number of joints' in message and "'train': 20" in message


# ------------------------------------------------------------ config and batch


def test_unknown_format_and_bad_length():
  data = resolved_run(get_config()).data      # settings no config resolves to
  message = _message(ConfigError, load_dataset,
                     dataclasses.replace(data, format='csv'))
  assert "'csv'" in message and 'authors, npz, synthetic' in message
  assert 'config.data.length' in _message(ConfigError, load_dataset,
                                          dataclasses.replace(
                                              data, format='synthetic',
                                              length=0))


def test_npz_format_needs_a_path():
  config = get_config()
  config.data.format = 'npz'
  assert 'config.data.path' in _message(ConfigError, validate_config,
                                        config, 1)


def test_check_trainable():
  dataset = make_synthetic_dataset(0, 6, num_people=2, recordings_per_person=1,
                                   test_recordings_per_person=1,
                                   frames_per_recording=50)
  assert dataset.split('train').num_sequences == 10
  check_trainable(dataset, 10)
  message = _message(DataError, check_trainable, dataset, 128)
  assert 'has 10 sequences' in message
  assert '--config.train.batch_size (at most 10)' in message


def test_check_trainable_without_train_split(tmp_path):
  write_dataset(tmp_path / 'CASIA_B_match' / '50' / 'nm.nm', 'CASIA_B', 50, 14,
                test_subfolders=['gallery', 'probe'], with_train=False)
  dataset = load_authors_dataset(tmp_path, 'CASIA_B_match', 50, view='nm.nm')
  message = _message(DataError, check_trainable, dataset, 8)
  assert 'no train split' in message and '--config.encoder_workdir' in message


def test_an_empty_split_is_called_empty(tmp_path):
  write_dataset(tmp_path / 'X' / '6', 'X', 6, 20, test_tags=('X',))
  path = tmp_path / 'X' / '6' / 'X_test_npy_data' / 't_source_x_X_6.npy'
  for axis in 'xyz':
    np.save(path.with_name(f't_source_{axis}_X_6.npy'),
            np.zeros((0, 20), np.float32))
  for target in path.parent.glob('t_target_*'):
    target.unlink()
  message = _message(DataError, load_authors_dataset, tmp_path, 'X', 6)
  assert 'is empty' in message and 'rows is not' not in message


def test_a_directory_or_a_file_where_the_other_is_expected(tmp_path):
  config = get_config()
  config.data.format = 'npz'
  config.data.path = str(tmp_path)
  assert 'is a directory' in _message(DataError, load_dataset,
                                      resolved_run(config).data)
  a_file = tmp_path / 'Datasets'
  a_file.write_text('x')
  assert 'is a file' in _message(DataError, load_authors_dataset, a_file, 'X', 6)
