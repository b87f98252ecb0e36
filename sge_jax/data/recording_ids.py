"""Which recording (walk) each sequence was cut from.

A recording is one continuous capture of one person, e.g. one walk seen by one
Kinect; its f-frame windows are the sequences the encoders see. Knowing the
recording of every window lets the evaluation re-identify whole walks
(docs/method.md §7.1). Sources:

* generic ``.npz``: each ``seq_offsets`` entry is one recording (its index in
  the file);
* the synthetic demo: person * (R + R_test) + recording index;
* the authors' layout: an optional extra file ``recordings_<TAG>_<f>.npy`` next
  to ``ids_<TAG>_<f>.npy``, an int64 array [N] (no pickle), written by
  ``python -m sge_jax.preprocess``. The authors' code opens files by name, so it
  never reads it; without it the recordings are unknown.

``UNKNOWN`` (-1) marks a sequence whose recording is not known; a split knows
its walks only when every sequence has a recording id >= 0. A walk must lie in
one split: ``check_walks_in_one_split`` refuses data where a recording id occurs
in the training split and in a test split.
"""

from __future__ import annotations

import pathlib
from typing import Mapping, Optional

import numpy as np

from sge_jax.errors import DataError

UNKNOWN = -1


def recordings_file_name(tag: str, length: int) -> str:
  """``recordings_<tag>_<length>.npy``, the authors'-layout recordings file."""
  return f'recordings_{tag}_{length}.npy'


def write_recordings_file(folder: pathlib.Path, tag: str, length: int,
                          recordings: np.ndarray) -> pathlib.Path:
  """Saves recording ids [N] int64 (no pickle) beside a split's ids file."""
  path = pathlib.Path(folder) / recordings_file_name(tag, length)
  np.save(path, np.asarray(recordings, dtype=np.int64), allow_pickle=False)
  return path


def read_recordings_file(path: pathlib.Path,
                         num_sequences: int) -> Optional[np.ndarray]:
  """Recording ids [N] int64 from ``path``, or None when there is no such file.

  Raises:
    DataError: the file is unreadable, pickled, not an integer array of one
      non-negative id per sequence. The message names the file and says that
      deleting it loads the split without recordings.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    return None
  fix = ('Rebuild it with python -m sge_jax.preprocess, or delete it to load '
         'the split without recordings (window-level evaluation only).')
  try:
    values = np.load(path, allow_pickle=False)
  except Exception as error:  # numpy raises ValueError/OSError/EOFError/...
    raise DataError(f'Cannot read {path} ({type(error).__name__}: {error}). '
                    + fix) from None
  if (not isinstance(values, np.ndarray) or values.ndim != 1
      or not np.issubdtype(values.dtype, np.integer)):
    raise DataError(f'{path}: expected an integer array [N] of recording ids, '
                    f'got {getattr(values, "dtype", type(values).__name__)} '
                    f'{getattr(values, "shape", "")}. ' + fix)
  if values.shape[0] != num_sequences:
    raise DataError(f'{path} holds {values.shape[0]} recording ids, but the '
                    f'split has {num_sequences} sequences. ' + fix)
  if values.size and values.min() < 0:
    raise DataError(f'{path}: recording ids must be >= 0, found '
                    f'{int(values.min())}. ' + fix)
  return values.astype(np.int64)


def known(recordings: Optional[np.ndarray]) -> bool:
  """Whether every sequence of a split has a recording id."""
  return (recordings is not None and np.size(recordings) > 0
          and bool(np.all(np.asarray(recordings) >= 0)))


def shared_recordings(first: np.ndarray, second: np.ndarray) -> list[int]:
  """Known recording ids that occur in both arrays, sorted."""
  both = np.intersect1d(np.asarray(first), np.asarray(second))
  return [int(r) for r in both if r >= 0]


def check_walks_in_one_split(recordings: Mapping[str, Optional[np.ndarray]],
                             where: str, train: str = 'train') -> None:
  """Raises DataError when a recording occurs in ``train`` and a test split.

  Args:
    recordings: split name -> recording ids [N] (None or -1 when unknown).
    where: the data's source, named in the message.
    train: the training (or gallery) split's name.
  """
  train_ids = recordings.get(train)
  if train_ids is None:
    return
  for name, ids in recordings.items():
    if name == train or ids is None:
      continue
    shared = shared_recordings(train_ids, ids)
    if shared:
      shown = ', '.join(map(str, shared[:8])) + (
          f', ... ({len(shared)} in all)' if len(shared) > 8 else '')
      raise DataError(
          f'{where}: recording(s) {shown} hold sequences of both the {train} '
          f'and the {name} split, so a walk would be scored against itself. '
          'Give every recording one split (fix the recordings file, or split '
          'by recording).')


def splits_without_recordings(recordings: Mapping[str, Optional[np.ndarray]],
                              train: str = 'train') -> list[str]:
  """Test splits (all but ``train``) that do not know every window's recording."""
  return [name for name, ids in recordings.items()
          if name != train and not known(ids)]


def require_walks(level: str, recordings: Mapping[str, Optional[np.ndarray]],
                  where: str) -> None:
  """With ``config.eval.level='walk'``, raises DataError unless some test
  split knows its recordings (checked before any training)."""
  tests = [name for name in recordings if name != 'train']
  missing = splits_without_recordings(recordings)
  if level == 'walk' and tests and len(missing) == len(tests):
    raise DataError(
        f"config.eval.level='walk' needs the recording of every test window, "
        f'but {where} does not give it for split(s) {", ".join(missing)}. Use '
        "--config.eval.level=both (or window), or data that names its "
        'recordings: the generic .npz format, the synthetic demo, or the '
        'output of python -m sge_jax.preprocess.')
