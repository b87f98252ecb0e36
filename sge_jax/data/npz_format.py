"""Generic skeleton .npz: variable-length recordings, frames concatenated.

Fields (the layout of the real Kinect v2 GIST recordings that ``configs/gist.py``
reads):

* ``positions`` [T, J, 3] float: joint positions in metres, all recordings' frames
  concatenated.
* ``seq_offsets`` [n+1] int: recording i is
  ``positions[seq_offsets[i]:seq_offsets[i+1]]``.
* ``seq_person`` [n] int: person id of each recording.
* optional per-recording ints ``seq_trial``, ``seq_view`` (any ``seq_<field>`` can
  serve as the split field), ``joint_names`` [J] str, ``bones`` [B, 2] int
  (parent, child) index pairs.

Each recording is cut with ``cut_windows`` (docs/method.md §2.1: drop 10 frames at each end,
non-overlapping f-frame windows in time order). Sequences keep the stored order,
recording after recording; ``SkeletonSplit.recordings`` holds the recording's
index in the file. ``load_npz_dataset`` (a run's data): recordings whose
``seq_<split_field>`` value is in ``train_values`` form ``train``, the others
``test``. ``load_npz_recordings`` (new data to encode, ``python -m
sge_jax.encode``): every recording in one split ``data``, or one split per
value of ``seq_<split_field>``.
"""

from __future__ import annotations

import pathlib
import re
from typing import Optional

import numpy as np
from absl import logging

from sge_jax.data import input_files
from sge_jax.data import memory
from sge_jax.data import joints
from sge_jax.data.dataset import SkeletonDataset, SkeletonSplit
from sge_jax.data.windows import EDGE_FRAMES_DROPPED, cut_windows
from sge_jax.data.units import integer_coordinates_warning
from sge_jax.errors import DataError

REQUIRED_FIELDS = ('positions', 'seq_offsets', 'seq_person')

_RANGE = re.compile(r'^(-?\d+)\s*-\s*(-?\d+)$')


def parse_value_set(text: str) -> frozenset[int]:
  """Parses ``'1-10'``, ``'1,3,5-7'`` or ``'4'`` into a set of integers.

  Raises:
    DataError: an empty string, a part that is neither an integer nor an
      ascending ``a-b`` range.
  """
  values = set()
  parts = [part.strip() for part in str(text).split(',')]
  if not any(parts):
    raise DataError(
        f'config.data.train_values={text!r} is empty; give values such as '
        "'1-10' or '1,3,5-7'.")
  for part in parts:
    if re.fullmatch(r'-?\d+', part):
      values.add(int(part))
      continue
    match = _RANGE.match(part)
    if not match or int(match.group(1)) > int(match.group(2)):
      raise DataError(
          f'config.data.train_values={text!r}: cannot parse {part!r}; use '
          "integers and ascending ranges separated by commas, e.g. '1-10' or "
          "'1,3,5-7'.")
    values.update(range(int(match.group(1)), int(match.group(2)) + 1))
  return frozenset(values)


def load_npz_dataset(path: str | pathlib.Path,
                     length: int,
                     split_field: str = 'trial',
                     train_values: str = '1-10',
                     name: Optional[str] = None) -> SkeletonDataset:
  """Loads a generic skeleton .npz into ``train`` and ``test`` splits.

  Args:
    path: the .npz file.
    length: frames per sequence, f.
    split_field: per-recording field deciding the split (``'trial'`` reads
      ``seq_trial``, ``'view'`` reads ``seq_view``).
    train_values: values of that field that go to ``train`` (``'1-10'``).
    name: dataset name; default the file name without extension.

  Returns:
    SkeletonDataset with splits ``train`` and ``test``: sequences [N, f, J, 3]
    float32 (metres), labels [N] int64 (``seq_person``), recordings [N] int64
    (recording index in the file); joint names and bones from the file, else
    from the standard layout with J joints.

  Raises:
    DataError: missing file or field, malformed offsets, NaN/Inf positions,
      unparsable ``train_values``, or an empty split.
  """
  path = pathlib.Path(path)
  fields, positions, offsets, persons = _recordings_table(path)
  num_recordings = persons.shape[0]

  split_values = _split_values(fields, split_field, num_recordings, path)
  in_train = np.isin(split_values, sorted(parse_value_set(train_values)))

  splits = {}
  for split_name, selected in (('train', in_train), ('test', ~in_train)):
    splits[split_name] = _cut_split(
        positions, offsets, persons, np.flatnonzero(selected), length)
    if splits[split_name] is None:
      raise DataError(_empty_split_message(
          path, split_name, int(selected.sum()), split_field, train_values,
          split_values, length))

  joint_names, bones = _layout(fields, path, positions.shape[1])
  return SkeletonDataset(
      name=name or path.stem,
      length=length,
      splits=splits,
      joint_names=joint_names,
      bones=bones,
      source=str(path))


