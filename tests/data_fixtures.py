"""Small on-disk fixtures for the data-loading tests."""

from __future__ import annotations

import pathlib
from typing import Sequence

import numpy as np

from sge_jax.data.authors_layout import write_authors_split


def random_split(seed: int, person_ids: Sequence[int], per_person: int,
                 length: int, num_joints: int) -> tuple[np.ndarray, np.ndarray]:
  """Random sequences [N, f, J, 3] float32 (metres) and labels [N], person-major."""
  rng = np.random.default_rng(seed)
  labels = np.repeat(np.asarray(person_ids, dtype=np.int64), per_person)
  sequences = rng.normal(0.0, 0.5, size=(labels.size, length, num_joints, 3))
  sequences[..., 2] += 3.0
  return sequences.astype(np.float32), labels


def write_dataset(length_dir: pathlib.Path, name: str, length: int,
                  num_joints: int, test_tags: Sequence[str] = (),
                  test_subfolders: Sequence[str] = (),
                  person_ids: Sequence[int] = (0, 1, 2),
                  with_train: bool = True, seed: int = 0,
                  ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Writes train + test splits with the writer; returns split -> (sequences, labels).

  ``test_tags`` are file tags written directly in the test folder (key: the
  tag); ``test_subfolders`` are SPC-MGR sub-folders with tag ``name`` (key: the
  sub-folder).
  """
  written = {}
  if with_train:
    written['train'] = random_split(seed, person_ids, 4, length, num_joints)
    write_authors_split(length_dir, name, length, *written['train'], train=True,
                        dataset_name=name)
  for index, tag in enumerate(test_tags):
    written[tag] = random_split(seed + 1 + index, person_ids, 2, length,
                                num_joints)
    write_authors_split(length_dir, tag, length, *written[tag], train=False,
                        dataset_name=name)
  for index, sub in enumerate(test_subfolders):
    written[sub] = random_split(seed + 100 + index, person_ids, 2, length,
                                num_joints)
    write_authors_split(length_dir, name, length, *written[sub], train=False,
                        subfolder=sub, dataset_name=name)
  return written
