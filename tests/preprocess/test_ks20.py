"""KS20 preprocessing: skeleton arrays in .mat files, views, walks, round trip."""

import collections
import os
import sys

import numpy as np
import pytest

from tests.fixtures import preprocess as fixtures
from sge_jax.data import authors_layout
from sge_jax.data.windows import cut_windows
from sge_jax.errors import DataError
from sge_jax.preprocess import ks20
from sge_jax.preprocess import manifest as manifest_lib
from sge_jax.preprocess import pipeline

pytest.importorskip('scipy')


@pytest.mark.parametrize('shape, order', [
    ((7, 25, 3), (0, 1, 2)), ((25, 3, 7), (2, 0, 1)), ((3, 25, 7), (2, 1, 0)),
    ((7, 3, 25), (0, 2, 1))])
def test_as_frames_finds_time_joint_and_coordinate_axes(shape, order):
  rec = fixtures.frames(7, 25, key=1)
  stored = np.transpose(rec, np.argsort(order))
  assert stored.shape == shape
  np.testing.assert_array_equal(ks20.as_frames(stored), rec)


def test_as_frames_flat_rows_and_single_frames():
  rec = fixtures.frames(4, 25, key=2)
  np.testing.assert_array_equal(ks20.as_frames(rec.reshape(4, 75)), rec)
  np.testing.assert_array_equal(ks20.as_frames(rec.reshape(4, 75).T), rec)
  np.testing.assert_array_equal(ks20.as_frames(rec[0]), rec[:1])
  assert ks20.as_frames(np.zeros((4, 20, 3))) is None
  assert ks20.as_frames(np.zeros((4, 100))) is None


@pytest.mark.parametrize('text, view', [
    ('frontal.mat', 'frontal'), ('KS20/Left_Diagonal', 'left_diagonal'),
    ('rightLateral', 'right_lateral'), ('left-lat', 'left_lateral'),
    ('RightDiag_view.mat', 'right_diagonal'), ('skeletons', None)])
def test_view_names(text, view):
  assert ks20.view_of(text) == view


@pytest.fixture(scope='module')
def ks20_run(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('ks20'))
  fixture = fixtures.write_ks20_mat(root)
  out = os.path.join(root, 'Datasets')
  result = pipeline.run('KS20', fixture.raw, out, 6, seed=3,
                        progress=lambda _: None)
  return fixture, out, result.manifest.to_dict()


def test_every_assumed_mat_structure_is_read(ks20_run):
  fixture, _, manifest = ks20_run
  found = {(r['view'], r['person'], r['session']): r
           for r in manifest['recordings']}
  assert set(found) == set(fixture.expected)
  for key, frames in fixture.expected.items():
    assert found[key]['frames_kept'] == len(frames)
  assert [s['source'] for s in manifest['skipped_sources']] == ['broken.mat']
  assert manifest['joint_layout'] == 'kinect_v2'


def _expected(fixture, roles, kinds, view=None):
  order = {v: i for i, v in enumerate(ks20.VIEWS)}
  keys = sorted((k for k in fixture.expected
                 if roles[(k[1], k[2])] in kinds and view in (None, k[0])),
                key=lambda k: (order[k[0]], k[1], k[2]))
  windows = [cut_windows(fixture.expected[k], 6) for k in keys]
  labels = [k[1] for k, w in zip(keys, windows) for _ in range(len(w))]
  return np.concatenate(windows), np.array(labels)


def test_one_gallery_and_one_probe_walk_per_person_in_all_views(ks20_run):
  _, _, manifest = ks20_run
  for person, assignment in manifest['test_assignment'].items():
    assert [len(assignment[k]) for k in ('gallery', 'probe', 'train')] == [
        1, 1, 1], person
  per_walk = collections.defaultdict(set)
  for r in manifest['recordings']:
    per_walk[(r['person'], r['session'])].add(r['splits']['spc_mgr'])
  assert all(len(splits) == 1 for splits in per_walk.values())


