"""Small raw datasets written in each original format, broken files included.

Frames are synthetic but exactly reproducible: ``frames(T, J, key)`` gives
[T, J, 3] positions rounded to 1e-4 m, so writing them as text and reading them
back is exact in float32, and every recording is distinguishable from the
others. Each ``write_*`` helper returns what a correct reader must produce.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence

import numpy as np

from sge_jax.data import joints

V1_NAMES = joints.KINECT_V1.joint_names


def frames(num_frames: int, num_joints: int, key: int) -> np.ndarray:
  """[T, J, 3] float32 walking-like positions (metres), unique per ``key``."""
  rng = np.random.default_rng(key)
  base = rng.uniform(-0.8, 0.8, size=(num_joints, 3))
  base[:, 2] += 2.5  # in front of the camera
  t = np.arange(num_frames)[:, None, None]
  moving = base[None] + 0.01 * t * np.array([0.2, 0.0, -1.0]) + 0.001 * key
  return np.round(moving, 4).astype(np.float32)


def _fmt(value: float) -> str:
  return f'{value:.4f}'


# ---------------------------------------------------------------- KGBD


def kgbd_lines(recording: np.ndarray,
               names: Sequence[str] = V1_NAMES,
               order: Optional[Sequence[int]] = None) -> list[str]:
  """``Name;x;y;z`` lines of [T, 20, 3] frames, joints in ``order``."""
  order = list(range(len(names))) if order is None else list(order)
  lines = []
  for frame in recording:
    for j in order:
      x, y, z = frame[j]
      lines.append(f'{names[j]};{_fmt(x)};{_fmt(y)};{_fmt(z)}')
  return lines


def write_lines(path: str, lines: Sequence[str]) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    f.write('\n'.join(lines) + ('\n' if lines else ''))


@dataclasses.dataclass
class KgbdFixture:
  """A KGBD raw folder and what reading it must give.

  Attributes:
    raw: folder to pass as --raw (holds 'kinect gait raw dataset').
    expected: (person, file name) -> [T, 20, 3] frames a reader must keep.
    skipped_sources: file names that must give no recording.
    dropped: (person, file name) -> {reason: frames} expected.
  """
  raw: str
  expected: dict
  skipped_sources: list
  dropped: dict


def write_kgbd(root: str) -> KgbdFixture:
  """KGBD raw folder with 5 people and every kind of broken file.

  * Person001: 5 good recordings (60, 58, 52, 49, 47 frames).
  * Person002: a good one, an empty file, one with a garbage header, a
    non-numeric value, a missing joint and a truncated last frame, one too
    short for a window (25 frames), and one more good one.
  * Person003: names spelled differently and joints in reverse order.
  * Person015: 3 recordings (the authors' 1 gallery + 1 probe case).
  * Person016: a single recording.
  """
  raw = os.path.join(root, 'kgbd_download')
  base = os.path.join(raw, 'kinect gait raw dataset')
  expected, dropped, skipped = {}, {}, []

  def good(person, name, num_frames, key):
    rec = frames(num_frames, 20, key)
    write_lines(os.path.join(base, f'Person{person:03d}', name),
                kgbd_lines(rec))
    expected[(person, name)] = rec

  for i, n in enumerate((60, 58, 52, 49, 47)):
    good(1, f'{i + 1}.txt', n, key=100 + i)

  good(2, 'walk1.txt', 50, key=200)
  write_lines(os.path.join(base, 'Person002', 'walk2.txt'), [])
  skipped.append('walk2.txt')
  broken = frames(50, 20, key=202)
  lines = kgbd_lines(broken)
  lines[5 * 20 + 3] = 'Head;0.1;abc;2.0'          # frame 5: non-numeric
  del lines[8 * 20 + 7]                           # frame 8: HandLeft missing
  lines = ['JointName;X;Y;Z (header)', 'garbage'] + lines[:-4]  # truncated end
  write_lines(os.path.join(base, 'Person002', 'walk3.txt'), lines)
  expected[(2, 'walk3.txt')] = np.delete(broken, [5, 8, 49], axis=0)
  dropped[(2, 'walk3.txt')] = {'non-numeric value': 1, 'missing joints': 1,
                               'truncated last frame': 1}
  good(2, 'walk4.txt', 25, key=204)               # < 26 frames: no window
  good(2, 'walk10.txt', 55, key=205)

  rec = frames(48, 20, key=300)
  spelled = [n.replace('Left', '_left').replace('Right', '_right').upper()
             for n in V1_NAMES]
  spelled[0] = 'Hip Centre'
  write_lines(os.path.join(base, 'Person003', 'a.txt'),
              kgbd_lines(rec, spelled, order=range(19, -1, -1)))
  expected[(3, 'a.txt')] = rec
  for i, n in enumerate((40, 44)):
    good(3, f'b{i}.txt', n, key=301 + i)

  for i, n in enumerate((41, 42, 43)):
    good(15, f'{i}.txt', n, key=1500 + i)
  good(16, 'only.txt', 40, key=1600)
  # Not a person folder: ignored.
  write_lines(os.path.join(base, 'readme', 'x.txt'), ['nothing'])
  return KgbdFixture(raw=raw, expected=expected, skipped_sources=skipped,
                     dropped=dropped)


# ---------------------------------------------------------------- BIWI / IAS


def skel_lines(frame: np.ndarray, states: Optional[Sequence[int]] = None,
               order: Optional[Sequence[int]] = None) -> list[str]:
  """``label, x, y, z, u, v, trackingState, qualityFlag`` lines of one frame."""
  num_joints = frame.shape[0]
  states = [2] * num_joints if states is None else list(states)
  order = range(num_joints) if order is None else order
  return [f'{j}, {_fmt(frame[j, 0])}, {_fmt(frame[j, 1])}, '
          f'{_fmt(frame[j, 2])}, 320, 240, {states[j]}, 0' for j in order]


def write_skel_folder(folder: str, recording: np.ndarray,
                      broken: Optional[dict] = None,
                      name_format: str = '{:d}_skel.txt') -> np.ndarray:
  """One recording as per-frame files; returns the frames a reader keeps.

  Args:
    folder: recording folder.
    recording: [T, J, 3].
    broken: frame index -> kind: 'state0' (one joint not tracked), 'inferred'
      (state 1, kept), 'empty', 'short' (19 lines), 'text' (non-numeric),
      'extra' (a 21st line, kept), 'shuffled' (lines permuted, kept).
    name_format: file name of frame i (unpadded by default, to test that
      frame 10 sorts after frame 9).
  """
  os.makedirs(folder, exist_ok=True)
  broken = broken or {}
  keep = []
  for i, frame in enumerate(recording):
    kind = broken.get(i)
    lines = skel_lines(frame)
    if kind == 'state0':
      states = [2] * frame.shape[0]
      states[7] = 0
      lines = skel_lines(frame, states)
    elif kind == 'inferred':
      lines = skel_lines(frame, [1] * frame.shape[0])
    elif kind == 'empty':
      lines = []
    elif kind == 'short':
      lines = lines[:-1]
    elif kind == 'text':
      lines[4] = '4, oops, 1.0, 2.0, 320, 240, 2, 0'
    elif kind == 'extra':
      lines = lines + ['99, 9.0, 9.0, 9.0, 0, 0, 2, 0']
    elif kind == 'shuffled':
      order = list(range(frame.shape[0]))[::-1]
      lines = skel_lines(frame, order=order)
    if kind not in ('state0', 'empty', 'short', 'text'):
      keep.append(i)
    write_lines(os.path.join(folder, name_format.format(i)), lines)
  # Other files of the download, not skeletons.
  write_lines(os.path.join(folder, '0_rgb.txt'), ['not a skeleton'])
  return recording[keep]


@dataclasses.dataclass
class FolderFixture:
  """A BIWI or IAS raw folder and what reading it must give.

  Attributes:
    raw: folder to pass as --raw.
    expected: (raw split, person) -> [T, 20, 3] frames a reader must keep.
    dropped: (raw split, person) -> {reason: frames}.
  """
  raw: str
  expected: dict
  dropped: dict


def write_biwi(root: str) -> FolderFixture:
  """BIWI: 3 training people, 2 walking, 2 still; broken frames in person 1."""
  raw = os.path.join(root, 'biwi_download', 'BIWI')
  expected, dropped = {}, {}
  broken = {3: 'state0', 4: 'inferred', 12: 'empty', 20: 'short', 21: 'text',
            30: 'extra', 31: 'shuffled'}
  layout = (('Training', ('Training',), (1, 2, 3)),
            ('Walking', ('Testing', 'Walking'), (1, 2)),
            ('Still', ('Testing', 'Still'), (1, 3)))
  for g, (group, parts, people) in enumerate(layout):
    for person in people:
      key = 400 + 10 * g + person
      recording = frames(50 + 3 * person, 20, key)
      folder = os.path.join(raw, *parts, f'{person:03d}')
      is_broken = group == 'Training' and person == 1
      expected[(group, person)] = write_skel_folder(
          folder, recording, broken if is_broken else None)
      if is_broken:
        dropped[(group, person)] = {'tracking state 0': 1,
                                    'empty frame file': 1,
                                    'missing joints': 1,
                                    'non-numeric value': 1}
  # A person folder whose name holds no number: skipped with a warning.
  write_skel_folder(os.path.join(raw, 'Training', 'calibration'),
                    frames(40, 20, 9))
  # A test person with a recording too short for one window.
  expected[('Walking', 9)] = write_skel_folder(
      os.path.join(raw, 'Testing', 'Walking', '009'), frames(24, 20, 99))
  return FolderFixture(raw=os.path.dirname(raw), expected=expected,
                       dropped=dropped)


def write_ias(root: str) -> FolderFixture:
  """IAS-Lab: 3 people in Training, TestingA and TestingB (zero-padded names)."""
  raw = os.path.join(root, 'ias_download')
  expected = {}
  for g, group in enumerate(('Training', 'TestingA', 'TestingB')):
    for person in (1, 2, 3):
      recording = frames(46 + person + g, 20, 500 + 10 * g + person)
      folder = os.path.join(raw, group, f'{person:02d}')
      expected[(group, person)] = write_skel_folder(
          folder, recording, name_format='{:06d}_skel.txt')
  return FolderFixture(raw=raw, expected=expected, dropped={})


# ---------------------------------------------------------------- KS20


@dataclasses.dataclass
class Ks20Fixture:
  """A KS20 raw folder of .mat files and what reading it must give.

  Attributes:
    raw: folder to pass as --raw.
    expected: (view, person, walk) -> [T, 25, 3] frames a reader must keep.
  """
  raw: str
  expected: dict


def write_ks20_mat(root: str) -> Ks20Fixture:
  """KS20 as .mat files in the three structures the reader assumes.

  * ``frontal.mat``: one variable per recording, ``body<NN>_gc<k>``, [T, 75]
    joint-major.
  * ``left_diagonal/skeletons.mat``: a struct ``data`` with a cell array of
    structs ``{name: 'gc<k>_body<NN>', skeleton: [T, 25, 3]}``.
  * ``KS20_right_lateral.mat``: a struct array of frames ``{body, gc,
    timestamp, joints: [25, 3]}`` stored out of time order.
  * ``broken.mat``: not a .mat file (skipped with a warning).
  """
  import scipy.io  # pylint: disable=g-import-not-at-top
  raw = os.path.join(root, 'ks20_download')
  os.makedirs(os.path.join(raw, 'left_diagonal'), exist_ok=True)
  expected = {}
  people = (1, 3, 7)
  variables = {}
  for person in people:
    for walk in (1, 2, 3):
      rec = frames(40 + person + walk, 25, 7000 + 10 * person + walk)
      variables[f'body{person:02d}_gc{walk}'] = rec.reshape(len(rec), 75)
      expected[('frontal', person, f'gc{walk}')] = rec
  scipy.io.savemat(os.path.join(raw, 'frontal.mat'), variables)

  cells = []
  for person in people:
    for walk in (1, 2, 3):
      rec = frames(38 + walk, 25, 8000 + 10 * person + walk)
      cells.append({'name': f'gc{walk}_body{person:02d}', 'skeleton': rec})
      expected[('left_diagonal', person, f'gc{walk}')] = rec
  cell_array = np.empty((len(cells),), dtype=object)
  for i, cell in enumerate(cells):
    cell_array[i] = cell
  scipy.io.savemat(os.path.join(raw, 'left_diagonal', 'skeletons.mat'),
                   {'data': {'recordings': cell_array}})

  records = []
  rng = np.random.default_rng(0)
  for person in people:
    for walk in (1, 2, 3):
      rec = frames(36, 25, 9000 + 10 * person + walk)
      expected[('right_lateral', person, f'gc{walk}')] = rec
      for t, frame in enumerate(rec):
        records.append({'body': person, 'gc': f'gc{walk}',
                        'timestamp': 1000.0 + 33.3 * t, 'joints': frame})
  order = rng.permutation(len(records))
  struct = np.empty((len(records),), dtype=object)
  for i, j in enumerate(order):
    struct[i] = records[j]
  scipy.io.savemat(os.path.join(raw, 'KS20_right_lateral.mat'),
                   {'frames': struct})
  with open(os.path.join(raw, 'broken.mat'), 'wb') as f:
    f.write(b'this is not a MATLAB file')
  return Ks20Fixture(raw=raw, expected=expected)


def manifest_roles(manifest: dict) -> dict:
  """(person, recording name) -> 'gallery' | 'probe' | 'train' from a manifest."""
  roles = {}
  for person, assignment in manifest['test_assignment'].items():
    for kind in ('gallery', 'probe', 'train'):
      for name in assignment[kind]:
        roles[(int(person), name)] = kind
  return roles
