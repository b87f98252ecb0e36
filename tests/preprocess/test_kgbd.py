"""KGBD preprocessing: text parsing, split draw, written files, manifest, round trip."""

import json
import os

import numpy as np
import pytest

from tests.fixtures import preprocess as fixtures
from sge_jax.data import authors_layout
from sge_jax.data.windows import cut_windows
from sge_jax.errors import DataError
from sge_jax.evaluate.walks import group_windows
from sge_jax.preprocess import kgbd
from sge_jax.preprocess import pipeline
from sge_jax.preprocess import recordings as rec_lib


def _text(lines):
  return '\n'.join(lines) + '\n'


# ---------------------------------------------------------------- parsing


def test_parse_reads_frames_in_kinect_v1_order():
  rec = fixtures.frames(5, 20, key=1)
  parsed = kgbd.parse_kgbd_text(_text(fixtures.kgbd_lines(rec)))
  np.testing.assert_array_equal(parsed.frames, rec)
  assert parsed.frames_read == 5
  assert not parsed.dropped and not parsed.notes


def test_parse_maps_names_whatever_their_spelling_and_order():
  rec = fixtures.frames(3, 20, key=2)
  names = ['hip-centre', 'SPINE', 'center_shoulder', 'head'] + [
      ('Left' + n[:-4] if n.endswith('Left') else
       'R_' + n[:-5] if n.endswith('Right') else n)
      for n in fixtures.V1_NAMES[4:]]
  order = [5, 0, 19, 3, 1, 2, 4] + list(range(6, 19))
  parsed = kgbd.parse_kgbd_text(
      _text(fixtures.kgbd_lines(rec, names, order=order)))
  np.testing.assert_array_equal(parsed.frames, rec)
  assert any('not in Kinect v1 SDK order' in n for n in parsed.notes)


@pytest.mark.parametrize('damage, reason', [
    (lambda lines: lines.__setitem__(20 + 4, 'ShoulderLeft;1.0;x;2.0'),
     'non-numeric value'),
    (lambda lines: lines.__setitem__(20 + 4, 'ShoulderLeft;1.0;nan;2.0'),
     'non-finite value'),
    (lambda lines: lines.__setitem__(20 + 4, 'ShoulderLeft;0;0.0;-0'),
     'joint at (0,0,0) (not tracked)'),
    (lambda lines: lines.__delitem__(20 + 4), 'missing joints'),
    (lambda lines: lines.__delitem__(20 + 0), 'missing joints'),
    (lambda lines: lines.__delitem__(20 + 19), 'missing joints'),
])
def test_parse_drops_only_the_damaged_frame(damage, reason):
  rec = fixtures.frames(3, 20, key=3)
  lines = fixtures.kgbd_lines(rec)
  damage(lines)
  parsed = kgbd.parse_kgbd_text(_text(lines))
  np.testing.assert_array_equal(parsed.frames, rec[[0, 2]])
  assert parsed.dropped == {reason: 1}
  assert parsed.frames_read == 3


def test_parse_counts_truncated_last_frame_and_garbage_lines():
  rec = fixtures.frames(4, 20, key=4)
  lines = ['some header', ''] + fixtures.kgbd_lines(rec)[:-7]
  parsed = kgbd.parse_kgbd_text(_text(lines))
  np.testing.assert_array_equal(parsed.frames, rec[:3])
  assert parsed.dropped == {'truncated last frame': 1}
  assert any('1 line(s) without' in n for n in parsed.notes)


def test_parse_falls_back_to_line_order_without_known_names():
  rec = fixtures.frames(3, 20, key=5)
  names = [f'J{i}' for i in range(20)]
  lines = fixtures.kgbd_lines(rec, names)[:-1]
  parsed = kgbd.parse_kgbd_text(_text(lines))
  np.testing.assert_array_equal(parsed.frames, rec[:2])
  assert parsed.dropped == {'truncated last frame': 1}
  assert any('no line names a known' in n for n in parsed.notes)


def test_utf16_files_and_decimal_commas(tmp_path):
  rec = fixtures.frames(2, 20, key=6)
  lines = [line.replace('.', ',') for line in fixtures.kgbd_lines(rec)]
  path = tmp_path / 'walk.txt'
  path.write_bytes(_text(lines).replace('\n', '\r\n').encode('utf-16'))
  parsed = kgbd.parse_kgbd_text(rec_lib.read_text(str(path)))
  np.testing.assert_array_equal(parsed.frames, rec)


