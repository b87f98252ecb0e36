"""Normalising skeleton coordinates before training and encoding
(``config.data.normalization``: 'none', 'root_joint' or 'center').

``normalize_sequences`` acts on one array [N, f, J, 3]; ``normalize`` on every
split of a dataset. ``SEQUENCE_UNITS`` says, for each setting, what the
normalised coordinates are (``encodings.npz`` records it with its
``sequences``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sge_jax.data.dataset import SkeletonDataset, SkeletonSplit
from sge_jax.released import normalize_to_root_joint


def center_sequences(sequences: np.ndarray) -> np.ndarray:
  """Every sequence [N, f, J, 3] minus its mean position over its frames and
  joints (per axis), float32.

  Removes where a window was recorded (translation), keeping posture and motion.
  """
  mean = sequences.mean(axis=(1, 2), keepdims=True)
  return (sequences - mean).astype(np.float32)


def subtract_root_joint(sequences: np.ndarray) -> np.ndarray:
  """Every frame minus its joint 0, per axis, float32 (the authors' CASIA-B
  ``--norm 1``, R8 in docs/released_procedure.md; not a quirk: the CASIA-B
  configs default to it in both procedures).

  Sequences [N, f, J, 3] become ``x - x[:, :, 0:1, :]``: joint 0 is 0 in every
  frame, the rest is relative to it.
  """
  return normalize_to_root_joint(sequences).astype(np.float32)


NORMALIZERS = {'center': center_sequences, 'root_joint': subtract_root_joint}

# What the coordinates are after each normalisation (the inputs in metres).
SEQUENCE_UNITS = {
    'none': 'metres, as given',
    'root_joint': 'metres, relative to joint 0 of each frame',
    'center': 'metres, each sequence centred on its mean position',
}


def normalize_sequences(sequences: np.ndarray, normalization: str
                        ) -> np.ndarray:
  """Sequences [N, f, J, 3] float32 (metres) normalised as ``normalization``
  asks ('none' returns them unchanged)."""
  if normalization == 'none':
    return sequences
  return NORMALIZERS[normalization](sequences)


def normalize(dataset: SkeletonDataset, normalization: str) -> SkeletonDataset:
  """Applies ``config.data.normalization`` to every split of ``dataset``."""
  if normalization == 'none':
    return dataset

  def normalized(split: SkeletonSplit) -> SkeletonSplit:
    return SkeletonSplit(normalize_sequences(split.sequences, normalization),
                         split.labels, split.recordings)

  return dataclasses.replace(
      dataset, splits={name: normalized(s) for name, s in dataset.splits.items()})