def test_all_views_and_per_view_round_trip(ks20_run):
  fixture, out, manifest = ks20_run
  roles = fixtures.manifest_roles(manifest)
  for view_index, view in [(None, None), (0, 'frontal'),
                           (1, 'left_diagonal'), (4, 'right_lateral')]:
    view_arg = '' if view is None else str(view_index)
    cages = authors_layout.load_authors_dataset(out, 'KS20', 6, view=view_arg)
    spc = authors_layout.load_authors_dataset(
        os.path.join(out, 'spc_mgr'), 'KS20', 6, view=view_arg)
    assert cages.num_joints == 25
    for dataset, split, kinds in ((cages, 'train', ('train', 'gallery')),
                                  (cages, 'test', ('probe',)),
                                  (spc, 'train', ('train',)),
                                  (spc, 'gallery', ('gallery',)),
                                  (spc, 'probe', ('probe',))):
      expected, labels = _expected(fixture, roles, kinds, view)
      np.testing.assert_array_equal(dataset.split(split).sequences, expected)
      np.testing.assert_array_equal(dataset.split(split).labels, labels)
  # No recording of the two views the fixture lacks, so no folder for them.
  assert not os.path.exists(os.path.join(out, 'KS20', '6', 'view_2'))


def test_arrays_without_person_or_skeleton_shape_are_reported(tmp_path):
  import scipy.io  # pylint: disable=g-import-not-at-top
  raw = tmp_path / 'raw'
  raw.mkdir()
  rec = fixtures.frames(40, 25, key=5)
  damaged = rec + 1
  damaged[3, 21] = 0    # a not-tracked hand tip
  damaged[7, 0, 1] = np.nan
  scipy.io.savemat(str(raw / 'frontal.mat'), {
      'skeleton': rec, 'body02': damaged, 'calibration': np.eye(4)})
  manifest = manifest_lib.Manifest('KS20', 6, 0, str(raw), '', {})
  found = ks20.read_recordings(str(raw), manifest, lambda _: None)
  assert [(r.person, r.view) for r in found] == [(2, 'frontal')]
  np.testing.assert_array_equal(found[0].frames, np.delete(damaged, [3, 7], 0))
  assert found[0].dropped == {'joint at (0,0,0) (not tracked)': 1,
                              'non-finite value': 1}
  assert any('cannot tell the person' in s['reason']
             for s in manifest.skipped_sources)
  assert any('(4, 4) x1' in w['message'] for w in manifest.warnings)


def test_authors_converted_text_frames(tmp_path):
  raw = tmp_path / 'KS20'
  expected = {}
  for view in ('frontal', 'left_lateral'):
    for walk in (1, 2):
      rec = fixtures.frames(33, 25, key=60 + walk)
      expected[(view, f'gc{walk}')] = rec
      for t, frame in enumerate(rec):
        # Unpadded timestamps: frame 10 must still come after frame 9.
        fixtures.write_lines(
            str(raw / view / f'gc{walk}_body05_{1000 + 7 * t}.txt'),
            [f'{j},{fixtures._fmt(x)},{fixtures._fmt(y)},{fixtures._fmt(z)}'
             for j, (x, y, z) in enumerate(frame)])
  manifest = manifest_lib.Manifest('KS20', 6, 0, str(raw), '', {})
  found = ks20.read_recordings(str(raw), manifest, lambda _: None)
  assert {(r.view, r.session) for r in found} == set(expected)
  for r in found:
    assert r.person == 5
    np.testing.assert_array_equal(r.frames, expected[(r.view, r.session)])


def test_missing_scipy_gives_the_install_hint(tmp_path, monkeypatch):
  fixture = fixtures.write_ks20_mat(str(tmp_path))
  monkeypatch.setitem(sys.modules, 'scipy', None)
  monkeypatch.setitem(sys.modules, 'scipy.io', None)
  with pytest.raises(DataError, match=r"pip install 'sge-jax\[mat\]'"):
    pipeline.run('KS20', fixture.raw, str(tmp_path / 'out'), 6,
                 progress=lambda _: None)


def test_no_ks20_files(tmp_path):
  with pytest.raises(DataError, match='frontal, left_diagonal'):
    pipeline.run('KS20', str(tmp_path), str(tmp_path / 'out'), 6)
