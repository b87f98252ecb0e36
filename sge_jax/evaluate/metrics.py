"""Re-identification metrics (docs/method.md §7), NumPy only.

Two settings are covered:

* **Classification scores** (the recognition network, the hand-crafted baselines):
  a score matrix ``scores`` [N, C], higher = more likely, and true class indices
  ``labels`` [N] in 0..C-1. Rank-k / CMC, nAUC, the micro ROC and the confusion
  matrix work on it.
* **Probe -> gallery retrieval** (CASIA-B CME, any nearest-neighbour matching):
  feature vectors ``query`` [Q, D] and ``gallery`` [G, D] with person labels of any
  integer values. ``retrieval_cmc``, ``mean_average_precision`` and
  ``nearest_neighbour_predict`` rank the gallery by distance for every query.

Ties are broken *against* the correct answer everywhere except nAUC: a wrong class
whose score equals the true class's score, or a wrong gallery sample at the same
distance as the nearest correct one, is ranked ahead of it. A degenerate model
(constant scores) therefore gets rank-1 = 0 rather than credit for the luck of an
index order. This is why ``rank_k(scores, labels, 1)`` can be below
``mean(argmax(scores) == labels)`` when a row has a tie at its maximum. nAUC
follows scikit-learn's ROC, which merges tied scores into one threshold (a tie
contributes a diagonal segment, i.e. half credit).

The classification metrics live here; the retrieval ones in
``sge_jax.evaluate.retrieval`` and the distances in
``sge_jax.evaluate.distances`` (float64, in query blocks of bounded size, so
the retrieval functions never hold the full [Q, G] matrix). Both are
re-exported, so ``metrics.<name>`` reaches every
metric.
"""

from __future__ import annotations

import numpy as np

from sge_jax.evaluate.distances import (  # noqa: F401 (re-exported)
    METRICS, iter_pairwise_distances, pairwise_distances)
from sge_jax.evaluate.retrieval import (  # noqa: F401 (re-exported)
    MeanAveragePrecision, RetrievalCMC, mean_average_precision,
    nearest_neighbour_predict, ranked_retrieval, retrieval_cmc,
    retrieval_cmc_and_map)


# ----------------------------------------------------------------------------
# Classification scores [N, C].


def _check_scores_and_labels(scores, labels) -> tuple[np.ndarray, np.ndarray]:
  scores = np.asarray(scores, dtype=np.float64)
  labels = np.asarray(labels)
  if scores.ndim != 2:
    raise ValueError(f'scores must be [N, C], got shape {scores.shape}')
  num_rows, num_classes = scores.shape
  if num_rows == 0 or num_classes == 0:
    raise ValueError(f'scores must be non-empty, got shape {scores.shape}')
  if labels.shape != (num_rows,):
    raise ValueError(f'labels must be [N={num_rows}], got shape {labels.shape}')
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f'labels must be integers, got dtype {labels.dtype}')
  if labels.min() < 0 or labels.max() >= num_classes:
    raise ValueError(
        f'labels must be class indices in 0..{num_classes - 1}, got values in '
        f'{labels.min()}..{labels.max()} (map person ids to score-matrix '
        'columns first, e.g. with class_indices)')
  if not np.all(np.isfinite(scores)):
    raise ValueError('scores contain NaN or infinite values')
  return scores, labels.astype(np.int64)


def class_indices(labels, classes) -> np.ndarray:
  """Maps label values to score-matrix columns.

  Args:
    labels: [N] integer labels (person ids).
    classes: [C] distinct label values; column c of a score matrix belongs to
      ``classes[c]``.

  Returns:
    [N] int64 column index of each label.

  Raises:
    ValueError: if ``classes`` has duplicates or a label is not in ``classes``.
  """
  labels = np.asarray(labels)
  classes = np.asarray(classes)
  if (classes.ndim != 1 or classes.size == 0
      or np.unique(classes).size != classes.size):
    raise ValueError('classes must be a non-empty 1-D array of distinct values')
  order = np.argsort(classes, kind='stable')
  positions = np.searchsorted(classes, labels, sorter=order)
  positions = np.clip(positions, 0, classes.size - 1)
  columns = order[positions]
  unknown = classes[columns] != labels
  if np.any(unknown):
    raise ValueError(
        f'labels not among the classes: {np.unique(labels[unknown]).tolist()}')
  return columns.astype(np.int64)


