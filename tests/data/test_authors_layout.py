"""The authors' .npy layout: writer file names and every supported folder layout."""

import pathlib

import numpy as np
import pytest

from tests.fixtures.data import random_split, write_dataset
from sge_jax.data import joints
from sge_jax.data.authors_arrays import labels_from_ids
from sge_jax.data.authors_layout import load_authors_dataset
from sge_jax.data.authors_writer import write_authors_split


def _save_by_hand(folder, prefix, tag, length, sequences, labels):
  """The authors' format written with raw np.save, independently of the writer."""
  folder.mkdir(parents=True, exist_ok=True)
  num_sequences, _, num_joints, _ = sequences.shape
  for axis_index, axis in enumerate('xyz'):
    flat = sequences[:, :, :, axis_index].reshape(num_sequences * length,
                                                  num_joints)
    np.save(folder / f'{prefix}source_{axis}_{tag}_{length}.npy', flat)
  ids = {}
  for index, person in enumerate(labels.tolist()):
    ids.setdefault(person, []).append(index)
  np.save(folder / f'ids_{tag}_{length}.npy', ids)


def _assert_split(split, sequences, labels):
  np.testing.assert_array_equal(split.sequences, sequences)
  np.testing.assert_array_equal(split.labels, labels)
  assert split.sequences.dtype == np.float32
  assert split.labels.dtype == np.int64


def test_writer_writes_the_authors_file_names_and_arrays(tmp_path):
  sequences, labels = random_split(0, [5, 9], 3, 6, 20)
  paths = write_authors_split(tmp_path, 'KGBD', 6, sequences, labels, train=True)
  folder = tmp_path / 'KGBD_train_npy_data'
  assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
      f'KGBD_train_npy_data/{name}' for name in (
          'source_x_KGBD_6.npy', 'source_y_KGBD_6.npy', 'source_z_KGBD_6.npy',
          'target_x_KGBD_6.npy', 'target_y_KGBD_6.npy', 'target_z_KGBD_6.npy',
          'ids_KGBD_6.npy')]
  source_y = np.load(folder / 'source_y_KGBD_6.npy')
  assert source_y.shape == (6 * 6, 20) and source_y.dtype == np.float32
  np.testing.assert_array_equal(source_y.reshape(6, 6, 20), sequences[..., 1])
  target_z = np.load(folder / 'target_z_KGBD_6.npy').reshape(6, 6, 20)
  np.testing.assert_array_equal(target_z, sequences[:, ::-1, :, 2])
  ids = np.load(folder / 'ids_KGBD_6.npy', allow_pickle=True).item()
  assert ids == {5: [0, 1, 2], 9: [3, 4, 5]}


def test_writer_test_folder_tags_and_subfolders(tmp_path):
  sequences, labels = random_split(0, [1], 2, 6, 20)
  paths = write_authors_split(tmp_path, 'IAS-A', 6, sequences, labels,
                              train=False)
  assert paths[0] == tmp_path / 'IAS_test_npy_data' / 't_source_x_IAS-A_6.npy'
  assert paths[-1] == tmp_path / 'IAS_test_npy_data' / 'ids_IAS-A_6.npy'
  paths = write_authors_split(tmp_path, 'IAS', 6, sequences, labels, train=False,
                              subfolder='B')
  assert paths[3] == tmp_path / 'IAS_test_npy_data' / 'B' / 't_target_x_IAS_6.npy'
  paths = write_authors_split(tmp_path, 'CASIA_B', 6, sequences, labels,
                              train=False, dataset_name='CASIA_B')
  assert paths[0].parent.name == 'CASIA_B_test_npy_data'


def test_hand_written_fixture_loads_and_matches_the_writer(tmp_path):
  train = random_split(1, [0, 1, 2], 3, 6, 20)
  test = random_split(2, [0, 1, 2], 1, 6, 20)
  by_hand = tmp_path / 'hand' / 'KGBD' / '6'
  _save_by_hand(by_hand / 'KGBD_train_npy_data', '', 'KGBD', 6, *train)
  _save_by_hand(by_hand / 'KGBD_test_npy_data', 't_', 'KGBD', 6, *test)

  dataset = load_authors_dataset(tmp_path / 'hand', 'KGBD', 6)
  assert list(dataset.splits) == ['train', 'test']
  _assert_split(dataset.split('train'), *train)
  _assert_split(dataset.split('test'), *test)
  assert dataset.split('train').recordings is None
  assert dataset.num_joints == 20
  assert tuple(dataset.joint_names) == joints.KINECT_V1.joint_names
  assert tuple(dataset.bones) == joints.KINECT_V1.bones
  assert dataset.source == str(by_hand)

  by_writer = tmp_path / 'writer' / 'KGBD' / '6'
  write_authors_split(by_writer, 'KGBD', 6, *train, train=True)
  write_authors_split(by_writer, 'KGBD', 6, *test, train=False)
  for relative in ('KGBD_train_npy_data/source_x_KGBD_6.npy',
                   'KGBD_test_npy_data/t_source_z_KGBD_6.npy'):
    np.testing.assert_array_equal(np.load(by_hand / relative),
                                  np.load(by_writer / relative))
  for relative in ('KGBD_train_npy_data/ids_KGBD_6.npy',
                   'KGBD_test_npy_data/ids_KGBD_6.npy'):
    assert (np.load(by_hand / relative, allow_pickle=True).item()
            == np.load(by_writer / relative, allow_pickle=True).item())


