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

Distances are computed in float64 in query blocks of bounded size
(``_BLOCK_ELEMENTS`` entries of the [block, G] distance matrix), so the retrieval
functions never hold the full [Q, G] matrix.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np

from sge_jax.config import DISTANCES

METRICS = DISTANCES

# Entries of one [block_rows, G] float64 distance block (2**22 -> 32 MiB).
_BLOCK_ELEMENTS = 2**22

# Norms below this are treated as zero vectors by the cosine distance.
_COSINE_MIN_NORM = 1e-12


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
  is_positive = np.zeros_like(scores, dtype=bool)
  is_positive[np.arange(num_rows), labels] = True
  flat_scores = scores.ravel()
  flat_positive = is_positive.ravel()

  # Same ordering as scikit-learn: stable sort ascending, then reversed.
  order = np.argsort(flat_scores, kind='mergesort')[::-1]
  sorted_scores = flat_scores[order]
  sorted_positive = flat_positive[order]
  # Last cell of each run of equal scores: one ROC point per distinct threshold.
  threshold_ends = np.r_[np.flatnonzero(np.diff(sorted_scores)),
                         sorted_scores.size - 1]
  true_positives = np.cumsum(sorted_positive, dtype=np.float64)[threshold_ends]
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


# ----------------------------------------------------------------------------
# Distances and probe -> gallery retrieval.


def _check_features(query, gallery) -> tuple[np.ndarray, np.ndarray]:
  query = np.asarray(query, dtype=np.float64)
  gallery = np.asarray(gallery, dtype=np.float64)
  if query.ndim != 2 or gallery.ndim != 2 or query.shape[1] != gallery.shape[1]:
    raise ValueError(
        f'query and gallery must be [Q, D] and [G, D], got {query.shape} and '
        f'{gallery.shape}')
  if gallery.shape[0] == 0:
    raise ValueError('the gallery is empty')
  if not (np.all(np.isfinite(query)) and np.all(np.isfinite(gallery))):
    raise ValueError('features contain NaN or infinite values')
  return query, gallery


def _check_metric(metric: str) -> None:
  if metric not in METRICS:
    raise ValueError(f'metric must be one of {METRICS}, got {metric!r}')


