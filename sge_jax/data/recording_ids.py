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
one split and hold one person: ``check_walks_in_one_split`` refuses data where a
recording id occurs in the training split and in a test split,
``check_recordings_file`` a recordings file that gives two people one recording.
"""

from __future__ import annotations

import pathlib
from typing import Mapping, Optional

import numpy as np

from sge_jax.data import input_files
from sge_jax.errors import DataError

UNKNOWN = -1
# The way out every recordings-file error offers.
_FIX = ('Rebuild it with python -m sge_jax.preprocess, or delete it to load the '
        'split without recordings (window-level evaluation only).')


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
  if not path.exists():
    return None
  input_files.require_regular_file(path, 'recordings file', _FIX)
  try:  # the header first: nothing is read unless it is one id per sequence
    shape, dtype = input_files.array_headers(path).get('', ((), None))
    if dtype is not None and dtype.kind in 'iu' and shape == (num_sequences,):
      values = np.load(path, allow_pickle=False)
  except Exception as error:  # numpy raises ValueError/OSError/EOFError/...
    raise DataError(f'Cannot read {path} ({type(error).__name__}: {error}). '
                    + _FIX) from None
  if dtype is None or dtype.kind not in 'iu' or len(shape) != 1:
    raise DataError(f'{path}: expected an integer array [N] of recording ids, '
                    f'got {dtype or "an .npz archive"} {shape}. ' + _FIX)
  if shape[0] != num_sequences:
    raise DataError(f'{path} holds {shape[0]} recording ids, but the '
                    f'split has {num_sequences} sequences. ' + _FIX)
  if values.size and values.min() < 0:
    raise DataError(f'{path}: recording ids must be >= 0, found '
                    f'{int(values.min())}. ' + _FIX)
  if values.size and values.max() > np.iinfo(np.int64).max:
    raise DataError(f'{path}: recording id {values.max()} does not fit in '
                    'int64. ' + _FIX)
  return values.astype(np.int64)


def check_recordings_file(path: pathlib.Path, recordings: np.ndarray,
                          labels: np.ndarray) -> None:
  """Raises DataError naming ``path`` when a recording holds two people."""
  problem = mixed_people_problem(recordings, labels)
  if problem:
    raise DataError(f'{path}: {problem}. {_FIX}')


def known(recordings: Optional[np.ndarray]) -> bool:
  """Whether every sequence of a split has a recording id."""
  return (recordings is not None and np.size(recordings) > 0
          and bool(np.all(np.asarray(recordings) > UNKNOWN)))


def unknown_problem(recordings: Optional[np.ndarray]) -> Optional[str]:
  """Why the windows of a split cannot all be grouped into walks, naming the
  ids at fault, or None when every window's recording is known."""
  if known(recordings):
    return None
  ids = (np.asarray(recordings) if recordings is not None
         else np.zeros(0, np.int64))
  bad = ids <= UNKNOWN
  if not ids.size or np.all(ids == UNKNOWN):
    return ('the data does not say which recording each window was cut from '
            '(the generic .npz format, the synthetic demo and python -m '
            'sge_jax.preprocess output do)')
  values = sorted(int(v) for v in np.unique(ids[bad]))
  return (f'{int(np.count_nonzero(bad))} of {ids.size} windows have no valid '
          f'recording id ({_listed(values)}; ids are >= 0, -1 means unknown)')


def shared_recordings(first: np.ndarray, second: np.ndarray) -> list[int]:
  """Known recording ids that occur in both arrays, sorted."""
  both = np.intersect1d(np.asarray(first), np.asarray(second))
  return [int(r) for r in both if r > UNKNOWN]


def _listed(values: list[int]) -> str:
  return ', '.join(map(str, values[:8])) + (
      f', ... ({len(values)} in all)' if len(values) > 8 else '')


def straddling_problem(recordings: Mapping[str, Optional[np.ndarray]],
                       train: str = 'train') -> Optional[str]:
  """What is wrong when a recording occurs in ``train`` and a test split, else
  None. ``recordings``: split name -> ids [N] (None or -1 when unknown)."""
  train_ids = recordings.get(train)
  if train_ids is None:
    return None
  for name, ids in recordings.items():
    if name == train or ids is None:
      continue
    shared = shared_recordings(train_ids, ids)
    if shared:
      return (f'recording(s) {_listed(shared)} hold sequences of both the '
              f'{train} and the {name} split, so a walk would be scored '
              'against itself')
  return None


def mixed_people_problem(recordings: np.ndarray,
                         labels: np.ndarray) -> Optional[str]:
  """What is wrong when a known recording holds windows of two people, else
  None (a recording is one walk of one person)."""
  recordings = np.asarray(recordings)
  labels = np.asarray(labels)
  order = np.lexsort((labels, recordings))
  ids, people = recordings[order], labels[order]
  mixed = ((ids[1:] == ids[:-1]) & (people[1:] != people[:-1])
           & (ids[1:] > UNKNOWN))
  if not mixed.any():
    return None
  recording = int(ids[1:][mixed][0])
  found = sorted({int(p) for p in labels[recordings == recording]})
  return (f'recording {recording} holds windows of people {found}; a '
          'recording is one walk of one person')


def check_walks_in_one_split(recordings: Mapping[str, Optional[np.ndarray]],
                             where: str, train: str = 'train') -> None:
  """Raises DataError (naming ``where``) when a recording occurs in ``train``
  and a test split."""
  problem = straddling_problem(recordings, train)
  if problem:
    raise DataError(f'{where}: {problem}. Give every recording one split (fix '
                    'the recordings file, or split by recording).')


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