def true_class_ranks(scores, labels, tie_break=None) -> np.ndarray:
  """Rank of the true class in each row (1 = top), ties counted against it.

  Args:
    scores: [N, C] scores, higher = more likely.
    labels: [N] true class indices in 0..C-1.
    tie_break: optional [N, C]: classes of equal score are ranked by it,
      higher first (lexicographic: score, then tie_break; the walk-level
      vote ranks by votes, then by the mean score). None: equal scores tie.

  Returns:
    [N] int64 ranks in 1..C: 1 + the number of *other* classes ranked at or
    above the true class (score greater, or equal with a tie_break >= the
    true class's).
  """
  scores, labels = _check_scores_and_labels(scores, labels)
  rows = np.arange(labels.size)
  true_scores = scores[rows, labels][:, None]
  if tie_break is None:
    at_or_above = scores >= true_scores
  else:
    tie_break = np.asarray(tie_break, dtype=np.float64)
    if tie_break.shape != scores.shape:
      raise ValueError(f'tie_break must be [N, C]={scores.shape}, got '
                       f'{tie_break.shape}')
    at_or_above = (scores > true_scores) | (
        (scores == true_scores) & (tie_break >= tie_break[rows, labels][:, None]))
  # The true class itself is at or above itself, so the count is 1-based.
  return np.count_nonzero(at_or_above, axis=1).astype(np.int64)


def rank_k(scores, labels, k: int, tie_break=None) -> float:
  """Rank-k accuracy.

  Args:
    scores: [N, C] scores, higher = more likely.
    labels: [N] true class indices in 0..C-1.
    k: how many top classes count, 1 <= k <= C.
    tie_break: optional [N, C] secondary key (``true_class_ranks``).

  Returns:
    Fraction of the N rows whose true class is among the k highest scores
    (ties against the true class, see the module docstring).
  """
  num_classes = np.shape(scores)[-1]
  if not 1 <= k <= num_classes:
    raise ValueError(f'k must be in 1..C={num_classes}, got {k}')
  return float(np.mean(true_class_ranks(scores, labels, tie_break) <= k))


def cmc(scores, labels, tie_break=None) -> np.ndarray:
  """Cumulative match characteristic of a score matrix.

  Args:
    scores: [N, C] scores, higher = more likely.
    labels: [N] true class indices in 0..C-1.
    tie_break: optional [N, C] secondary key (``true_class_ranks``).

  Returns:
    [C] float64; entry k-1 is ``rank_k(scores, labels, k)`` for k = 1..C, so the
    last entry is 1.
  """
  ranks = true_class_ranks(scores, labels, tie_break)
  num_classes = np.shape(scores)[1]
  hits_at_rank = np.bincount(ranks - 1, minlength=num_classes)
  return np.cumsum(hits_at_rank) / ranks.size


