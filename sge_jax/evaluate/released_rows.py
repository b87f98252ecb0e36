"""The released code's RN rows (R1, R3, R5), applied to exported CAGEs.

A CAGE depends only on its own sequence (the encoder is deterministic), so the
released extraction loop of R1 -- per person, padded with copies of the first
sequence or truncated to whole batches of 128 -- is a choice of rows of the
encodings: ``released_train_set`` and ``released_test_set`` pick them with the
index rules of ``sge_jax.released`` (documented in docs/released_procedure.md).
Both return the set unchanged when their quirks are off, so the clean procedure
never reaches the released index rules.
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np

from sge_jax import released
from sge_jax.config.settings import RunSettings

# Seed stream of the one-off SC test permutations of R5 (ASCII 'R5'); each test
# split draws its own (the released code draws ``test_permutation`` and, for
# IAS-B, ``test_2_permutation`` separately), keyed by the split's name.
TEST_PERMUTATION_STREAM = 0x5235


def test_permutation(seed: int, split_name: str, size: int) -> np.ndarray:
  """R5's once-drawn permutation of the ``size`` test rows of one split (SC)."""
  rng = np.random.default_rng(
      [seed, TEST_PERMUTATION_STREAM, zlib.crc32(split_name.encode())])
  return rng.permutation(size)


@dataclasses.dataclass(frozen=True)
class ReleasedRows:
  """Which released behaviours shape the RN rows (from the run's quirks).

  Attributes:
    extraction_batches: R1 (per-person padding / truncation to 128).
    plus_test_copies: R3 (the test rows keep the copies; rev_rec_plus only).
    full_test_batches: R5 (only full batches of ``batch_size`` test rows).
    manner: 'ap' or 'sc'.
    batch_size: the RN batch, B_rn (128; 1280 for CASIA-B CVE).
    seed: root seed (the SC test permutation of R5).
  """
  extraction_batches: bool = False
  plus_test_copies: bool = False
  full_test_batches: bool = False
  manner: str = 'ap'
  batch_size: int = released.EXTRACTION_BATCH
  seed: int = 0

  @classmethod
  def from_settings(cls, run: RunSettings, pretext: str) -> 'ReleasedRows':
    """The rows of a run whose encodings come from ``pretext`` encoders."""
    quirks = run.quirks
    return cls(
        extraction_batches=quirks.extraction_batches,
        plus_test_copies=quirks.plus_test_copies and pretext == 'rev_rec_plus',
        full_test_batches=quirks.full_test_batches,
        manner=run.rn.manner, batch_size=run.rn.batch_size, seed=run.seed)


def released_train_set(encodings: np.ndarray, labels: np.ndarray,
                       rows: ReleasedRows) -> tuple[np.ndarray, np.ndarray]:
  """The RN training set: [N, f, D], [N] -> [M, f, D], [M] (R1 train side:
  sorted persons, copies of a small person's first sequence appended)."""
  if not rows.extraction_batches:
    return encodings, labels
  order, _ = released.released_extraction_order(labels)
  return encodings[order], labels[order]


def released_test_set(encodings: np.ndarray, labels: np.ndarray,
                      rows: ReleasedRows, split_name: str = 'test'
                      ) -> tuple[np.ndarray, np.ndarray]:
  """The test sequences the RN scores: [N, f, D], [N] -> [K, f, D], [K];
  ``r5_scored_rows`` of ``r1_test_rows``."""
  return r5_scored_rows(*r1_test_rows(encodings, labels, rows), rows,
                        split_name)


def r1_test_rows(encodings: np.ndarray, labels: np.ndarray,
                 rows: ReleasedRows) -> tuple[np.ndarray, np.ndarray]:
  """R1 test side: [N, f, D], [N] -> [M, f, D], [M] (copies cut, large
  persons truncated; with R3 the copies stay); unchanged without R1."""
  if not rows.extraction_batches:
    return encodings, labels
  if rows.plus_test_copies:
    order, _ = released.rev_rec_plus_test_order(labels)
  else:
    order = released.released_test_order(labels)
  return encodings[order], labels[order]


def r5_scored_rows(encodings: np.ndarray, labels: np.ndarray,
                   rows: ReleasedRows, split_name: str
                   ) -> tuple[np.ndarray, np.ndarray]:
  """R5: [M, f, D], [M] -> [K, f, D], [K]; unchanged without R5.

  SC scores the full batches of an order permuted once per split
  (``test_permutation`` of ``split_name``); AP scores the full batches of
  frames in stored order, regrouped into windows of f frames (a window of f
  copies of frame 0 of the first sequence, when there are fewer than B_rn
  frames, counts as a sequence of that person, as in the released code).
  """
  if not rows.full_test_batches:
    return encodings, labels
  if rows.manner == 'sc':
    scored = released.sc_scored_sequences(
        test_permutation(rows.seed, split_name, labels.size), rows.batch_size)
    return encodings[scored], labels[scored]
  num, frames, dim = encodings.shape
  windows, window_labels = released.ap_scored_windows(labels, frames,
                                                      rows.batch_size)
  return encodings.reshape(num * frames, dim)[windows], window_labels


def r5_padding(num_sequences: int, frames: int, rows: ReleasedRows) -> int:
  """How many of the B_rn rows R5 scores are copies of row 0: B_rn minus the
  test rows (sequences in SC, frames in AP) when there are fewer, else 0."""
  if not rows.full_test_batches:
    return 0
  real = num_sequences * (frames if rows.manner == 'ap' else 1)
  return max(0, rows.batch_size - real)
