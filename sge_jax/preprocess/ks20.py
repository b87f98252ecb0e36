"""KS20 (VisLab Multi-view Kinect Skeleton dataset): ``.mat`` and text readers.

KS20 has 20 people walking in front of a Kinect v2 (25 joints, metres) from five
views: frontal, left/right diagonal, left/right lateral, with three walks
("gait cycles" ``gc1``..``gc3``) per person and view. The download is one or more
MATLAB ``.mat`` files per view (docs/method.md §2.3); access needs a signed licence, and
the variable names inside the files could not be checked for this reader. It
therefore looks for skeletons by shape rather than by name. **Assumptions**
(each one is checked, and what did not fit is listed in the manifest):

* ``--raw`` holds the ``.mat`` files anywhere below it. The view of a file is
  read from its name or folder names, else from the names inside the file
  (``frontal``/``front``, ``left_diagonal``/``LeftDiag``, ``right_lateral``, ...;
  case and separators are ignored). A recording whose view cannot be told goes
  into the all-views data only.
* Every numeric array of shape [T, 25, 3] (or a transpose such as [25, 3, T] or
  [3, 25, T]) or [T, 75] / [75, T] is one recording of T frames. A 75-wide row
  is ``x1, y1, z1, x2, ...`` (joint-major, the Kinect SDK joint order).
* A [25, 3] (or [3, 25]) array is one frame. Frames are joined into recordings
  by person and walk, in the order they appear in the file, or by a numeric
  ``time``/``timestamp``/``frame`` field next to them when every frame has one.
* The person is the number after ``body``/``person``/``subject``/``id`` in the
  nearest name: a struct field or variable name, a string field next to the
  array (e.g. ``'gc1_body03'``), a numeric field named ``body``/``person``/
  ``subject``/``personId``/``bodyId``, then the file name. The walk is ``gc<k>``
  found the same way (or ``seq``/``walk``/``trial``<k>); without one, each array
  is its own walk.
* Person ids are kept as the file numbers them (KS20's bodies are numbered
  1..24 with gaps); the authors' script renumbers them 0..19, which changes no
  result.
* A frame with a non-finite value or a joint exactly at (0, 0, 0) (how the
  Kinect SDK reports a joint it did not track) is dropped and counted.
* MATLAB v7.3 (HDF5) files cannot be read by SciPy; they are skipped with a
  warning saying to re-save them with ``save(..., '-v7')``.

The authors' own pipeline first converted the ``.mat`` files to text, one file
per frame, ``<raw>/<view>/<gc>_body<NN>_<timestamp>...txt`` with 25 lines
``label, x, y, z, ...``. When ``--raw`` holds no ``.mat`` file such text files
are read instead (frames ordered by timestamp, one recording per view, walk and
person; the tracking-state column is not known there and is not used).

Split (as the authors' script): per person, one walk is drawn as gallery and one
as probe, in every view at once (seeded), the third walk is train.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re
from typing import Any, Callable, Iterator, Optional

import numpy as np

from sge_jax.data import joints
from sge_jax.errors import DataError
from sge_jax.preprocess import biwi_ias
from sge_jax.preprocess import recordings as rec_lib

LAYOUT = joints.KINECT_V2
NUM_JOINTS = LAYOUT.num_joints

# The authors' view list; its index is the <v> of Datasets/KS20/<f>/view_<v>.
VIEWS = ('frontal', 'left_diagonal', 'left_lateral', 'right_diagonal',
         'right_lateral')

EXPECTED_STRUCTURE = (
    '<raw>/**/*.mat, one or more per view, with the view in the file or folder '
    'name (frontal, left_diagonal, left_lateral, right_diagonal, right_lateral), '
    'holding [T, 25, 3] or [T, 75] skeleton arrays; or the authors\' converted '
    'text files <raw>/<view>/gc<k>_body<NN>_<timestamp>.txt')

MAT_EXTRA_HINT = ("reading KS20 .mat files needs SciPy, an optional extra: "
                  "pip install 'sge-jax[mat]'")

# The keyword must not follow a letter ('valid3' is not person 3).
_PERSON = re.compile(
    r'(?<![a-z])(?:body|person|subject|subj|sub|id)[ _-]*0*(\d+)', re.IGNORECASE)
_WALK = re.compile(r'(gc|seq|sequence|walk|trial)[ _-]*0*(\d+)', re.IGNORECASE)
_TEXT_FRAME = re.compile(r'^(gc\d+)_body(\d+)_(\d+)', re.IGNORECASE)
_PERSON_FIELDS = ('body', 'person', 'subject', 'personid', 'bodyid')
_TIME_FIELDS = ('time', 'timestamp', 'frame', 'frameid', 'framenumber')


def view_of(text: str) -> Optional[str]:
  """The KS20 view named in a path or label, or None."""
  key = re.sub(r'[^a-z]', '', text.lower())
  for side in ('left', 'right'):
    if side + 'diag' in key:
      return f'{side}_diagonal'
    if side + 'lat' in key:
      return f'{side}_lateral'
  if 'front' in key:
    return 'frontal'
  return None


def as_frames(array: np.ndarray) -> Optional[np.ndarray]:
  """A numeric array as [T, 25, 3] frames, or None if it is not skeleton-shaped.

  Accepts [T, 25, 3] and its transposes (time, joints and coordinates told apart
  by the sizes 25 and 3; preferred order T-J-C, then J-C-T, C-J-T), [T, 75],
  [75, T] (joint-major x, y, z triples), and a single frame [25, 3] / [3, 25].
  """
  shape = array.shape
  if array.ndim == 3:
    for t, j, c in ((0, 1, 2), (2, 0, 1), (2, 1, 0), (0, 2, 1), (1, 0, 2),
                    (1, 2, 0)):
      if shape[j] == NUM_JOINTS and shape[c] == 3:
        return np.transpose(array, (t, j, c))
    return None
  if array.ndim == 2:
    if shape == (NUM_JOINTS, 3):
      return array[None]
    if shape == (3, NUM_JOINTS):
      return array.T[None]
    if shape[1] == 3 * NUM_JOINTS:
      return array.reshape(shape[0], NUM_JOINTS, 3)
    if shape[0] == 3 * NUM_JOINTS:
      return array.T.reshape(shape[1], NUM_JOINTS, 3)
  return None


@dataclasses.dataclass
class _Leaf:
  """A numeric array found in a .mat file, with the names around it."""
  path: tuple[str, ...]      # variable / field names and [indices], outer first
  array: np.ndarray
  labels: list[str]          # names and string values, nearest first
  person: Optional[int]      # from a numeric person field next to it
  time: Optional[float]      # from a numeric time field next to it


def _is_numeric(value: Any) -> bool:
  return (isinstance(value, np.ndarray) and value.dtype != object
          and (np.issubdtype(value.dtype, np.number)))


def _scalar(value: Any) -> Optional[float]:
  if isinstance(value, (int, float, np.integer, np.floating)):
    return float(value)
  if _is_numeric(value) and value.size == 1:
    return float(value.reshape(-1)[0])
  return None


def _walk(node: Any, path: tuple[str, ...], labels: list[str],
          person: Optional[int], time: Optional[float]) -> Iterator[_Leaf]:
  """Yields the numeric arrays under a loadmat(simplify_cells=True) value."""
  if isinstance(node, dict):
    strings = [v for v in node.values() if isinstance(v, str)]
    fields = {re.sub(r'[^a-z]', '', str(k).lower()): v for k, v in node.items()}
    for name in _PERSON_FIELDS:
      value = _scalar(fields.get(name))
      if value is not None and value.is_integer():
        person = int(value)
        break
    for name in _TIME_FIELDS:
      value = _scalar(fields.get(name))
      if value is not None:
        time = value
        break
    for key, value in node.items():
      if str(key).startswith('__'):
        continue
      yield from _walk(value, path + (str(key),),
                       [str(key)] + strings + labels, person, time)
  elif isinstance(node, (list, tuple)) or (
      isinstance(node, np.ndarray) and node.dtype == object):
    items = node if isinstance(node, (list, tuple)) else node.reshape(-1)
    for i, item in enumerate(items):
      yield from _walk(item, path + (f'[{i}]',), labels, person, time)
  elif _is_numeric(node) and node.ndim >= 2:
    yield _Leaf(path, node, labels, person, time)


def _person_in(labels: list[str]) -> Optional[int]:
  for label in labels:
    match = _PERSON.search(label)
    if match:
      return int(match.group(1))
  return None


def _walk_in(labels: list[str]) -> Optional[str]:
  for label in labels:
    match = _WALK.search(label)
    if match:
      return f'{match.group(1).lower()}{int(match.group(2))}'
  return None


def load_mat(path: str) -> dict:
  """scipy.io.loadmat with cells and structs as Python lists and dicts.

  Raises:
    DataError: SciPy is missing (it is the optional ``mat`` extra).
    NotImplementedError: a MATLAB v7.3 (HDF5) file.
    OSError: not a regular file.
  """
  try:
    import scipy.io  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise DataError(MAT_EXTRA_HINT) from e
  rec_lib.require_regular(path)
  return scipy.io.loadmat(path, simplify_cells=True)


def recordings_from_mat(content: dict, source: str, file_labels: list[str],
                        manifest) -> list[rec_lib.Recording]:
  """Recordings found in one loaded .mat file (see the module docstring)."""
  result = []
  frame_groups: dict[tuple, list[_Leaf]] = {}
  ignored = collections.Counter()
  for leaf in _walk(content, (), [], None, None):
    frames = as_frames(leaf.array)
    if frames is None:
      ignored[str(leaf.array.shape)] += 1
      continue
    labels = leaf.labels + file_labels
    person = leaf.person if leaf.person is not None else _person_in(labels)
    walk = _walk_in(labels)
    view = next((v for v in map(view_of, labels) if v), '')
    where = f'{source}:{"/".join(leaf.path) or "<top>"}'
    if person is None:
      manifest.skip_source(where, 'cannot tell the person (no body/person/'
                           'subject/id number in the names around it)')
      continue
    if leaf.array.ndim == 2 and leaf.array.shape in ((NUM_JOINTS, 3),
                                                     (3, NUM_JOINTS)):
      frame_groups.setdefault((person, walk or '', view), []).append(
          dataclasses.replace(leaf, array=frames[0]))
      continue
    result.append(_finish(frames, person, where, walk or where, view))
  for (person, walk, view), leaves in frame_groups.items():
    if all(leaf.time is not None for leaf in leaves):
      leaves = sorted(leaves, key=lambda leaf: leaf.time)
    frames = np.stack([leaf.array for leaf in leaves])
    where = (f'{source}:frames of person {person}'
             + (f' {walk}' if walk else '') + (f' {view}' if view else ''))
    result.append(_finish(frames, person, where, walk or where, view))
  if ignored:
    manifest.warn('arrays that are not skeletons ([T, 25, 3], [T, 75] or a '
                  '[25, 3] frame) ignored, by shape: ' + ', '.join(
                      f'{shape} x{n}' for shape, n in sorted(ignored.items())),
                  source)
  return result


def _finish(frames: np.ndarray, person: int, source: str, session: str,
            view: str) -> rec_lib.Recording:
  """A recording from [T, 25, 3] frames, without non-finite/untracked frames."""
  frames = np.asarray(frames, np.float64)
  finite = np.all(np.isfinite(frames), axis=(1, 2))
  untracked = rec_lib.joints_at_origin(frames) & finite
  dropped = collections.Counter()
  if (~finite).any():
    dropped['non-finite value'] = int((~finite).sum())
  if untracked.any():
    dropped[rec_lib.NOT_TRACKED_ORIGIN] = int(untracked.sum())
  keep = finite & ~untracked
  return rec_lib.Recording(
      person=person, source=source, frames=frames[keep].astype(np.float32),
      session=session, view=view, frames_read=int(frames.shape[0]),
      dropped=dropped)


def _file_labels(relative: str) -> list[str]:
  """Names from a file's path, file name first, for person/walk/view lookup."""
  parts = relative.replace('\\', '/').split('/')
  stem = os.path.splitext(parts[-1])[0]
  return [stem] + list(reversed(parts[:-1]))


