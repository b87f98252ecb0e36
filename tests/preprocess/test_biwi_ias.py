"""BIWI and IAS-Lab preprocessing: frame files, folders, layouts, round trip."""

import json
import os

import numpy as np
import pytest

from tests.fixtures import preprocess as fixtures
from sge_jax.data import authors_layout
from sge_jax.data.windows import cut_windows
from sge_jax.errors import DataError
from sge_jax.preprocess import biwi_ias
from sge_jax.preprocess import pipeline


def _text(lines):
  return '\n'.join(lines) + '\n'


# ---------------------------------------------------------------- frame files


def test_frame_file_is_read_by_label():
  frame = fixtures.frames(1, 20, key=1)[0]
  parsed = biwi_ias.parse_skel_frame(_text(fixtures.skel_lines(frame)))
  np.testing.assert_array_equal(parsed.positions, frame)
  assert parsed.by_label
  shuffled = fixtures.skel_lines(frame, order=list(range(20))[::-1])
  np.testing.assert_array_equal(
      biwi_ias.parse_skel_frame(_text(shuffled)).positions, frame)


def test_frame_file_with_one_based_or_meaningless_labels():
  frame = fixtures.frames(1, 20, key=2)[0]
  lines = fixtures.skel_lines(frame)
  one_based = [f'{j + 1},' + line.split(',', 1)[1]
               for j, line in enumerate(lines)]
  np.testing.assert_array_equal(
      biwi_ias.parse_skel_frame(_text(one_based)).positions, frame)
  user_id = ['7,' + line.split(',', 1)[1] for line in lines]
  parsed = biwi_ias.parse_skel_frame(_text(user_id))
  np.testing.assert_array_equal(parsed.positions, frame)
  assert not parsed.by_label


@pytest.mark.parametrize('edit, reason', [
    (lambda lines: [], 'empty frame file'),
    (lambda lines: lines[:19], 'missing joints'),
    (lambda lines: lines[:3] + ['3, 1.0, 2.0'] + lines[4:], 'malformed line'),
    (lambda lines: lines[:3] + ['3, a, 2.0, 1, 0, 0, 2, 0'] + lines[4:],
     'non-numeric value'),
    (lambda lines: lines[:3] + ['3, inf, 2.0, 1, 0, 0, 2, 0'] + lines[4:],
     'non-finite value'),
    (lambda lines: lines[:3] + ['3, 1.0, 2.0, 1, 0, 0, 0, 0'] + lines[4:],
     'tracking state 0'),
    (lambda lines: lines[:3] + ['3, 0, 0, 0, 1, 0, 1, 0'] + lines[4:],
     'joint at (0,0,0) (not tracked)'),
])
def test_bad_frame_files_are_dropped_with_their_reason(edit, reason):
  frame = fixtures.frames(1, 20, key=3)[0]
  parsed = biwi_ias.parse_skel_frame(_text(edit(fixtures.skel_lines(frame))))
  assert parsed.positions is None and parsed.reason == reason


def test_inferred_joints_and_extra_lines_are_kept():
  frame = fixtures.frames(1, 20, key=4)[0]
  lines = fixtures.skel_lines(frame, states=[1] * 20) + ['0, 9, 9, 9, 0, 0, 0, 0']
  parsed = biwi_ias.parse_skel_frame(_text(lines))
  np.testing.assert_array_equal(parsed.positions, frame)
  assert parsed.extra_lines == 1


# ---------------------------------------------------------------- BIWI


@pytest.fixture(scope='module')
def biwi_run(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('biwi'))
  fixture = fixtures.write_biwi(root)
  out = os.path.join(root, 'Datasets')
  lines = []
  result = pipeline.run('BIWI', fixture.raw, out, 6, progress=lines.append)
  with open(result.manifest_paths[0]) as f:
    manifest = json.load(f)
  return fixture, out, manifest, lines


def _expected(fixture, group, length=6):
  people = sorted(p for g, p in fixture.expected if g == group)
  windows = [cut_windows(fixture.expected[(group, p)], length) for p in people]
  labels = [p for p, w in zip(people, windows) for _ in range(len(w))]
  return np.concatenate(windows), np.array(labels)


