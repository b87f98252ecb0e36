"""One split's files in the authors' .npy layout (``authors_layout``): the
x/y/z coordinate files read into [N, f, J, 3], the optional reversed targets
checked against them, the ids file turned into labels, the recordings file.

Every fault is a ``DataError`` naming the file and the way out.
"""

from __future__ import annotations

import logging
import pathlib
import re
from typing import Mapping, Sequence

import numpy as np

from sge_jax.data import input_files
from sge_jax.data import memory
from sge_jax.data import recording_ids
from sge_jax.data.dataset import SkeletonSplit
from sge_jax.data.safe_pickle import read_ids_file
from sge_jax.data.units import integer_coordinates_warning
from sge_jax.errors import DataError

AXES = ('x', 'y', 'z')

GETTING_DATA_HINT = (
    'The section "Getting the data" of docs/data.md explains how to get the preprocessed '
    'files; `python -m sge_jax.preprocess` builds them from the original '
    'downloads.')


def load_split(folder: pathlib.Path, prefix: str, tag: str,
                length: int) -> SkeletonSplit:
  """Reads x/y/z sources and ids of one split; checks targets when present."""
  source_paths = [folder / f'{prefix}source_{a}_{tag}_{length}.npy' for a in AXES]
  ids_path = folder / f'ids_{tag}_{length}.npy'
  for path in source_paths + [ids_path]:
    input_files.require_regular_file(path, 'split file')
  missing = [p for p in source_paths + [ids_path] if not p.exists()]
  if missing:
    raise DataError(
        'Missing file(s):\n' + '\n'.join(f'  {p}' for p in missing)
        + f'\n(one split needs {prefix}source_{{x,y,z}}_{tag}_{length}.npy and '
        f'ids_{tag}_{length}.npy in {folder}). ' + GETTING_DATA_HINT)

  _require_split_fits(source_paths, folder)
  axis_series = [_read_axis_file(p, length) for p in source_paths]
  shapes = {p.name: s.shape for p, s in zip(source_paths, axis_series)}
  if len(set(shapes.values())) != 1:
    raise DataError(
        f'The x/y/z files in {folder} disagree in shape ([N, f, J] after '
        f'reshaping): {shapes}. They must hold the same sequences; re-export them '
        'together.')
  sequences = np.stack(axis_series, axis=-1)

  for axis_index, axis in enumerate(AXES):
    target_path = folder / f'{prefix}target_{axis}_{tag}_{length}.npy'
    if target_path.exists():
      _check_target(target_path, axis_series[axis_index], length)

  labels = labels_from_ids(read_ids_file(ids_path), sequences.shape[0], ids_path)
  recordings_path = folder / recording_ids.recordings_file_name(tag, length)
  recordings = recording_ids.read_recordings_file(recordings_path, labels.size)
  if recordings is not None:
    recording_ids.check_recordings_file(recordings_path, recordings, labels)
  return SkeletonSplit(sequences=sequences, labels=labels,
                       recordings=recordings)


def _require_split_fits(source_paths: Sequence[pathlib.Path],
                        folder: pathlib.Path) -> None:
  """Refuses a split whose x/y/z files cannot be read into memory: the files
  as stored, plus their float32 [N, f, J, 3] stack (from the headers only)."""
  try:
    shapes = [input_files.array_headers(p)[''] for p in source_paths]
  except Exception:  # pylint: disable=broad-except
    return  # a damaged header: _load_npy names the file
  values = sum(int(np.prod(shape, dtype=object)) for shape, _ in shapes)
  memory.require_fits(
      sum(int(np.prod(shape, dtype=object)) * dtype.itemsize
          for shape, dtype in shapes) + values * 4,
      f'Reading the x/y/z files in {folder} ({values} values)',
      'Use a machine with more memory, or fewer sequences in that folder '
      '(config.data.max_sequences caps a split only once it is read).')


def _load_npy(path: pathlib.Path):
  """A pickle-free .npy file (ids files go through ``safe_pickle``)."""
  input_files.require_regular_file(path, '.npy file')
  try:
    return np.load(path, allow_pickle=False)
  except Exception as error:  # numpy raises ValueError/OSError/EOFError/...
    raise DataError(
        f'Cannot read {path}: {type(error).__name__}: {error}. The file is '
        'corrupt or not a .npy file; download or rebuild it.') from error