def _files(raw: str, suffix: str) -> list[str]:
  found = []
  for folder, subfolders, names in os.walk(raw):
    subfolders.sort(key=rec_lib.natural_key)
    for name in names:
      if name.lower().endswith(suffix):
        found.append(os.path.join(folder, name))
  return sorted(found, key=lambda p: rec_lib.natural_key(
      os.path.relpath(p, raw)))


def _read_mat_files(raw: str, paths: list[str], manifest,
                    progress) -> list[rec_lib.Recording]:
  result = []
  for number, path in enumerate(paths, 1):
    source = os.path.relpath(path, raw)
    try:
      content = load_mat(path)
    except DataError:
      raise
    except NotImplementedError:
      manifest.skip_source(source, 'MATLAB v7.3 (HDF5) file, which SciPy '
                           "cannot read; re-save it in MATLAB with "
                           "save(name, '-v7') and run again")
      continue
    except Exception as e:  # scipy raises ValueError, TypeError, OSError...
      manifest.skip_source(source, f'cannot read as .mat: {type(e).__name__}: '
                           f'{e}')
      continue
    found = recordings_from_mat(content, source, _file_labels(source),
                                manifest)
    if not found:
      manifest.skip_source(source, 'no skeleton array found')
    result.extend(found)
    progress(f'KS20 [{number}/{len(paths)}] {source}: {len(found)} '
             f'recording(s), people '
             f'{", ".join(map(str, rec_lib.people(found))) or "-"}')
  return result