def load_npz_recordings(path: str | pathlib.Path, length: int,
                        split_field: str = '',
                        name: Optional[str] = None) -> SkeletonDataset:
  """Every recording of a generic skeleton .npz, cut into f-frame windows
  (as ``load_npz_dataset`` cuts them), for encoding new data.

  Args:
    path: the .npz file.
    length: frames per sequence, f.
    split_field: '' for one split ``data`` holding every recording; else the
      per-recording field ``seq_<split_field>`` whose values make the splits,
      named ``<split_field>_<value>`` (e.g. ``trial_3``) in value order.
    name: dataset name; default the file name without extension.

  Returns:
    SkeletonDataset as ``load_npz_dataset`` returns it, with those splits; a
    split whose recordings are all shorter than one window is left out.

  Raises:
    DataError: missing file or field, malformed offsets, NaN/Inf positions,
      or no recording long enough for one window.
  """
  path = pathlib.Path(path)
  fields, positions, offsets, persons = _recordings_table(path)
  num_recordings = persons.shape[0]
  if not split_field:
    groups = {'data': np.arange(num_recordings)}
  else:
    values = _split_values(fields, split_field, num_recordings, path)
    groups = {f'{split_field}_{value}': np.flatnonzero(values == value)
              for value in np.unique(values)}
  splits = {}
  for split_name, recordings in groups.items():
    split = _cut_split(positions, offsets, persons, recordings, length)
    if split is None:
      logging.warning('%s: split %s is left out: its %d recording(s) are all '
                      'shorter than one f=%d window', path, split_name,
                      recordings.size, length)
    else:
      splits[split_name] = split
  if not splits:
    raise DataError(
        f'{path}: no recording holds the {2 * EDGE_FRAMES_DROPPED + length} '
        f'frames one f={length} window needs after dropping '
        f'{EDGE_FRAMES_DROPPED} frames at each end, so there is nothing to '
        'encode.')
  joint_names, bones = _layout(fields, path, positions.shape[1])
  return SkeletonDataset(name=name or path.stem, length=length, splits=splits,
                         joint_names=joint_names, bones=bones,
                         source=str(path))


def _recordings_table(path: pathlib.Path):
  """The checked contents of a generic .npz: (fields, positions [T, J, 3],
  seq_offsets [n + 1], seq_person [n]) for its n recordings."""
  fields = _read_npz(path)
  positions = _positions(fields, path)
  offsets = _offsets(fields, path, positions.shape[0])
  persons = _per_recording_ints(fields, 'seq_person', offsets.shape[0] - 1,
                                path)
  return fields, positions, offsets, persons


def _split_values(fields: dict[str, np.ndarray], split_field: str,
                  num_recordings: int, path: pathlib.Path) -> np.ndarray:
  """The per-recording ints ``seq_<split_field>`` [n]; DataError naming the
  fields the file has when it lacks that one."""
  split_key = f'seq_{split_field}'
  if split_key not in fields:
    available = sorted(
        key[len('seq_'):] for key, value in fields.items()
        if key.startswith('seq_') and key != 'seq_offsets'
        and value.shape == (num_recordings,)
        and np.issubdtype(value.dtype, np.integer))
    raise DataError(
        f'{path} has no field {split_key!r} for the split field '
        f'{split_field!r} (config.data.split_field, or --split_field). '
        f'Per-recording fields in the file: {", ".join(available) or "(none)"}.')
  return _per_recording_ints(fields, split_key, num_recordings, path)