def _read_axis_file(path: pathlib.Path, length: int) -> np.ndarray:
  """One coordinate file -> [N, f, J] float32, checked for shape and finiteness."""
  raw = _load_npy(path)
  if not isinstance(raw, np.ndarray) or not (
      np.issubdtype(raw.dtype, np.floating) or np.issubdtype(raw.dtype, np.integer)):
    raise DataError(
        f'{path}: expected a numeric array, got '
        f'{getattr(raw, "dtype", type(raw).__name__)}.')
  if np.issubdtype(raw.dtype, np.integer):
    logging.warning('[data] %s', integer_coordinates_warning(str(path), raw.dtype))
  if raw.ndim in (2, 3) and raw.shape[-1] == 0:
    raise DataError(f'{path}: shape {raw.shape} holds no joints (J=0); rebuild '
                    'the file.')
  if raw.ndim == 2:
    rows, num_joints = raw.shape
    if rows == 0:
      raise DataError(f'{path} is empty: it holds no sequences (0 rows). '
                      'Rebuild the split, or drop it with config.data.probe.')
    if rows % length:
      raise DataError(
          f'{path}: {rows} rows is not a positive multiple of f={length} '
          f'(config.data.length), so the file does not hold {length}-frame '
          f'sequences. Check that the folder matches the length.')
    series = raw.reshape(rows // length, length, num_joints)
  elif raw.ndim == 3:
    if raw.shape[0] == 0:
      raise DataError(f'{path} is empty: shape {raw.shape} holds no sequences. '
                      'Rebuild the split, or drop it with config.data.probe.')
    if raw.shape[1] != length:
      raise DataError(
          f'{path}: shape {raw.shape} holds sequences of f={raw.shape[1]} '
          f'frames, but config.data.length={length}.')
    series = raw
  else:
    raise DataError(
        f'{path}: expected [N*f, J] or [N, f, J], got shape {raw.shape}.')
  finite = np.isfinite(raw)
  if not finite.all():
    first_bad = tuple(int(i) for i in np.argwhere(~finite)[0])
    if raw.ndim == 2:
      where = (f'[row, joint]; sequence {first_bad[0] // length}, frame '
               f'{first_bad[0] % length}, joint {first_bad[1]}')
    else:
      where = '[sequence, frame, joint]'
    raise DataError(
        f'{path}: {int((~finite).sum())} NaN/Inf value(s); the first at index '
        f'{first_bad} {where} (value {raw[first_bad]}). Rebuild the file or '
        'drop the bad sequences.')
  return series.astype(np.float32, copy=False)


def _check_target(path: pathlib.Path, source: np.ndarray, length: int) -> None:
  """The target file must hold the sources reversed in time."""
  target = _read_axis_file(path, length)
  if target.shape != source.shape:
    raise DataError(
        f'{path}: shape {target.shape} ([N, f, J]) differs from its source '
        f'file {source.shape}; the target file belongs to other data.')
  reversed_source = source[:, ::-1]
  close = np.isclose(target, reversed_source, rtol=1e-5, atol=1e-6)
  if not close.all():
    sequence = int(np.argwhere(~close)[0][0])
    raise DataError(
        f'{path} is not its source file reversed in time (first mismatch in '
        f'sequence {sequence}). The source and target files come from different '
        'exports; use matching files (targets are optional: delete them to load '
        'the sources alone).')


def _as_person_id(key, path: pathlib.Path) -> int:
  if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
    return int(key)
  if isinstance(key, str) and re.fullmatch(r'-?\d+', key.strip()):
    return int(key)
  raise DataError(
      f'{path}: person id {key!r} is not an integer; the ids dict must map '
      'integer person ids to sequence indices.')


def labels_from_ids(ids: Mapping, num_sequences: int,
                    path: str | pathlib.Path) -> np.ndarray:
  """Turns the authors' ``{person: [sequence indices]}`` into labels [N] int64.

  Raises:
    DataError (naming ``path``) unless every index 0..N-1 appears exactly once.
  """
  path = pathlib.Path(path)
  labels = np.zeros(num_sequences, dtype=np.int64)
  owner: dict[int, int] = {}
  for key, indices in ids.items():
    person = _as_person_id(key, path)
    indices = np.asarray(indices).reshape(-1)
    if indices.size and not np.issubdtype(indices.dtype, np.integer):
      raise DataError(
          f'{path}: person {person} has non-integer sequence indices '
          f'({indices.dtype}).')
    for index in indices.tolist():
      if not 0 <= index < num_sequences:
        raise DataError(
            f'{path}: person {person} lists sequence index {index}, but the '
            f'source files hold {num_sequences} sequences (0..{num_sequences - 1}).'
            ' The ids file belongs to other data.')
      if index in owner:
        raise DataError(
            f'{path}: sequence index {index} is listed twice (persons '
            f'{owner[index]} and {person}); each sequence has one person.')
      owner[index] = person
      labels[index] = person
  if len(owner) != num_sequences:
    assigned = np.zeros(num_sequences, dtype=bool)
    assigned[list(owner)] = True
    missing = np.flatnonzero(~assigned)
    raise DataError(
        f'{path}: lists {len(owner)} sequence indices but the source files hold '
        f'{num_sequences} sequences; {missing.size} have no person (first: '
        f'{missing[:5].tolist()}). The ids file belongs to other data.')
  return labels