def test_custom_dataset_with_18_joints_and_non_contiguous_ids(tmp_path):
  length_dir = tmp_path / 'MYSET' / '4'
  rng = np.random.default_rng(3)
  sequences = rng.normal(size=(9, 4, 18, 3)).astype(np.float32)
  # Persons interleaved in storage order, ids far from 0..P-1.
  labels = np.array([42, 3, 3, 1017, 42, 1017, 3, 42, 42])
  _save_by_hand(length_dir / 'MYSET_train_npy_data', '', 'MYSET', 4, sequences,
                labels)
  _save_by_hand(length_dir / 'MYSET_test_npy_data', 't_', 'MYSET', 4,
                sequences[:3], labels[:3])

  dataset = load_authors_dataset(tmp_path, 'MYSET', 4)
  _assert_split(dataset.split('train'), sequences, labels)
  _assert_split(dataset.split('test'), sequences[:3], labels[:3])
  assert dataset.name == 'MYSET' and dataset.length == 4
  assert dataset.num_joints == 18
  assert dataset.joint_names is None and dataset.bones is None


def test_sources_stored_as_n_f_j_and_without_targets(tmp_path):
  length_dir = tmp_path / 'KGBD' / '6'
  written = write_dataset(length_dir, 'KGBD', 6, 20, test_tags=['KGBD'])
  train_folder = length_dir / 'KGBD_train_npy_data'
  sequences = written['train'][0]
  for axis_index, axis in enumerate('xyz'):
    np.save(train_folder / f'source_{axis}_KGBD_6.npy',
            sequences[..., axis_index])
    (train_folder / f'target_{axis}_KGBD_6.npy').unlink()
  dataset = load_authors_dataset(tmp_path, 'KGBD', 6)
  _assert_split(dataset.split('train'), *written['train'])
  _assert_split(dataset.split('test'), *written['KGBD'])


def test_ias_two_test_sets_in_one_folder(tmp_path):
  written = write_dataset(tmp_path / 'IAS' / '6', 'IAS', 6, 20,
                          test_tags=['IAS-B', 'IAS-A'], person_ids=[0, 4, 7])
  dataset = load_authors_dataset(tmp_path, 'IAS', 6)
  assert list(dataset.splits) == ['train', 'A', 'B']
  assert dataset.test_split_names == ['A', 'B']
  _assert_split(dataset.split('A'), *written['IAS-A'])
  _assert_split(dataset.split('B'), *written['IAS-B'])
  _assert_split(dataset.split('train'), *written['train'])


def test_biwi_walking_and_still_in_one_folder(tmp_path):
  written = write_dataset(tmp_path / 'BIWI' / '6', 'BIWI', 6, 20,
                          test_tags=['BIWI', 'BIWI-Still'])
  dataset = load_authors_dataset(tmp_path, 'BIWI', 6)
  assert list(dataset.splits) == ['train', 'Walking', 'Still']
  _assert_split(dataset.split('Walking'), *written['BIWI'])
  _assert_split(dataset.split('Still'), *written['BIWI-Still'])


def test_biwi_authors_release_has_only_walking(tmp_path):
  written = write_dataset(tmp_path / 'BIWI' / '8', 'BIWI', 8, 20,
                          test_tags=['BIWI'])
  dataset = load_authors_dataset(tmp_path, 'BIWI', 8)
  assert dataset.test_split_names == ['Walking']
  _assert_split(dataset.split('Walking'), *written['BIWI'])


@pytest.mark.parametrize('view', ['2', 'view_2'])
def test_ks20_view_folder(tmp_path, view):
  view_dir = tmp_path / 'KS20' / '6' / 'view_2'
  written = write_dataset(view_dir, 'KS20', 6, 25, test_tags=['KS20'])
  write_dataset(tmp_path / 'KS20' / '6' / 'view_0', 'KS20', 6, 25,
                test_tags=['KS20'], seed=9)
  dataset = load_authors_dataset(tmp_path, 'KS20', 6, view=view)
  assert dataset.num_joints == 25
  assert tuple(dataset.joint_names) == joints.KINECT_V2.joint_names
  assert dataset.source == str(view_dir)
  _assert_split(dataset.split('train'), *written['train'])
  _assert_split(dataset.split('test'), *written['KS20'])