def _read_text_frames(raw: str, paths: list[str], manifest,
                      progress) -> list[rec_lib.Recording]:
  """The authors' converted layout: one text file per frame."""
  groups: dict[tuple, list[tuple[int, str]]] = {}
  for path in paths:
    relative = os.path.relpath(path, raw)
    match = _TEXT_FRAME.match(os.path.basename(path))
    if not match:
      continue
    walk, body, stamp = match.group(1).lower(), int(match.group(2)), int(
        match.group(3))
    view = next((v for v in map(view_of, _file_labels(relative)[1:]) if v), '')
    folder = os.path.dirname(relative)
    groups.setdefault((view, body, walk, folder), []).append((stamp, path))
  result = []
  for (view, body, walk, folder), frames in sorted(
      groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], kv[0][3])):
    kept, dropped = [], collections.Counter()
    for _, path in sorted(frames):
      try:
        parsed = biwi_ias.parse_skel_frame(
            rec_lib.read_text(path), num_joints=NUM_JOINTS, state_field=None,
            min_fields=4)
      except OSError:
        dropped['unreadable file'] += 1
        continue
      if parsed.positions is None:
        dropped[parsed.reason] += 1
      else:
        kept.append(parsed.positions)
    source = os.path.join(folder, f'{walk}_body{body:02d}_*.txt')
    if not kept:
      manifest.skip_source(source, f'no usable frame among {len(frames)} files')
      continue
    result.append(rec_lib.Recording(
        person=body, source=source, frames=np.stack(kept), session=walk,
        view=view, frames_read=len(frames), dropped=dropped))
  progress(f'KS20: {len(result)} recording(s) from {len(paths)} text frame '
           'files')
  return result