def _block_rows(num_columns: int) -> int:
  return max(1, _BLOCK_ELEMENTS // max(num_columns, 1))


def iter_pairwise_distances(query, gallery, metric: str = 'euclidean'
                            ) -> Iterator[tuple[int, np.ndarray]]:
  """Query-block-wise distances, for consumers that never need all of [Q, G].

  Args:
    query: [Q, D] features.
    gallery: [G, D] features.
    metric: ``'euclidean'`` or ``'cosine'`` (see ``pairwise_distances``).

  Yields:
    (start, block): ``block`` is the float64 [b, G] distance matrix of query rows
    ``start:start + b``; blocks come in order and cover all Q rows.
  """
  _check_metric(metric)
  query, gallery = _check_features(query, gallery)
  if metric == 'euclidean':
    # Distances are translation invariant; centring on the gallery mean keeps the
    # norms small, which limits cancellation in |q|^2 + |g|^2 - 2 q.g.
    centre = gallery.mean(axis=0)
    query = query - centre
    gallery = gallery - centre
    gallery_sq_norms = np.einsum('gd,gd->g', gallery, gallery)
  else:
    gallery = gallery / np.maximum(
        np.linalg.norm(gallery, axis=1, keepdims=True), _COSINE_MIN_NORM)
    query = query / np.maximum(
        np.linalg.norm(query, axis=1, keepdims=True), _COSINE_MIN_NORM)
  rows = _block_rows(gallery.shape[0])
  for start in range(0, query.shape[0], rows):
    block = query[start:start + rows]
    if metric == 'euclidean':
      squared = (np.einsum('qd,qd->q', block, block)[:, None]
                 + gallery_sq_norms[None, :] - 2.0 * block @ gallery.T)
      distances = np.sqrt(np.maximum(squared, 0.0))
    else:
      distances = np.clip(1.0 - block @ gallery.T, 0.0, 2.0)
    yield start, distances


def pairwise_distances(query, gallery, metric: str = 'euclidean') -> np.ndarray:
  """Distances between every query and every gallery vector.

  Args:
    query: [Q, D] features.
    gallery: [G, D] features.
    metric: ``'euclidean'`` (L2 distance) or ``'cosine'`` (1 - cosine similarity,
      in [0, 2]; an all-zero vector has similarity 0 to everything).

  Returns:
    [Q, G] float64 distances, >= 0. Euclidean distances use the expansion
    |q|^2 + |g|^2 - 2 q.g after centring on the gallery mean, with negative
    rounding residue clamped to 0 before the square root; the distance of a
    vector to itself is therefore ~1e-8 * its spread, not necessarily exactly 0.
  """
  query_rows = np.shape(query)[0]
  distances = np.empty((query_rows, np.shape(gallery)[0]), dtype=np.float64)
  for start, block in iter_pairwise_distances(query, gallery, metric):
    distances[start:start + block.shape[0]] = block
  return distances


def _check_same_samples(query, gallery, query_labels, gallery_labels) -> None:
  """The exclude_self precondition: query i is gallery i, for every i."""
  same_samples = (query.shape == gallery.shape
                  and np.array_equal(query_labels, gallery_labels)
                  and np.array_equal(query, gallery))
  if not same_samples:
    raise ValueError(
        'exclude_self=True needs the query and gallery to be the same samples '
        'in the same order (query i is gallery i); got different arrays')
  if gallery.shape[0] < 2:
    raise ValueError('exclude_self=True needs at least 2 samples')


def _label_vector(labels, count: int, name: str, letter: str) -> np.ndarray:
  """``labels`` as an array, checked to be [count]; ``letter`` names the size."""
  labels = np.asarray(labels)
  if labels.shape != (count,):
    raise ValueError(f'{name} must be [{letter}={count}], got {labels.shape}')
  return labels


def _check_retrieval_labels(query, query_labels, gallery, gallery_labels,
                            exclude_self: bool) -> tuple[np.ndarray, np.ndarray]:
  query_labels = _label_vector(query_labels, query.shape[0], 'query_labels', 'Q')
  gallery_labels = _label_vector(gallery_labels, gallery.shape[0],
                                 'gallery_labels', 'G')
  if exclude_self:
    _check_same_samples(query, gallery, query_labels, gallery_labels)
  return query_labels, gallery_labels


def _sorted_match_blocks(query, query_labels, gallery, gallery_labels,
                         metric: str, exclude_self: bool
                         ) -> Iterator[tuple[int, np.ndarray]]:
  """Yields (start, matches): matches [b, G'] bool, gallery sorted per query.

  G' = G, or G - 1 with ``exclude_self`` (the query's own index is removed).
  Order: ascending distance, and at equal distance wrong matches first.
  """
  for start, distances in iter_pairwise_distances(query, gallery, metric):
    rows = np.arange(distances.shape[0])
    matches = query_labels[start:start + rows.size, None] == gallery_labels[None]
    if exclude_self:
      # Push the sample itself behind everything as a non-match, then cut it off.
      distances[rows, start + rows] = np.inf
      matches[rows, start + rows] = False
    order = np.lexsort((matches, distances), axis=-1)
    sorted_matches = np.take_along_axis(matches, order, axis=-1)
    if exclude_self:
      sorted_matches = sorted_matches[:, :-1]
    yield start, sorted_matches


@dataclasses.dataclass(frozen=True)
class RetrievalCMC:
  """Result of ``retrieval_cmc``.

  Attributes:
    cmc: [max_rank] float64; entry k-1 is the fraction of *all* Q queries with a
      correct gallery sample among their k nearest.
    num_queries: Q.
    num_unmatchable: queries whose label has no gallery sample (other than the
      query itself under ``exclude_self``). They count as misses at every rank,
      so ``cmc`` tops out at 1 - num_unmatchable / Q.
  """
  cmc: np.ndarray
  num_queries: int
  num_unmatchable: int


def retrieval_cmc(query, query_labels, gallery, gallery_labels,
                  metric: str = 'euclidean', max_rank: int | None = None,
                  exclude_self: bool = False) -> RetrievalCMC:
  """CMC curve of probe -> gallery retrieval.

  Args:
    query: [Q, D] probe features.
    query_labels: [Q] integer person ids.
    gallery: [G, D] gallery features.
    gallery_labels: [G] integer person ids.
    metric: ``'euclidean'`` or ``'cosine'``.
    max_rank: length of the curve; default (and maximum) the number of
      candidates per query, G (G - 1 with ``exclude_self``).
    exclude_self: the CASIA-B CME rule for same-condition matching (nm.nm, bg.bg,
      cl.cl): query and gallery are the same samples in the same order (checked:
      equal arrays and labels, else ValueError), and query i never matches
      gallery i, i.e. itself; its nearest *other* sample counts. "Itself" is
      identified by index only: an exact duplicate at another index is a
      legitimate candidate.

  Returns:
    RetrievalCMC; queries without any correct gallery candidate are counted as
    misses and reported in ``num_unmatchable``. Ties in distance are broken
    against the correct match.
  """
  _check_metric(metric)
  query, gallery = _check_features(query, gallery)
  query_labels, gallery_labels = _check_retrieval_labels(
      query, query_labels, gallery, gallery_labels, exclude_self)
  num_candidates = gallery.shape[0] - int(exclude_self)
  max_rank = num_candidates if max_rank is None else max_rank
  if not 1 <= max_rank <= num_candidates:
    raise ValueError(
        f'max_rank must be in 1..{num_candidates} (candidates per query), '
        f'got {max_rank}')

  hits_at_rank = np.zeros(num_candidates, dtype=np.int64)
  num_unmatchable = 0
  for _, sorted_matches in _sorted_match_blocks(
      query, query_labels, gallery, gallery_labels, metric, exclude_self):
    hits, unmatchable = _first_hits(sorted_matches)
    hits_at_rank += hits
    num_unmatchable += unmatchable
  num_queries = query.shape[0]
  curve = np.cumsum(hits_at_rank)[:max_rank] / num_queries
  return RetrievalCMC(cmc=curve, num_queries=num_queries,
                      num_unmatchable=num_unmatchable)


@dataclasses.dataclass(frozen=True)
class MeanAveragePrecision:
  """Result of ``mean_average_precision``.

  Attributes:
    value: mean of ``average_precisions`` over the matchable queries; NaN when
      no query is matchable.
    average_precisions: [Q] float64 AP of each query, NaN for unmatchable ones.
    num_queries: Q.
    num_unmatchable: queries without any correct gallery candidate; AP is
      undefined for them, so they are left out of ``value``.
  """
  value: float
  average_precisions: np.ndarray
  num_queries: int
  num_unmatchable: int


def mean_average_precision(query, query_labels, gallery, gallery_labels,
                           metric: str = 'euclidean',
                           exclude_self: bool = False) -> MeanAveragePrecision:
  """Standard re-identification mAP of probe -> gallery retrieval.

  For one query with R correct gallery candidates found at ranks r_1 < ... < r_R
  (1-based, gallery sorted by distance, ties against correct ones):
  AP = (1/R) * sum_i i / r_i, the mean precision at each correct match.

  Args:
    query: [Q, D] probe features.
    query_labels: [Q] integer person ids.
    gallery: [G, D] gallery features.
    gallery_labels: [G] integer person ids.
    metric: ``'euclidean'`` or ``'cosine'``.
    exclude_self: the query's own index is not a candidate (see
      ``retrieval_cmc``, same check and rule).

  Returns:
    MeanAveragePrecision; unmatchable queries are excluded from the mean and
    counted in ``num_unmatchable``.
  """
  _check_metric(metric)
  query, gallery = _check_features(query, gallery)
  query_labels, gallery_labels = _check_retrieval_labels(
      query, query_labels, gallery, gallery_labels, exclude_self)
  average_precisions = np.full(query.shape[0], np.nan)
  for start, sorted_matches in _sorted_match_blocks(
      query, query_labels, gallery, gallery_labels, metric, exclude_self):
    block_ap = _average_precisions(sorted_matches)
    average_precisions[start:start + block_ap.size] = block_ap
  return _mean_ap(average_precisions)


def _first_hits(sorted_matches: np.ndarray) -> tuple[np.ndarray, int]:
  """[G'] count of queries whose first correct match is at each rank, and
  the number of queries without any correct match, from sorted_matches [Q, G']."""
  matchable = sorted_matches.any(axis=1)
  first_hit = np.argmax(sorted_matches[matchable], axis=1)
  return (np.bincount(first_hit, minlength=sorted_matches.shape[1]),
          int(np.count_nonzero(~matchable)))


def _average_precisions(sorted_matches: np.ndarray) -> np.ndarray:
  """[Q] AP of each query from sorted_matches [Q, G'] (NaN: no correct match)."""
  hits_so_far = np.cumsum(sorted_matches, axis=1)
  precision_at_rank = hits_so_far / np.arange(1, sorted_matches.shape[1] + 1)
  num_relevant = hits_so_far[:, -1]
  with np.errstate(invalid='ignore', divide='ignore'):
    average_precisions = (np.sum(precision_at_rank * sorted_matches, axis=1)
                          / num_relevant)
  average_precisions[num_relevant == 0] = np.nan
  return average_precisions


def _mean_ap(average_precisions: np.ndarray) -> MeanAveragePrecision:
  matchable = ~np.isnan(average_precisions)
  value = (float(np.mean(average_precisions[matchable])) if matchable.any()
           else float('nan'))
  return MeanAveragePrecision(
      value=value, average_precisions=average_precisions,
      num_queries=average_precisions.size,
      num_unmatchable=int(np.count_nonzero(~matchable)))


def ranked_retrieval(distances, query_labels, gallery_labels, *,
                     max_rank: int | None = None, priority=None
                     ) -> tuple[RetrievalCMC, MeanAveragePrecision]:
  """CMC and mAP of retrieval from a precomputed distance matrix.

  Args:
    distances: [Q, G] distance of every query to every gallery sample.
    query_labels: [Q] integer person ids.
    gallery_labels: [G] integer person ids.
    max_rank: length of the curve, 1..G (default G).
    priority: optional [Q, G]; the gallery is ranked by descending priority
      first and by ascending distance within equal priority (walk-level
      majority vote: the votes of the sample's person). None = distance only.

  Returns:
    (RetrievalCMC, MeanAveragePrecision) with the conventions of
    ``retrieval_cmc`` and ``mean_average_precision``: ties (equal priority
    and distance) go against the correct match; unmatchable queries count as
    misses in the CMC and are left out of the mAP.
  """
  distances = np.asarray(distances, dtype=np.float64)
  if distances.ndim != 2 or distances.shape[1] == 0:
    raise ValueError(f'distances must be [Q, G] with G >= 1, got '
                     f'{distances.shape}')
  query_labels = _label_vector(query_labels, distances.shape[0],
                               'query_labels', 'Q')
  gallery_labels = _label_vector(gallery_labels, distances.shape[1],
                                 'gallery_labels', 'G')
  num_candidates = distances.shape[1]
  max_rank = num_candidates if max_rank is None else max_rank
  if not 1 <= max_rank <= num_candidates:
    raise ValueError(f'max_rank must be in 1..{num_candidates}, got {max_rank}')
  matches = query_labels[:, None] == gallery_labels[None]
  keys = [matches, distances]
  if priority is not None:
    priority = np.asarray(priority, dtype=np.float64)
    if priority.shape != distances.shape:
      raise ValueError(f'priority must be [Q, G]={distances.shape}, got '
                       f'{priority.shape}')
    keys.append(-priority)
  order = np.lexsort(keys, axis=-1)
  sorted_matches = np.take_along_axis(matches, order, axis=-1)
  hits, unmatchable = _first_hits(sorted_matches)
  curve = np.cumsum(hits)[:max_rank] / max(distances.shape[0], 1)
  return (RetrievalCMC(cmc=curve, num_queries=distances.shape[0],
                       num_unmatchable=unmatchable),
          _mean_ap(_average_precisions(sorted_matches)))


def nearest_neighbour_predict(query, gallery, gallery_labels,
                              metric: str = 'euclidean',
                              exclude_self: bool = False) -> np.ndarray:
  """Label of the nearest gallery sample of each query.

  Args:
    query: [Q, D] features.
    gallery: [G, D] features.
    gallery_labels: [G] labels (any dtype).
    metric: ``'euclidean'`` or ``'cosine'``.
    exclude_self: query and gallery are the same samples in the same order
      (checked) and query i may not pick gallery i (the CME same-condition rule).

  Returns:
    [Q] labels, dtype of ``gallery_labels``. Among equidistant nearest samples
    the lowest gallery index wins.
  """
  _check_metric(metric)
  query, gallery = _check_features(query, gallery)
  gallery_labels = _label_vector(gallery_labels, gallery.shape[0],
                                 'gallery_labels', 'G')
  if exclude_self:
    _check_same_samples(query, gallery, gallery_labels, gallery_labels)
  nearest = np.empty(query.shape[0], dtype=np.int64)
  for start, distances in iter_pairwise_distances(query, gallery, metric):
    rows = np.arange(distances.shape[0])
    if exclude_self:
      distances[rows, start + rows] = np.inf
    nearest[start:start + rows.size] = np.argmin(distances, axis=1)
  return gallery_labels[nearest]