def test_parse_empty_text_gives_no_frames():
  parsed = kgbd.parse_kgbd_text('')
  assert parsed.frames.shape == (0, 20, 3) and parsed.frames_read == 0


# ---------------------------------------------------------------- whole dataset


@pytest.fixture(scope='module')
def kgbd_run(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('kgbd'))
  fixture = fixtures.write_kgbd(root)
  out = os.path.join(root, 'Datasets')
  result = pipeline.run('KGBD', fixture.raw, out, 6, seed=0,
                        progress=lambda _: None)
  with open(result.manifest_paths[0]) as f:
    manifest = json.load(f)
  return fixture, out, result, manifest


def _expected(fixture, roles, kinds, length=6):
  """[N, f, 20, 3] and labels [N] in stored order for recordings of ``kinds``."""
  keys = sorted(fixture.expected,
                key=lambda k: (k[0], rec_lib.natural_key(k[1])))
  windows, labels = [], []
  for person, name in keys:
    if roles[(person, name)] in kinds:
      w = cut_windows(fixture.expected[(person, name)], length)
      windows.append(w)
      labels += [person] * len(w)
  return np.concatenate(windows), np.array(labels)


def test_reader_keeps_exactly_the_good_frames(kgbd_run):
  fixture, _, _, manifest = kgbd_run
  by_source = {os.path.basename(r['source']): r for r in manifest['recordings']
               if r['person'] in (2,)}
  assert by_source['walk3.txt']['frames_kept'] == 47
  assert by_source['walk3.txt']['frames_dropped_reading'] == {
      'missing joints': 1, 'non-numeric value': 1, 'truncated last frame': 1}
  skipped = [os.path.basename(s['source'])
             for s in manifest['skipped_sources']]
  assert skipped == fixture.skipped_sources
  short = by_source['walk4.txt']
  assert short['status'] == 'skipped' and short['sequences'] == 0
  assert 'shorter than one window' in short['reason']


def test_split_draw_follows_the_authors_rule(kgbd_run):
  _, _, _, manifest = kgbd_run
  assignment = manifest['test_assignment']
  counts = {p: tuple(len(a[k]) for k in ('gallery', 'probe', 'train'))
            for p, a in assignment.items()}
  assert counts['1'] == (2, 1, 2)
  assert counts['15'] == (1, 1, 1)  # the authors' person-15 case
  assert counts['16'] == (0, 0, 1)  # one recording: train only, with a note
  assert assignment['16']['note']
  # walk2 is empty, walk4 too short to be drawn: they never take a test slot.
  for kind in ('gallery', 'probe'):
    assert not {'walk2.txt', 'walk4.txt'} & set(assignment['2'][kind])
  assert manifest['seed'] == 0


def test_split_draw_is_seeded_and_the_same_for_every_length(tmp_path):
  fixture = fixtures.write_kgbd(str(tmp_path))
  draws = {}
  for seed, length in ((0, 4), (0, 10), (1, 6)):
    result = pipeline.run('KGBD', fixture.raw, str(tmp_path / f'o{seed}{length}'),
                          length, seed=seed, progress=lambda _: None)
    draws[(seed, length)] = result.manifest.test_assignment
  assert draws[(0, 4)] == draws[(0, 10)]
  assert draws[(0, 4)] != draws[(1, 6)]


def test_written_windows_targets_and_ids(kgbd_run):
  fixture, out, _, manifest = kgbd_run
  roles = fixtures.manifest_roles(manifest)
  folder = os.path.join(out, 'KGBD', '6')
  for sub, prefix, kinds in (('KGBD_train_npy_data', '', ('train', 'gallery')),
                             ('KGBD_test_npy_data', 't_', ('probe',))):
    expected, labels = _expected(fixture, roles, kinds)
    for axis, name in enumerate('xyz'):
      source = np.load(os.path.join(folder, sub,
                                    f'{prefix}source_{name}_KGBD_6.npy'))
      target = np.load(os.path.join(folder, sub,
                                    f'{prefix}target_{name}_KGBD_6.npy'))
      assert source.shape == (len(expected) * 6, 20)
      np.testing.assert_array_equal(source.reshape(-1, 6, 20),
                                    expected[..., axis])
      np.testing.assert_array_equal(target.reshape(-1, 6, 20),
                                    expected[:, ::-1, :, axis])
    ids = np.load(os.path.join(folder, sub, 'ids_KGBD_6.npy'),
                  allow_pickle=True).item()
    assert ids == {int(p): np.flatnonzero(labels == p).tolist()
                   for p in np.unique(labels)}