def read_recordings(raw: str, manifest,
                    progress: Callable[[str], None]
                    ) -> list[rec_lib.Recording]:
  """Reads every KS20 recording under ``raw`` (.mat files, else text frames).

  Returns:
    Recordings ordered by view (``VIEWS`` order, unknown last), person, walk.

  Raises:
    DataError: no raw folder, no KS20 files in it, or SciPy missing for .mat.
  """
  if not os.path.isdir(raw):
    raise DataError(f'KS20 raw folder {raw!r} does not exist; expected '
                    f'{EXPECTED_STRUCTURE}')
  mat_paths = _files(raw, '.mat')
  if mat_paths:
    text_count = len(_files(raw, '.txt'))
    if text_count:
      manifest.warn(f'{text_count} .txt file(s) ignored: the .mat files are '
                    'read when both are present')
    result = _read_mat_files(raw, mat_paths, manifest, progress)
  else:
    text_paths = [p for p in _files(raw, '.txt')
                  if _TEXT_FRAME.match(os.path.basename(p))]
    if not text_paths:
      raise DataError(f'no KS20 files under {raw!r}; expected '
                      f'{EXPECTED_STRUCTURE}')
    result = _read_text_frames(raw, text_paths, manifest, progress)
  for recording in result:
    if not recording.view:
      recording.notes.append('view not recognised from the file, folder or '
                             'variable names; used in the all-views data only')
  order = {view: i for i, view in enumerate(VIEWS)}
  result.sort(key=lambda r: (order.get(r.view, len(VIEWS)), r.person,
                             rec_lib.natural_key(r.session),
                             rec_lib.natural_key(r.source)))
  return result
