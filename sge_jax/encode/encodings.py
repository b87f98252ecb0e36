"""The exported encodings file, ``encodings.npz`` (docs/method.md §6).

One file holds the CAGEs of every split of a run, with what is needed to evaluate
them without the original data (labels, split names, the raw sequences for the
baselines, the joint layout) and metadata saying how they were made. It loads
with plain ``np.load(path)`` (no pickles):

  encodings       [N, f, D] float32  frame-level CAGEs, D = M * k: the stacked
                                     models' context vectors A.H concatenated in
                                     ``model_names`` order (x, y, z per pretext)
  labels          [N] int64          person id of each sequence
  split           [N] str            split of each sequence ('train', 'test', ...)
  sequence_index  [N] int64          index of the sequence within its split
  recording       [N] int64          recording of each sequence (-1 if unknown)
  sequences       [N, f, J, 3] f32   the input sequences (metres)
  model_names     [M] str            e.g. rev_rec/x, rev_rec/y, rev_rec/z
  joint_names     [J] str            (empty when unknown)
  bones           [n, 2] int64       (parent, child) pairs (empty when unknown)
  dataset, attention, pretext, config_hash, sge_jax_version   str scalars
  length, hidden, seed                                        int scalars
  data_source     str scalar         where the data came from (the dataset
                                     folder, the .npz file, or
                                     'synthetic(seed=S)'; absent in older files)
  procedure       str scalar         'released' (absent = 'clean', the default,
                                     so clean files stay as they were)
  quirks          [q] str            the released behaviours that were on,
                                     e.g. 'R1 extraction_batches' (absent = none)

Rows are grouped by split in report order and in stored order within a split.
AP ("average prediction") uses the f rows of a sequence as frame-level samples;
SC ("sequence-level concatenation") flattens them to [f * D].
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Optional, Sequence

import numpy as np

from sge_jax import workdir as workdir_lib
from sge_jax.errors import DataError

_ARRAY_FIELDS = ('encodings', 'labels', 'split', 'sequence_index', 'recording',
                 'sequences')
_STRING_METADATA = ('dataset', 'attention', 'pretext', 'config_hash',
                    'sge_jax_version')
_INT_METADATA = ('length', 'hidden', 'seed')


@dataclasses.dataclass(frozen=True)
class EncodingMetadata:
  """How a set of encodings was made."""
  dataset: str
  length: int
  attention: str
  pretext: str
  hidden: int
  seed: int
  config_hash: str
  model_names: tuple[str, ...]
  joint_names: Optional[tuple[str, ...]] = None
  bones: Optional[tuple[tuple[int, int], ...]] = None
  sge_jax_version: str = ''
  procedure: str = 'clean'
  quirks: tuple[str, ...] = ()
  data_source: str = ''


@dataclasses.dataclass(frozen=True)
class SplitEncodings:
  """The encodings of one split.

  Attributes:
    encodings: [n, f, D] frame-level CAGEs.
    labels: [n] person ids.
    sequences: [n, f, J, 3] input sequences (metres).
    recordings: [n] recording index (-1 if unknown).
  """
  encodings: np.ndarray
  labels: np.ndarray
  sequences: np.ndarray
  recordings: np.ndarray


@dataclasses.dataclass(frozen=True)
class EncodingSet:
  """All exported encodings of a run (see the module docstring for the fields)."""
  encodings: np.ndarray
  labels: np.ndarray
  split: np.ndarray
  sequence_index: np.ndarray
  recording: np.ndarray
  sequences: np.ndarray
  metadata: EncodingMetadata

  def __post_init__(self):
    count = self.encodings.shape[0]
    for name in _ARRAY_FIELDS:
      if getattr(self, name).shape[0] != count:
        raise ValueError(f'{name} has {getattr(self, name).shape[0]} rows, '
                         f'encodings has {count}')

  @property
  def split_names(self) -> list[str]:
    """Split names in the order they are stored."""
    _, first = np.unique(self.split, return_index=True)
    return [str(self.split[i]) for i in sorted(first)]

  def select(self, split_name: str) -> SplitEncodings:
    rows = self.split == split_name
    if not rows.any():
      raise KeyError(f'no split {split_name!r} in these encodings; they have '
                     f'{", ".join(self.split_names)}')
    return SplitEncodings(self.encodings[rows], self.labels[rows],
                          self.sequences[rows], self.recording[rows])


def combine_splits(splits: Sequence[tuple[str, SplitEncodings]],
                   metadata: EncodingMetadata) -> EncodingSet:
  """Stacks per-split encodings (in the given order) into one EncodingSet."""
  return EncodingSet(
      encodings=np.concatenate([s.encodings for _, s in splits]).astype(np.float32),
      labels=np.concatenate([s.labels for _, s in splits]).astype(np.int64),
      split=np.concatenate([np.full(len(s.labels), name) for name, s in splits]),
      sequence_index=np.concatenate(
          [np.arange(len(s.labels), dtype=np.int64) for _, s in splits]),
      recording=np.concatenate([s.recordings for _, s in splits]).astype(np.int64),
      sequences=np.concatenate([s.sequences for _, s in splits]).astype(np.float32),
      metadata=metadata)


def save_encodings(path: str | pathlib.Path, encoding_set: EncodingSet) -> None:
  """Writes ``encodings.npz`` atomically (a temporary file, then a rename)."""
  path = pathlib.Path(path)
  meta = encoding_set.metadata
  arrays = {name: getattr(encoding_set, name) for name in _ARRAY_FIELDS}
  arrays['split'] = arrays['split'].astype(str)
  arrays['model_names'] = np.asarray(meta.model_names, dtype=str)
  arrays['joint_names'] = np.asarray(meta.joint_names or (), dtype=str)
  arrays['bones'] = np.asarray(meta.bones or (), dtype=np.int64).reshape(-1, 2)
  for name in _STRING_METADATA:
    arrays[name] = np.asarray(getattr(meta, name), dtype=str)
  for name in _INT_METADATA:
    arrays[name] = np.asarray(getattr(meta, name), dtype=np.int64)
  if meta.data_source:
    arrays['data_source'] = np.asarray(meta.data_source, dtype=str)
  if meta.procedure != 'clean' or meta.quirks:
    arrays['procedure'] = np.asarray(meta.procedure, dtype=str)
    arrays['quirks'] = np.asarray(meta.quirks, dtype=str)
  workdir_lib.write_atomically(path, lambda file: np.savez(file, **arrays))


def load_encodings(path: str | pathlib.Path) -> EncodingSet:
  """Reads an ``encodings.npz`` written by ``save_encodings``."""
  path = pathlib.Path(path)
  if not path.exists():
    raise DataError(f'No encodings file at {path}. Run the encode stage first '
                    '(--config.stages=encode) or point --workdir at a finished run.')
  rebuild = ('rebuild it with --config.stages=encode (the trained checkpoints '
             'are kept)')
  try:
    with np.load(path, allow_pickle=False) as data:
      required = (_ARRAY_FIELDS + ('model_names', 'joint_names', 'bones')
                  + _STRING_METADATA + _INT_METADATA)
      missing = [name for name in required if name not in data.files]
      if missing:
        raise DataError(f'{path} is not an sge-jax encodings file: it lacks '
                        f'{", ".join(missing)}')
      arrays = {name: data[name] for name in data.files}
  except DataError:
    raise
  except Exception as error:  # zipfile/numpy raise many types for bad files
    raise DataError(f'Cannot read {path} ({type(error).__name__}: {error}); '
                    f'the file is truncated or corrupt: {rebuild}.') from None
  return _encoding_set(arrays, path, rebuild)


def _encoding_set(arrays: dict[str, np.ndarray], path: pathlib.Path,
                  rebuild: str) -> EncodingSet:
  """The EncodingSet of a loaded file's arrays, each field checked."""
  def field_error(name: str, problem: str) -> DataError:
    return DataError(f'{path}: field {name!r} {problem}: {rebuild}.')

  encodings = arrays['encodings']
  if encodings.ndim != 3 or not np.issubdtype(encodings.dtype, np.floating):
    raise field_error('encodings', f'must be a float [N, f, D] array, not '
                      f'{encodings.dtype} {encodings.shape}')
  for name in _ARRAY_FIELDS:
    if arrays[name].ndim == 0 or arrays[name].shape[0] != encodings.shape[0]:
      raise field_error(name, f'has shape {arrays[name].shape} but encodings '
                        f'has {encodings.shape[0]} rows')
  for name in ('labels', 'recording'):
    if (arrays[name].ndim != 1
        or not np.issubdtype(arrays[name].dtype, np.integer)):
      raise field_error(name, f'must be an integer [N] array, not '
                        f'{arrays[name].dtype} {arrays[name].shape}')
  try:
    joint_names = tuple(str(n) for n in arrays['joint_names']) or None
    bones = tuple(tuple(int(i) for i in b) for b in arrays['bones']) or None
    metadata = EncodingMetadata(
        model_names=tuple(str(n) for n in arrays['model_names']),
        joint_names=joint_names, bones=bones,
        procedure=(str(arrays['procedure']) if 'procedure' in arrays
                   else 'clean'),
        quirks=(tuple(str(q) for q in arrays['quirks']) if 'quirks' in arrays
                else ()),
        data_source=(str(arrays['data_source']) if 'data_source' in arrays
                     else ''),
        **{name: str(arrays[name]) for name in _STRING_METADATA},
        **{name: int(arrays[name]) for name in _INT_METADATA})
  except (TypeError, ValueError) as error:
    raise DataError(f'{path}: malformed metadata ({error}): {rebuild}.') from None
  return EncodingSet(metadata=metadata,
                     **{name: arrays[name] for name in _ARRAY_FIELDS})