def test_manifest_counts_add_up(kgbd_run):
  _, _, _, manifest = kgbd_run
  summary = manifest['summary']
  for r in manifest['recordings']:
    if r['status'] == 'used':
      assert (r['frames_kept'] == r['frames_dropped_edges']
              + r['frames_dropped_leftover'] + 6 * r['sequences'])
  assert summary['frames_read'] == sum(
      r['frames_read'] for r in manifest['recordings'])
  cages = manifest['splits']['cages']
  spc = manifest['splits']['spc_mgr']
  assert cages['train']['sequences'] == (spc['train']['sequences']
                                         + spc['gallery']['sequences'])
  assert cages['test']['sequences'] == spc['probe']['sequences']
  assert summary['sequences']['cages/test'] == cages['test']['sequences']
  assert sum(p['sequences'] for p in cages['train']['per_person'].values()) \
      == cages['train']['sequences']
  used = sum(r['sequences'] for r in manifest['recordings'])
  assert used == cages['train']['sequences'] + cages['test']['sequences']
  assert all(os.path.exists(os.path.join(manifest['out'], f))
             for f in manifest['files'])


def test_round_trip_through_the_authors_layout_loader(kgbd_run):
  fixture, out, _, manifest = kgbd_run
  roles = fixtures.manifest_roles(manifest)
  cages = authors_layout.load_authors_dataset(out, 'KGBD', 6)
  assert list(cages.splits) == ['train', 'test']
  spc = authors_layout.load_authors_dataset(os.path.join(out, 'spc_mgr'),
                                            'KGBD', 6)
  assert list(spc.splits) == ['train', 'gallery', 'probe']
  for dataset, split, kinds in ((cages, 'train', ('train', 'gallery')),
                                (cages, 'test', ('probe',)),
                                (spc, 'train', ('train',)),
                                (spc, 'gallery', ('gallery',)),
                                (spc, 'probe', ('probe',))):
    expected, labels = _expected(fixture, roles, kinds)
    np.testing.assert_array_equal(dataset.split(split).sequences, expected)
    np.testing.assert_array_equal(dataset.split(split).labels, labels)
  assert cages.joint_names == fixtures.V1_NAMES


def test_every_window_keeps_its_recording_through_the_authors_layout(
    kgbd_run):
  _, out, _, manifest = kgbd_run
  by_id = {r['id']: r for r in manifest['recordings']}
  for root, variant in ((out, 'cages'), (os.path.join(out, 'spc_mgr'),
                                         'spc_mgr')):
    dataset = authors_layout.load_authors_dataset(root, 'KGBD', 6)
    seen = {}
    for name, split in dataset.splits.items():
      walks = group_windows(split.recordings, split.labels)
      for recording, person, count in zip(walks.recordings, walks.labels,
                                          walks.num_windows):
        entry = by_id[int(recording)]
        assert entry['person'] == person
        assert entry['sequences'] == count
        assert entry['splits'][variant] == name
        assert recording not in seen, (recording, seen.get(recording), name)
        seen[recording] = name
    assert sorted(seen) == sorted(i for i, r in by_id.items()
                                  if r['status'] == 'used')
    assert any(f.endswith('recordings_KGBD_6.npy') for f in manifest['files'])


def test_missing_raw_folder_says_what_was_expected(tmp_path):
  with pytest.raises(DataError, match='kinect gait raw dataset'):
    pipeline.run('KGBD', str(tmp_path / 'nope'), str(tmp_path / 'out'), 6)
  (tmp_path / 'empty').mkdir()
  with pytest.raises(DataError, match='PersonNNN'):
    pipeline.run('KGBD', str(tmp_path / 'empty'), str(tmp_path / 'out'), 6)


def test_existing_output_needs_overwrite(kgbd_run, tmp_path):
  fixture, out, _, _ = kgbd_run
  with pytest.raises(DataError, match='--overwrite'):
    pipeline.run('KGBD', fixture.raw, out, 6, progress=lambda _: None)
