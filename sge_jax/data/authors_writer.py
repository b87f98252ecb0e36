"""Writing one split in the authors' .npy layout (``authors_layout`` describes
the layout): what ``python -m sge_jax.preprocess`` and the tests' fixtures
produce.
"""

from __future__ import annotations

import pathlib
from typing import Optional

import numpy as np

from sge_jax.data import recording_ids
from sge_jax.data.authors_arrays import AXES
from sge_jax.errors import DataError


def write_authors_split(dataset_dir: str | pathlib.Path,
                        tag: str,
                        length: int,
                        sequences: np.ndarray,
                        labels: np.ndarray,
                        *,
                        train: bool,
                        subfolder: Optional[str] = None,
                        dataset_name: Optional[str] = None,
                        recordings: Optional[np.ndarray] = None
                        ) -> list[pathlib.Path]:
  """Writes one split in the authors' file layout.

  Files written, with DS = ``dataset_name`` and ``p`` = ``''`` for train or ``'t_'``
  for test::

    <dataset_dir>/<DS>_{train,test}_npy_data[/<subfolder>]/
        <p>source_{x,y,z}_<tag>_<length>.npy   [N*f, J] float32
        <p>target_{x,y,z}_<tag>_<length>.npy   [N*f, J] float32, reversed in time
        ids_<tag>_<length>.npy                 pickled dict person -> [indices]
        recordings_<tag>_<length>.npy          [N] int64 recording ids (only
                                               with ``recordings``; no pickle)

  Examples: KGBD train ``(dir, 'KGBD', 6, ..., train=True)``; IAS test set A
  ``(dir, 'IAS-A', 6, ..., train=False)`` ->
  ``IAS_test_npy_data/t_source_x_IAS-A_6.npy``;
  the SPC-MGR form ``(dir, 'IAS', 6, ..., train=False, subfolder='A')`` ->
  ``IAS_test_npy_data/A/t_source_x_IAS_6.npy``; CASIA-B CME gallery
  ``(<root>/CASIA_B_match/50/nm.bg, 'CASIA_B', 50, ..., train=False,
  subfolder='gallery')``.

  Args:
    dataset_dir: ``<root>/<DS>/<f>`` or ``<root>/<DS>/<f>/<view folder>``.
    tag: file tag: the dataset name, or ``<name>-<split>`` for several test
      sets in one folder (``IAS-A``, ``BIWI-Still``).
    length: frames per sequence, f.
    sequences: [N, f, J, 3] joint positions in metres, stored order.
    labels: [N] integer person ids.
    train: True for the training folder, False for the test folder.
    subfolder: test split sub-folder (SPC-MGR layout), e.g. ``'probe'``.
    dataset_name: the DS prefix of the data folder. Default: ``tag`` up to its
      first ``-`` (``IAS-A`` -> ``IAS``).
    recordings: [N] recording id (>= 0) of each sequence, or None to write no
      recordings file (``sge_jax.data.recording_ids``).

  Returns:
    The paths written: 3 sources, 3 targets, the ids file, then the
    recordings file when ``recordings`` is given.

  Raises:
    DataError: sequences/labels with the wrong shape, f != length, non-finite
      values, or no sequences.
  """
  sequences = np.asarray(sequences)
  labels = np.asarray(labels)
  if (sequences.ndim != 4 or sequences.shape[1] != length
      or sequences.shape[3] != 3):
    raise DataError(
        f'write_authors_split: sequences must be [N, f={length}, J, 3], got '
        f'{sequences.shape}')
  if sequences.shape[0] == 0:
    raise DataError('write_authors_split: no sequences to write')
  if labels.shape != (sequences.shape[0],):
    raise DataError(
        f'write_authors_split: labels must be [N={sequences.shape[0]}], got '
        f'{labels.shape}')
  if not np.issubdtype(labels.dtype, np.integer):
    raise DataError(
        f'write_authors_split: labels must be integers, got {labels.dtype}')
  if not np.all(np.isfinite(sequences)):
    bad = tuple(int(i) for i in np.argwhere(~np.isfinite(sequences))[0])
    raise DataError(
        f'write_authors_split: non-finite value at [sequence, frame, joint, '
        f'axis] = {bad}')
  if recordings is not None and not (
      np.shape(recordings) == labels.shape
      and np.issubdtype(np.asarray(recordings).dtype, np.integer)
      and recording_ids.known(recordings)):
    raise DataError(
        f'write_authors_split: recordings must be [N={labels.shape[0]}] '
        'integers >= 0, got '
        f'{np.asarray(recordings).dtype} {np.shape(recordings)}')

  dataset_name = dataset_name or tag.split('-')[0]
  folder = pathlib.Path(dataset_dir) / data_folder_name(dataset_name, train)
  if subfolder:
    folder = folder / subfolder
  folder.mkdir(parents=True, exist_ok=True)

  prefix = '' if train else 't_'
  num_sequences, _, num_joints, _ = sequences.shape
  values = sequences.astype(np.float32)
  written = []
  for kind in ('source', 'target'):
    for axis_index, axis in enumerate(AXES):
      series = values[..., axis_index]
      if kind == 'target':
        series = series[:, ::-1]
      path = folder / f'{prefix}{kind}_{axis}_{tag}_{length}.npy'
      np.save(path, np.ascontiguousarray(series).reshape(
          num_sequences * length, num_joints))
      written.append(path)

  ids = {int(person): [int(i) for i in np.flatnonzero(labels == person)]
         for person in np.unique(labels)}
  ids_path = folder / f'ids_{tag}_{length}.npy'
  np.save(ids_path, ids, allow_pickle=True)
  written.append(ids_path)
  recordings_path = folder / recording_ids.recordings_file_name(tag, length)
  if recordings is not None:
    written.append(recording_ids.write_recordings_file(folder, tag, length,
                                                       recordings))
  elif recordings_path.is_file():
    recordings_path.unlink()    # a stale file would describe other sequences
  return written


def data_folder_name(dataset_name: str, train: bool) -> str:
  """'<DS>_train_npy_data' or '<DS>_test_npy_data'."""
  return f'{dataset_name}_{"train" if train else "test"}_npy_data'
