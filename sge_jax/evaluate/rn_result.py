"""What one run of the recognition network gives
(``recognition.train_and_score``, or a saved RN re-scored by ``saved_rn``):
the scores under each selection rule, the per-epoch curves, and the
bookkeeping results.json reports.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np


@dataclasses.dataclass(frozen=True)
class RuleSelection:
  """What one selection rule picks.

  Attributes:
    epochs: test split -> selected epoch, 1-based (the state after that many
      epochs).
    scores: test split -> [n, C] float64 sequence scores (mean logits) at it.
  """
  epochs: dict[str, int]
  scores: dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class RNHistory:
  """Per-epoch curves, each [epochs] float64 (epoch e at index e - 1).

  Attributes:
    train_loss: mean mini-batch cross-entropy.
    val_accuracy: sequence-level validation accuracy (None without validation).
    val_loss: validation cross-entropy of the sequence scores (or None).
    test_accuracy: test split -> sequence-level test accuracy (empty without
      track_test).
  """
  train_loss: np.ndarray
  val_accuracy: Optional[np.ndarray]
  val_loss: Optional[np.ndarray]
  test_accuracy: dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class RNResult:
  """Outcome of ``train_and_score``.

  Attributes:
    classes: [C] person id of each score column.
    selection: the rule whose scores are ``scores``.
    scores: test split -> [n, C] float64 scores under ``selection``.
    selected_epochs: test split -> 1-based epoch chosen by ``selection``.
    rules: every available rule -> its RuleSelection (same training run).
    params: rule -> the RN parameters it keeps; for 'paper', test split ->
      parameters.
    history: per-epoch curves.
    num_train_sequences: sequences the RN trained on.
    train_sequences_per_person: person id -> sequences the RN trained on
      (after any padding, without the validation hold-out).
    num_val_sequences: sequences held out for 'val' (0 otherwise).
    val_rows: [num_val_sequences] the held-out rows of the training set.
    samples_per_epoch: training samples S (frames for 'ap').
    batch_size: effective batch size B (<= S).
    batches_per_epoch: floor(S / B); S mod B samples are dropped per epoch.
    train_seconds: wall time of training, compilation included.
  """
  classes: np.ndarray
  selection: str
  scores: dict[str, np.ndarray]
  selected_epochs: dict[str, int]
  rules: dict[str, RuleSelection]
  history: RNHistory
  num_train_sequences: int
  train_sequences_per_person: dict[str, int]
  num_val_sequences: int
  samples_per_epoch: int
  batch_size: int
  batches_per_epoch: int
  train_seconds: float
  params: dict[str, Any] = dataclasses.field(default_factory=dict)
  val_rows: np.ndarray = dataclasses.field(
      default_factory=lambda: np.zeros(0, np.int64))