def _read_npz(path: pathlib.Path) -> dict[str, np.ndarray]:
  if path.is_dir():
    raise DataError(
        f'config.data.path={str(path)!r} is a directory; point it at the .npz '
        'file itself (e.g. .../gist_gait_normal.npz).')
  input_files.require_regular_file(path, 'npz file (config.data.path)')
  if not path.exists():
    raise DataError(
        f'npz file {path} (config.data.path) does not exist. It must hold '
        f'{", ".join(REQUIRED_FIELDS)} (see docs/data.md, "Generic skeleton .npz").')
  try:
    headers = input_files.array_headers(path)
    positions_shape, _ = headers.get('positions', ((), None))
    # The arrays as stored, and the float32 windows cut from positions.
    memory.require_fits(
        input_files.array_bytes(headers)
        + int(np.prod(positions_shape, dtype=object)) * 4,
        f'Reading {path}', 'Use a machine with more memory, or split the '
        'recordings over several files (config.data.max_sequences caps the '
        'splits only once the file is read).')
    with np.load(path, allow_pickle=False) as archive:
      fields = {key: archive[key] for key in headers}  # .npy members only
  except DataError:
    raise
  except Exception as error:  # zipfile/numpy raise many types for bad files
    raise DataError(
        f'Cannot read {path} as an .npz archive: {type(error).__name__}: '
        f'{error}.') from error
  missing = [key for key in REQUIRED_FIELDS if key not in fields]
  if missing:
    raise DataError(
        f'{path} lacks the field(s) {", ".join(missing)}; fields present: '
        f'{", ".join(sorted(fields)) or "(none)"}. Required: '
        f'{", ".join(REQUIRED_FIELDS)}.')
  return fields


def _positions(fields: dict[str, np.ndarray], path: pathlib.Path) -> np.ndarray:
  positions = fields['positions']
  if (positions.ndim != 3 or positions.shape[2] != 3
      or positions.shape[1] == 0 or positions.dtype.kind not in 'fiu'):
    raise DataError(
        f'{path}: positions must be a real [T, J, 3] array with J >= 1, got '
        f'{positions.dtype} {positions.shape}.')
  if np.issubdtype(positions.dtype, np.integer):
    logging.warning('[data] %s', integer_coordinates_warning(
        f'{path} (positions)', positions.dtype))
  finite = np.isfinite(positions)
  if not finite.all():
    frame, joint, axis = (int(i) for i in np.argwhere(~finite)[0])
    raise DataError(
        f'{path}: positions hold {int((~finite).sum())} NaN/Inf value(s); the '
        f'first at [frame, joint, axis] = [{frame}, {joint}, {axis}]. Drop or '
        'repair those frames.')
  return positions.astype(np.float32, copy=False)


def _offsets(fields: dict[str, np.ndarray], path: pathlib.Path,
             num_frames: int) -> np.ndarray:
  offsets = fields['seq_offsets']
  if (offsets.ndim != 1 or offsets.shape[0] < 2
      or not np.issubdtype(offsets.dtype, np.integer)):
    raise DataError(
        f'{path}: seq_offsets must be an integer [n+1] array, got '
        f'{offsets.dtype} {offsets.shape}.')
  offsets = offsets.astype(np.int64)
  if offsets[0] != 0 or offsets[-1] != num_frames or (np.diff(offsets) < 0).any():
    raise DataError(
        f'{path}: seq_offsets must rise from 0 to the {num_frames} frames of '
        f'positions; got first {offsets[0]}, last {offsets[-1]}'
        + (', and it decreases somewhere' if (np.diff(offsets) < 0).any() else '')
        + '.')
  return offsets


