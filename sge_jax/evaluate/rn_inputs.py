"""What the recognition network (``recognition``) trains on: its samples
from the CAGEs, and the validation hold-out of the 'val' rule
(docs/method.md §7).

Inputs (``rn_samples``): the CAGEs of a sequence, [f, D], become

* ``ap`` ("average prediction"): f frame-level samples [f, D] with the
  sequence's label; a sequence's scores are the mean of its f frame logits;
* ``sc`` ("sequence-level concatenation"): one sample [1, f * D].

The validation split uses ``fold_in(key(seed), VALIDATION_KEY_STREAM)``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from sge_jax.config import RNSettings, invalid
from sge_jax.errors import DataError

# fold_in stream id under the root key of config.seed ('RV' in ASCII).
VALIDATION_KEY_STREAM = 0x5256


def rn_samples(encodings: np.ndarray, manner: str) -> np.ndarray:
  """CAGEs [N, f, D] -> RN samples [N, r, D_in] (ap: r = f, D_in = D; sc: r = 1,
  D_in = f * D)."""
  encodings = np.asarray(encodings, dtype=np.float32)
  if encodings.ndim != 3:
    raise ValueError(f'encodings must be [N, f, D], got {encodings.shape}')
  if manner == 'ap':
    return encodings
  if manner == 'sc':
    return encodings.reshape(encodings.shape[0], 1, -1)
  raise invalid('rn.manner', manner, 'one of ap, sc')


def per_person_counts(labels: np.ndarray) -> dict[str, int]:
  """{person id (as text, for JSON): number of entries}, ids in sorted order."""
  people, counts = np.unique(np.asarray(labels), return_counts=True)
  return {str(person): int(count) for person, count in zip(people.tolist(),
                                                            counts.tolist())}


def validation_split(labels: np.ndarray, fraction: float, seed: int
                     ) -> tuple[np.ndarray, np.ndarray]:
  """Holds out whole training sequences per person for the 'val' rule.

  For each person with n training sequences, v = min(ceil(fraction * n), n - 1)
  of them go to validation (so every person keeps a training sequence; a person
  with one sequence gives none). They are a CONTIGUOUS run of that person's
  sequences in stored order, starting at a seeded offset: sequences are windows
  cut consecutively from recordings, so a randomly scattered hold-out would sit
  between its own neighbouring windows and validate on near-copies of training
  data; a contiguous run only touches training windows at its two ends.

  Args:
    labels: [N] person ids of the training sequences, stored order.
    fraction: share of each person's sequences to hold out, in (0, 1).
    seed: the root seed.

  Returns:
    (train_rows, val_rows): sorted int64 sequence indices partitioning 0..N-1.
  """
  labels = np.asarray(labels)
  people = np.unique(labels)
  key = jax.random.fold_in(jax.random.key(seed), VALIDATION_KEY_STREAM)
  offsets = np.asarray(jax.random.bits(key, (people.size,), jnp.uint32),
                       dtype=np.int64)
  is_val = np.zeros(labels.size, dtype=bool)
  for person, offset in zip(people, offsets):
    rows = np.flatnonzero(labels == person)
    count = min(math.ceil(fraction * rows.size), rows.size - 1)
    if count <= 0:
      continue
    start = offset % (rows.size - count + 1)
    is_val[rows[start:start + count]] = True
  return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def holdout_rows(train_labels: np.ndarray, settings: RNSettings
                 ) -> np.ndarray:
  """The training rows held out for validation: ``validation_split``'s for
  selection 'val', none for 'fixed' and 'paper' (those train on every row).

  Raises:
    DataError: selection 'val' without any person to hold a sequence out from.
  """
  if settings.selection != 'val':
    return np.zeros(0, dtype=np.int64)
  _, val_rows = validation_split(train_labels, settings.val_fraction,
                                 settings.seed)
  if val_rows.size == 0:
    raise DataError(
        "config.rn.selection='val' needs a validation split, but no training "
        'person has two or more sequences to hold one out from. Use '
        "--config.rn.selection=fixed (last epoch) instead.")
  return val_rows