def test_biwi_frames_drops_and_skips(biwi_run):
  fixture, _, manifest, lines = biwi_run
  by_key = {(r['group'], r['person']): r for r in manifest['recordings']}
  for key, frames in fixture.expected.items():
    assert by_key[key]['frames_kept'] == len(frames)
  for key, dropped in fixture.dropped.items():
    assert by_key[key]['frames_dropped_reading'] == dropped
  assert by_key[('Walking', 9)]['status'] == 'skipped'
  assert [s['source'] for s in manifest['skipped_sources']] == [
      os.path.join('BIWI', 'Training', 'calibration')]
  assert any('more than 20 lines' in w['message']
             for w in manifest['warnings'])
  assert any('person 1' in line for line in lines)  # progress per person


def test_biwi_layouts_and_round_trip(biwi_run):
  fixture, out, _, _ = biwi_run
  test_dir = os.path.join(out, 'BIWI', '6', 'BIWI_test_npy_data')
  assert os.path.exists(os.path.join(test_dir, 't_source_x_BIWI_6.npy'))
  assert os.path.exists(os.path.join(test_dir, 't_source_x_BIWI-Still_6.npy'))
  assert os.path.exists(os.path.join(out, 'spc_mgr', 'BIWI', '6',
                                     'BIWI_test_npy_data', 'Still',
                                     't_target_z_BIWI_6.npy'))
  for root in (out, os.path.join(out, 'spc_mgr')):
    dataset = authors_layout.load_authors_dataset(root, 'BIWI', 6)
    assert list(dataset.splits) == ['train', 'Walking', 'Still']
    for split, group in (('train', 'Training'), ('Walking', 'Walking'),
                         ('Still', 'Still')):
      expected, labels = _expected(fixture, group)
      np.testing.assert_array_equal(dataset.split(split).sequences, expected)
      np.testing.assert_array_equal(dataset.split(split).labels, labels)


def test_biwi_missing_folders(tmp_path):
  raw = tmp_path / 'raw'
  (raw / 'Testing' / 'Walking').mkdir(parents=True)
  with pytest.raises(DataError, match='Testing/Walking/<person>'):
    pipeline.run('BIWI', str(raw), str(tmp_path / 'out'), 6)
  (raw / 'Testing' / 'Walking').rmdir()
  (raw / 'Training').mkdir()
  with pytest.raises(DataError, match='no test folder'):
    pipeline.run('BIWI', str(raw), str(tmp_path / 'out'), 6)


# ---------------------------------------------------------------- IAS


def test_ias_tags_subfolders_and_round_trip(tmp_path):
  fixture = fixtures.write_ias(str(tmp_path))
  out = str(tmp_path / 'Datasets')
  result = pipeline.run('IAS', fixture.raw, out, 8, progress=lambda _: None)
  cages = os.path.join(out, 'IAS', '8')
  for tag in ('IAS-A', 'IAS-B'):
    assert os.path.exists(os.path.join(cages, 'IAS_test_npy_data',
                                       f't_source_y_{tag}_8.npy'))
    assert os.path.exists(os.path.join(cages, 'IAS_test_npy_data',
                                       f'ids_{tag}_8.npy'))
  for sub in ('A', 'B'):
    assert os.path.exists(os.path.join(out, 'spc_mgr', 'IAS', '8',
                                       'IAS_test_npy_data', sub,
                                       't_source_y_IAS_8.npy'))
  for root in (out, os.path.join(out, 'spc_mgr')):
    dataset = authors_layout.load_authors_dataset(root, 'IAS', 8)
    assert list(dataset.splits) == ['train', 'A', 'B']
    for split, group in (('train', 'Training'), ('A', 'TestingA'),
                         ('B', 'TestingB')):
      expected, labels = _expected(fixture, group, length=8)
      np.testing.assert_array_equal(dataset.split(split).sequences, expected)
      np.testing.assert_array_equal(dataset.split(split).labels, labels)
  assert result.manifest.summary()['frames_dropped_reading'] == {}
  assert not result.manifest.warnings


def test_ias_missing_test_folder_is_a_warning(tmp_path):
  fixture = fixtures.write_ias(str(tmp_path))
  os.rename(os.path.join(fixture.raw, 'TestingB'),
            os.path.join(str(tmp_path), 'elsewhere'))
  result = pipeline.run('IAS', fixture.raw, str(tmp_path / 'out'), 6,
                        progress=lambda _: None)
  assert any('TestingB not found' in w['message']
             for w in result.manifest.warnings)
  dataset = authors_layout.load_authors_dataset(str(tmp_path / 'out'), 'IAS', 6)
  assert list(dataset.splits) == ['train', 'A']
