"""The in-memory dataset every loader returns.

A dataset is a set of named splits (``train`` plus one or more test splits such as
``test``, ``A``/``B`` (IAS), ``Walking``/``Still`` (BIWI), ``gallery``/``probe``). Each
split holds f-frame sequences in *stored order*: sequences of one recording are
consecutive and in time order, which the locality-aware contrastive loss relies on.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Optional, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class SkeletonSplit:
  """One split of a dataset.

  Attributes:
    sequences: [N, f, J, 3] float32 joint positions (metres), stored order.
    labels: [N] int64 person ids as given by the source (need not be contiguous).
    recordings: [N] int64 recording index of each sequence (sequences of one
      recording share it), or None when the source does not say.
  """
  sequences: np.ndarray
  labels: np.ndarray
  recordings: Optional[np.ndarray] = None

  def __post_init__(self):
    if self.sequences.ndim != 4 or self.sequences.shape[-1] != 3:
      raise ValueError(
          f'sequences must be [N, f, J, 3], got shape {self.sequences.shape}')
    if self.labels.shape != (self.sequences.shape[0],):
      raise ValueError(
          f'labels must be [N={self.sequences.shape[0]}], got {self.labels.shape}')
    if (self.recordings is not None
        and self.recordings.shape != self.labels.shape):
      raise ValueError(
          f'recordings must be [N={self.labels.shape[0]}], '
          f'got {self.recordings.shape}')

  @property
  def num_sequences(self) -> int:
    return int(self.sequences.shape[0])


@dataclasses.dataclass(frozen=True)
class SkeletonDataset:
  """Sequences of one dataset, cut to a fixed length f.

  Attributes:
    name: dataset name (``KGBD``, ``BIWI``, ``IAS``, ``KS20``, ``CASIA_B``, ``demo``,
      ``gist`` or a user's own name).
    length: frames per sequence, f.
    splits: split name -> SkeletonSplit; always has ``train`` unless the protocol
      has none (CASIA-B CME, which only matches probe to gallery).
    joint_names: J joint names when the source says, else None.
    bones: (parent, child) joint-index pairs when the layout is known, else None.
    source: where it was read from (a path, or ``synthetic(seed=...)``).
  """
  name: str
  length: int
  splits: Mapping[str, SkeletonSplit]
  joint_names: Optional[Sequence[str]] = None
  bones: Optional[Sequence[tuple[int, int]]] = None
  source: str = ''

  def __post_init__(self):
    if not self.splits:
      raise ValueError(f'dataset {self.name!r} has no splits')
    shapes = {name: s.sequences.shape[1:] for name, s in self.splits.items()}
    if len(set(shapes.values())) != 1:
      raise ValueError(
          f'dataset {self.name!r}: splits disagree on [f, J, 3]: {shapes}')
    (f, num_joints, _), = set(shapes.values())
    if f != self.length:
      raise ValueError(
          f'dataset {self.name!r}: length={self.length} but sequences have f={f}')
    if self.joint_names is not None and len(self.joint_names) != num_joints:
      raise ValueError(
          f'dataset {self.name!r}: {len(self.joint_names)} joint names for '
          f'J={num_joints} joints')

  @property
  def num_joints(self) -> int:
    return int(next(iter(self.splits.values())).sequences.shape[2])

  @property
  def test_split_names(self) -> list[str]:
    return [name for name in self.splits if name != 'train']

  def split(self, name: str) -> SkeletonSplit:
    if name not in self.splits:
      raise KeyError(
          f'dataset {self.name!r} has no split {name!r}; '
          f'it has: {", ".join(self.splits)}')
    return self.splits[name]


def first_sequences(dataset: SkeletonDataset, count: int) -> SkeletonDataset:
  """Every split cut to at most ``count`` sequences (0 = all), shared by its people.

  The kept sequences are each person's first ones, taken in rounds (every
  person's first, then every person's second, ...), so a subset of at least P
  sequences still has all P people; stored order is kept.
  """
  if count <= 0:
    return dataset

  def head(split: SkeletonSplit) -> SkeletonSplit:
    rank_within_person = np.zeros(split.num_sequences, np.int64)
    for person in np.unique(split.labels):
      rows = np.flatnonzero(split.labels == person)
      rank_within_person[rows] = np.arange(len(rows))
    rows = np.arange(split.num_sequences)
    keep = np.sort(np.lexsort((rows, rank_within_person))[:count])
    recordings = None if split.recordings is None else split.recordings[keep]
    return SkeletonSplit(split.sequences[keep], split.labels[keep], recordings)

  return dataclasses.replace(
      dataset, splits={name: head(s) for name, s in dataset.splits.items()})
