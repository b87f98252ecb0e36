"""The exported encodings file, ``encodings.npz`` (docs/method.md §6): this
docstring is the format's one home.

One file holds the CAGEs of every split of a run (or of data encoded later
with a run's encoders, ``python -m sge_jax.encode``), with what is needed to
evaluate them without the original data (labels, split names, the input
sequences for the baselines, the joint layout) and metadata saying how they
were made. It loads with plain ``np.load(path)`` (no pickles):

  encodings       [N, f, D] float32  frame-level CAGEs, D = M * k: the stacked
                                     models' context vectors A.H concatenated in
                                     ``model_names`` order (x, y, z per pretext)
  labels          [N] int64          person id of each sequence
  split           [N] str            split of each sequence ('train', 'test', ...)
  sequence_index  [N] int64          index of the sequence within its split
  recording       [N] int64          recording of each sequence (-1 if unknown)
  sequences       [N, f, J, 3] f32   the sequences the encoders read: the input
                                     (metres) after the run's normalisation
                                     (``normalization``, ``sequence_units``)
  model_names     [M] str            e.g. rev_rec/x, rev_rec/y, rev_rec/z
  joint_names     [J] str            (empty when unknown)
  bones           [n, 2] int64       (parent, child) pairs (empty when unknown)
  dataset, attention, pretext, config_hash, sge_jax_version   str scalars
  length, hidden, seed                                        int scalars

Optional fields (absent in files written before they existed, which still
load; the loaded value is then the one given in brackets):

  data_source     str scalar         where the data came from (the dataset
                                     folder, the .npz file, or
                                     'synthetic(seed=S)') ['']
  procedure       str scalar         'clean' or 'released' ['clean']
  quirks          [q] str            the released behaviours that were on,
                                     e.g. 'R1 extraction_batches' [none]
  normalization   str scalar         what was done to the input before
                                     encoding: 'none', 'root_joint' or
                                     'center' (config.data.normalization) ['']
  sequence_units  str scalar         what ``sequences`` hold, e.g. 'metres, as
                                     given', 'metres, each sequence centred
                                     on its mean position' ['']
  source_run      str scalar         the workdir of the run whose encoders
                                     made the encodings, where that is not the
                                     run the file belongs to: a transfer run's
                                     ``encoder_workdir``, or the --workdir of
                                     ``python -m sge_jax.encode`` ['']
  source_config_hash  str scalar     that run's ``config_hash`` ['']

Rows are grouped by split in report order and in stored order within a split.
AP ("average prediction") uses the f rows of a sequence as frame-level samples;
SC ("sequence-level concatenation") flattens them to [f * D].
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Optional, Sequence

import numpy as np

from sge_jax.data import input_files
from sge_jax.data import memory
from sge_jax import workdir as workdir_lib
from sge_jax.errors import DataError

_ARRAY_FIELDS = ('encodings', 'labels', 'split', 'sequence_index', 'recording',
                 'sequences')
_STRING_METADATA = ('dataset', 'attention', 'pretext', 'config_hash',
                    'sge_jax_version')
_INT_METADATA = ('length', 'hidden', 'seed')
# Optional string scalars: written when set, '' when absent (older files).
_OPTIONAL_STRINGS = ('data_source', 'normalization', 'sequence_units',
                     'source_run', 'source_config_hash')


@dataclasses.dataclass(frozen=True)
class EncodingMetadata:
  """How a set of encodings was made (the fields of the module docstring)."""
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
  normalization: str = ''
  sequence_units: str = ''
  source_run: str = ''
  source_config_hash: str = ''


@dataclasses.dataclass(frozen=True)
class SplitEncodings:
  """The encodings of one split.

  Attributes:
    encodings: [n, f, D] frame-level CAGEs.
    labels: [n] person ids.
    sequences: [n, f, J, 3] the sequences encoded (metres, normalised as
      the metadata's ``normalization`` says).
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
  arrays['procedure'] = np.asarray(meta.procedure, dtype=str)
  arrays['quirks'] = np.asarray(meta.quirks, dtype=str)
  for name in _OPTIONAL_STRINGS:
    if getattr(meta, name):
      arrays[name] = np.asarray(getattr(meta, name), dtype=str)
  workdir_lib.write_atomically(path, lambda file: np.savez(file, **arrays))


def load_encodings(path: str | pathlib.Path) -> EncodingSet:
  """Reads an ``encodings.npz`` written by ``save_encodings``.

  Every field's dtype and shape is checked from the headers before anything
  is read, and the memory the arrays need (``sge_jax.data.memory``).

  Raises:
    DataError: a missing, non-regular, damaged or inconsistent file (the
      message names the field), or one too large for the memory.
  """
  path = pathlib.Path(path)
  if not path.exists():
    raise DataError(f'No encodings file at {path}. Run the encode stage first '
                    '(--config.stages=encode) or point --workdir at a finished run.')
  rebuild = ('rebuild it with --config.stages=encode (the trained checkpoints '
             'are kept)')
  input_files.require_regular_file(path, 'encodings file',
                                   rebuild[0].upper() + rebuild[1:] + '.')
  try:
    headers = input_files.array_headers(path)
    required = (_ARRAY_FIELDS + ('model_names', 'joint_names', 'bones')
                + _STRING_METADATA + _INT_METADATA)
    missing = [name for name in required if name not in headers]
    if missing:
      raise DataError(f'{path} is not an sge-jax encodings file: it lacks '
                      f'{", ".join(missing)}')
    problem = _header_problem(headers)
    if problem:
      raise DataError(f'{path}: field {problem[0]!r} {problem[1]}: {rebuild}.')
    memory.require_fits(input_files.array_bytes(headers), f'Reading {path}',
                        'Evaluate on a machine with more memory.')
    with np.load(path, allow_pickle=False) as data:
      arrays = {name: data[name] for name in headers}
  except DataError:
    raise
  except Exception as error:  # zipfile/numpy raise many types for bad files
    raise DataError(f'Cannot read {path} ({type(error).__name__}: {error}); '
                    f'the file is truncated or corrupt: {rebuild}.') from None
  return _encoding_set(arrays, path, rebuild)


def _header_problem(headers: dict[str, tuple[tuple, np.dtype]]
                    ) -> Optional[tuple[str, str]]:
  """(field, what is wrong) for the first field whose dtype or shape (read
  from its header) does not fit the layout in the module docstring."""
  num_rows = (headers['encodings'][0] or (0,))[0]
  expected = {'encodings': ('f', 3), 'labels': ('iu', 1), 'recording': ('iu', 1),
              'sequence_index': ('iu', 1), 'split': ('U', 1),
              'sequences': ('f', 4), 'model_names': ('U', 1),
              'joint_names': ('U', 1), 'bones': ('iu', 2), 'procedure': ('U', 0),
              'quirks': ('U', 1),
              **{name: ('U', 0) for name in _STRING_METADATA + _OPTIONAL_STRINGS},
              **{name: ('iu', 0) for name in _INT_METADATA}}
  kinds = {'f': 'a float', 'iu': 'an integer', 'U': 'a string'}
  for name, (kinds_allowed, ndim) in expected.items():
    if name not in headers:
      continue
    shape, dtype = headers[name]
    if dtype.kind not in kinds_allowed or len(shape) != ndim:
      return name, (f'must be {kinds[kinds_allowed]} array with {ndim} '
                    f'dimension(s), not {dtype} {shape}')
    if name in _ARRAY_FIELDS and shape[0] != num_rows:
      return name, f'has shape {shape} but encodings has {num_rows} rows'
  frames = headers['encodings'][0][1]
  if headers['sequences'][0][1] != frames or headers['sequences'][0][3] != 3:
    return 'sequences', (f'has shape {headers["sequences"][0]}, not '
                         f'[{num_rows}, {frames}, J, 3]')
  if headers['bones'][0][1] != 2:
    return 'bones', f'has shape {headers["bones"][0]}, not [n, 2]'
  return None


def _encoding_set(arrays: dict[str, np.ndarray], path: pathlib.Path,
                  rebuild: str) -> EncodingSet:
  """The EncodingSet of a loaded file's arrays (dtypes and shapes checked)."""
  def field_error(name: str, problem: str) -> DataError:
    return DataError(f'{path}: field {name!r} {problem}: {rebuild}.')

  for name in ('encodings', 'sequences'):
    if not np.isfinite(arrays[name]).all():
      raise field_error(name, 'holds NaN or Inf values')
  num_joints = arrays['sequences'].shape[2]
  if arrays['joint_names'].size not in (0, num_joints):
    raise field_error('joint_names', f'names {arrays["joint_names"].size} '
                      f'joints, the sequences have J={num_joints}')
  if arrays['bones'].size and not (0 <= arrays['bones'].min()
                                   and arrays['bones'].max() < num_joints):
    raise field_error('bones', f'holds joint indices outside 0..{num_joints - 1}')
  joint_names = tuple(str(n) for n in arrays['joint_names']) or None
  bones = tuple(tuple(int(i) for i in b) for b in arrays['bones']) or None
  metadata = EncodingMetadata(
      model_names=tuple(str(n) for n in arrays['model_names']),
      joint_names=joint_names, bones=bones,
      procedure=(str(arrays['procedure']) if 'procedure' in arrays
                 else 'clean'),
      quirks=(tuple(str(q) for q in arrays['quirks']) if 'quirks' in arrays
              else ()),
      **{name: str(arrays[name]) if name in arrays else ''
         for name in _OPTIONAL_STRINGS},
      **{name: str(arrays[name]) for name in _STRING_METADATA},
      **{name: int(arrays[name]) for name in _INT_METADATA})
  return EncodingSet(metadata=metadata,
                     **{name: arrays[name] for name in _ARRAY_FIELDS})