def micro_roc(scores, labels) -> tuple[np.ndarray, np.ndarray]:
  """Micro-averaged one-vs-rest ROC curve of a score matrix.

  Every (row, class) cell is one binary decision: positive when the class is the
  row's true class. The N*C cells are ranked by score and swept as in
  ``sklearn.metrics.roc_curve(onehot.ravel(), scores.ravel())`` with its defaults:
  tied scores form one threshold, collinear intermediate points are dropped and
  the curve starts at (0, 0).

  Args:
    scores: [N, C] scores, higher = more likely; C >= 2.
    labels: [N] true class indices in 0..C-1.

  Returns:
    (fpr, tpr), each [P] float64 and non-decreasing, from (0, 0) to (1, 1).
  """
  scores, labels = _check_scores_and_labels(scores, labels)
  num_rows, num_classes = scores.shape
  if num_classes < 2:
    raise ValueError('the micro ROC needs C >= 2 classes (no negatives otherwise)')
  # Cells in descending score order, as scikit-learn sweeps them. Only where a
  # run of equal scores ends matters (one ROC point per distinct threshold)
  # and how many positive cells score at least that much, so a plain sort of
  # the scores and a count over the N positive cells' sorted scores give
  # exactly the counts a stable argsort of all cells would.
  sorted_scores = np.sort(scores.ravel())[::-1]
  threshold_ends = np.r_[np.flatnonzero(np.diff(sorted_scores)),
                         sorted_scores.size - 1]
  positive_scores = np.sort(scores[np.arange(num_rows), labels])
  true_positives = (positive_scores.size - np.searchsorted(
      positive_scores, sorted_scores[threshold_ends], side='left')
                   ).astype(np.float64)
  false_positives = 1.0 + threshold_ends - true_positives

  # drop_intermediate=True: keep only the corners of the piecewise-linear curve.
  if true_positives.size > 2:
    keep = np.flatnonzero(np.r_[
        True,
        np.logical_or(np.diff(false_positives, 2), np.diff(true_positives, 2)),
        True])
    true_positives = true_positives[keep]
    false_positives = false_positives[keep]

  true_positives = np.r_[0.0, true_positives]
  false_positives = np.r_[0.0, false_positives]
  return false_positives / false_positives[-1], true_positives / true_positives[-1]


def nauc(scores, labels) -> float:
  """Normalised area under the micro-averaged ROC curve (docs/method.md §7).

  Args:
    scores: [N, C] scores, higher = more likely; C >= 2.
    labels: [N] true class indices in 0..C-1.

  Returns:
    Trapezoidal area under ``micro_roc(scores, labels)``, in [0, 1]; 0.5 for
    uninformative (e.g. constant) scores, 1 when every true-class score exceeds
    every wrong-class score of every row. Equal to scikit-learn's
    ``auc(*roc_curve(onehot.ravel(), scores.ravel())[:2])``.
  """
  fpr, tpr = micro_roc(scores, labels)
  return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def top_predictions(scores, labels) -> np.ndarray:
  """The predicted class of each row, with ties at the top counted against the
  true class (module docstring), so that the share of correct predictions is
  ``rank_k(scores, labels, 1)``.

  Args:
    scores: [N, C] scores, higher = more likely.
    labels: [N] true class indices in 0..C-1.

  Returns:
    [N] int64: the highest-scoring class; when the true class shares the top
    score with others, the first of those others.
  """
  scores, labels = _check_scores_and_labels(scores, labels)
  rows = np.arange(labels.size)
  wrong_at_top = scores == scores.max(axis=1, keepdims=True)
  wrong_at_top[rows, labels] = False
  return np.where(wrong_at_top.any(axis=1), wrong_at_top.argmax(axis=1),
                  labels).astype(np.int64)


def confusion_matrix(pred, labels, num_classes: int) -> np.ndarray:
  """Confusion matrix.

  Args:
    pred: [N] predicted class indices in 0..C-1.
    labels: [N] true class indices in 0..C-1.
    num_classes: C.

  Returns:
    [C, C] int64; entry [t, p] counts rows with true class t predicted as p
    (rows = true class, columns = prediction, as in scikit-learn).
  """
  pred = np.asarray(pred)
  labels = np.asarray(labels)
  if pred.ndim != 1 or pred.shape != labels.shape:
    raise ValueError(
        f'pred and labels must both be [N], got {pred.shape} and {labels.shape}')
  for name, values in (('pred', pred), ('labels', labels)):
    if not np.issubdtype(values.dtype, np.integer):
      raise ValueError(f'{name} must be integers, got dtype {values.dtype}')
    if values.size and (values.min() < 0 or values.max() >= num_classes):
      raise ValueError(f'{name} must be in 0..{num_classes - 1}')
  counts = np.bincount(labels.astype(np.int64) * num_classes + pred,
                       minlength=num_classes * num_classes)
  return counts.reshape(num_classes, num_classes)