def test_ks20_without_view_folder(tmp_path):
  written = write_dataset(tmp_path / 'KS20' / '6', 'KS20', 6, 25,
                          test_tags=['KS20'])
  dataset = load_authors_dataset(tmp_path, 'KS20', 6)
  _assert_split(dataset.split('test'), *written['KS20'])


def test_casia_b_cve_view_folder(tmp_path):
  written = write_dataset(tmp_path / 'CASIA_B' / '20' / 'view_0', 'CASIA_B', 20,
                          14, test_tags=['CASIA_B'], person_ids=range(1, 6))
  dataset = load_authors_dataset(tmp_path, 'CASIA_B', 20, view='0')
  assert list(dataset.splits) == ['train', 'test']
  assert tuple(dataset.joint_names) == joints.CASIA_B_14.joint_names
  _assert_split(dataset.split('train'), *written['train'])
  _assert_split(dataset.split('test'), *written['CASIA_B'])


def test_casia_b_cme_probe_gallery_pair_folder(tmp_path):
  pair_dir = tmp_path / 'CASIA_B_match' / '50' / 'nm.bg'
  written = write_dataset(pair_dir, 'CASIA_B', 50, 14,
                          test_subfolders=['gallery', 'probe'], with_train=False)
  write_dataset(tmp_path / 'CASIA_B_match' / '50' / 'cl.nm', 'CASIA_B', 50, 14,
                test_subfolders=['gallery', 'probe'], with_train=False, seed=5)
  dataset = load_authors_dataset(tmp_path, 'CASIA_B_match', 50, view='nm.bg')
  assert list(dataset.splits) == ['gallery', 'probe']
  _assert_split(dataset.split('gallery'), *written['gallery'])
  _assert_split(dataset.split('probe'), *written['probe'])


def test_casia_b_cme_condition_folders(tmp_path):
  length_dir = tmp_path / 'CASIA_B_match' / '60'
  written = write_dataset(length_dir, 'CASIA_B', 60, 14,
                          test_subfolders=['nm', 'bg', 'cl'])
  dataset = load_authors_dataset(tmp_path, 'CASIA_B_match', 60, view='bg.nm')
  assert list(dataset.splits) == ['train', 'gallery', 'probe']
  _assert_split(dataset.split('probe'), *written['bg'])
  _assert_split(dataset.split('gallery'), *written['nm'])
  _assert_split(dataset.split('train'), *written['train'])

  same = load_authors_dataset(tmp_path, 'CASIA_B_match', 60, view='nm.nm')
  _assert_split(same.split('probe'), *written['nm'])
  _assert_split(same.split('gallery'), *written['nm'])


@pytest.mark.parametrize('name, subfolders, expected_order', [
    ('KGBD', ['probe', 'gallery'], ['gallery', 'probe']),
    ('KS20', ['probe', 'gallery'], ['gallery', 'probe']),
    ('IAS', ['B', 'A'], ['A', 'B']),
    ('BIWI', ['Still', 'Walking'], ['Walking', 'Still']),
])
def test_spc_mgr_test_subfolders(tmp_path, name, subfolders, expected_order):
  num_joints = 25 if name == 'KS20' else 20
  written = write_dataset(tmp_path / name / '6', name, 6, num_joints,
                          test_subfolders=subfolders)
  dataset = load_authors_dataset(tmp_path, name, 6)
  assert dataset.test_split_names == expected_order
  for sub in subfolders:
    _assert_split(dataset.split(sub), *written[sub])


def test_spc_mgr_unprefixed_data_folders(tmp_path):
  """The SPC-MGR release names the folders train_npy_data / test_npy_data."""
  length_dir = tmp_path / 'KGBD' / '6'
  written = write_dataset(length_dir, 'KGBD', 6, 20,
                          test_subfolders=['gallery', 'probe'])
  (length_dir / 'KGBD_train_npy_data').rename(length_dir / 'train_npy_data')
  (length_dir / 'KGBD_test_npy_data').rename(length_dir / 'test_npy_data')
  dataset = load_authors_dataset(tmp_path, 'KGBD', 6)
  assert list(dataset.splits) == ['train', 'gallery', 'probe']
  _assert_split(dataset.split('train'), *written['train'])
  _assert_split(dataset.split('probe'), *written['probe'])


def test_labels_from_ids_accepts_numpy_and_string_keys():
  ids = {np.int64(7): np.array([1, 2]), '3': [0], 11: []}
  labels = labels_from_ids(ids, 3, pathlib.Path('ids_X_6.npy'))
  np.testing.assert_array_equal(labels, [3, 7, 7])