def _per_recording_ints(fields: dict[str, np.ndarray], key: str,
                        num_recordings: int, path: pathlib.Path) -> np.ndarray:
  values = fields[key]
  if values.shape != (num_recordings,) or not np.issubdtype(values.dtype,
                                                            np.integer):
    raise DataError(
        f'{path}: {key} must be an integer array with one value per recording '
        f'([{num_recordings}]), got {values.dtype} {values.shape}.')
  return values.astype(np.int64)


def _cut_split(positions: np.ndarray, offsets: np.ndarray, persons: np.ndarray,
               recording_indices: np.ndarray,
               length: int) -> Optional[SkeletonSplit]:
  """Windows of the given recordings in stored order, or None when there are none."""
  sequences, labels, recordings = [], [], []
  for index in recording_indices:
    windows = cut_windows(positions[offsets[index]:offsets[index + 1]], length)
    if windows.shape[0] == 0:
      continue
    sequences.append(windows)
    labels.append(np.full(windows.shape[0], persons[index], dtype=np.int64))
    recordings.append(np.full(windows.shape[0], index, dtype=np.int64))
  if not sequences:
    return None
  return SkeletonSplit(
      sequences=np.concatenate(sequences),
      labels=np.concatenate(labels),
      recordings=np.concatenate(recordings))


def _empty_split_message(path, split_name, num_selected, split_field,
                         train_values, split_values, length) -> str:
  relation = 'in' if split_name == 'train' else 'not in'
  if num_selected == 0:
    reason = (f'no recording has {split_field} {relation} {train_values!r} '
              f'(values in the file: {_value_summary(split_values)})')
  else:
    reason = (f'its {num_selected} recording(s) ({split_field} {relation} '
              f'{train_values!r}) are all shorter than '
              f'{2 * EDGE_FRAMES_DROPPED + length} frames, the minimum for one '
              f'f={length} window after dropping {EDGE_FRAMES_DROPPED} frames at '
              'each end')
  return (f'{path}: the {split_name} split is empty: {reason}. Change '
          'config.data.train_values (or config.data.split_field / '
          'config.data.length).')


def _value_summary(values: np.ndarray) -> str:
  unique = np.unique(values).tolist()
  if len(unique) > 12:
    return f'{unique[0]}..{unique[-1]} ({len(unique)} distinct)'
  return ', '.join(map(str, unique))


def _layout(fields: dict[str, np.ndarray], path: pathlib.Path, num_joints: int):
  """Joint names and bones from the file when present, else the standard layout."""
  standard = joints.layout_for_num_joints(num_joints)
  joint_names = standard.joint_names if standard else None
  bones = standard.bones if standard else None
  if 'joint_names' in fields:
    names = fields['joint_names']
    if names.shape != (num_joints,):
      raise DataError(
          f'{path}: joint_names has shape {names.shape}, expected [{num_joints}] '
          '(one name per joint of positions).')
    joint_names = tuple(str(n) for n in names.tolist())
  if 'bones' in fields:
    pairs = fields['bones']
    if (pairs.ndim != 2 or pairs.shape[1] != 2
        or not np.issubdtype(pairs.dtype, np.integer)
        or (pairs.size and (pairs.min() < 0 or pairs.max() >= num_joints))):
      raise DataError(
          f'{path}: bones must be integer (parent, child) pairs [B, 2] with '
          f'indices below J={num_joints}; got {pairs.dtype} {pairs.shape}.')
    bones = tuple((int(a), int(b)) for a, b in pairs.tolist())
  if standard and ('joint_names' not in fields or 'bones' not in fields):
    # Only the joint count says which skeleton this is; say so, since the
    # bone-length and descriptor baselines read joints by these names.
    logging.warning(
        '%s has no %s: assuming the %d-joint %s layout. Add joint_names and '
        'bones to the file if it is another skeleton.', path,
        ' or '.join(f for f in ('joint_names', 'bones') if f not in fields),
        num_joints, standard.name)
  return joint_names, bones
