"""Probe -> gallery retrieval metrics: CMC and mAP (docs/method.md §7).

Feature vectors ``query`` [Q, D] and ``gallery`` [G, D] with person labels of
any integer values; the gallery is ranked by distance (``sge_jax.evaluate.
distances``) for every query. At equal distance wrong gallery samples rank
ahead of correct ones (ties count against the correct match, as everywhere in
``sge_jax.evaluate.metrics``).

How it stays cheap at the paper's scale (tens of thousands of queries and
gallery samples): each [b, G] distance block is computed once and serves the
CMC, the mAP and any other consumer (``retrieval_cmc_and_map``'s
``on_block``). The ranking order is one unsigned 64-bit key per gallery
sample, ``distance bits << 1 | is_correct``: for distances >= 0 (and NaN) the
IEEE bit pattern orders like the value, so ascending keys are ascending
distance with wrong before correct at equal distance, exactly the order of
``np.lexsort((matches, distances))``. The first correct match's rank is then a
count (the keys below the smallest correct key), and the mAP needs one plain
sort of the keys per query.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterator, Optional, Protocol

import numpy as np

from sge_jax.evaluate import distances as distances_lib

# Sort key of a query's own sample under exclude_self: after every other key,
# and even, i.e. not a correct match.
_EXCLUDED_KEY = np.uint64(2**64 - 2)
_NO_MATCH_KEY = np.uint64(2**64 - 1)

BlockHook = Callable[[int, np.ndarray], None]


class Advance(Protocol):
  """What reports progress: ``sge_jax.progress.Progress`` or anything with
  ``advance(count)``."""

  def advance(self, count: int) -> None:
    ...


# ----------------------------------------------------------------------------
# Checks.


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


def _checked_inputs(query, query_labels, gallery, gallery_labels, metric: str,
                    exclude_self: bool):
  distances_lib.check_metric(metric)
  query, gallery = distances_lib.check_features(query, gallery)
  query_labels = _label_vector(query_labels, query.shape[0], 'query_labels', 'Q')
  gallery_labels = _label_vector(gallery_labels, gallery.shape[0],
                                 'gallery_labels', 'G')
  if exclude_self:
    _check_same_samples(query, gallery, query_labels, gallery_labels)
  return query, query_labels, gallery, gallery_labels


def _checked_max_rank(max_rank: Optional[int], num_candidates: int) -> int:
  max_rank = num_candidates if max_rank is None else max_rank
  if not 1 <= max_rank <= num_candidates:
    raise ValueError(
        f'max_rank must be in 1..{num_candidates} (candidates per query), '
        f'got {max_rank}')
  return max_rank


# ----------------------------------------------------------------------------
# Ranking keys.


def ranking_keys(distances: np.ndarray, matches: np.ndarray) -> np.ndarray:
  """[b, G] uint64 keys ordering a gallery like ``lexsort((matches, distances))``.

  Args:
    distances: [b, G] float64, each >= 0 or NaN (negative values would order by
      magnitude: callers with signed distances use ``lexsort``).
    matches: [b, G] bool, True for a correct gallery sample.

  Returns:
    ``bits(distance) << 1 | match``: the shift drops the sign bit (so -0.0 keys
    as 0.0), NaN keys after +inf, and equal distances key wrong (even) before
    correct (odd).
  """
  bits = np.ascontiguousarray(distances, dtype=np.float64).view(np.uint64)
  return (bits << np.uint64(1)) | matches


def _keyed_blocks(query, query_labels, gallery, gallery_labels, metric: str,
                  exclude_self: bool, on_block: Optional[BlockHook] = None,
                  progress: Optional[Advance] = None
                  ) -> Iterator[tuple[int, np.ndarray]]:
  """Yields (start, keys [b, G]) per piece of a distance block
  (``ranking_keys``), b <= ``distances.CACHE_ROWS``.

  Under ``exclude_self`` the query's own sample gets ``_EXCLUDED_KEY``, which
  sorts last and is no match. ``on_block(start, distances)`` sees every
  piece's distances first (it must not modify them); ``progress`` advances by
  the piece's rows once the consumer is done with it.
  """
  for start, distances in distances_lib.iter_pairwise_distances(
      query, gallery, metric, chunk_rows=distances_lib.CACHE_ROWS):
    if on_block is not None:
      on_block(start, distances)
    rows = np.arange(distances.shape[0])
    matches = query_labels[start:start + rows.size, None] == gallery_labels[None]
    keys = ranking_keys(distances, matches)
    del distances, matches
    if exclude_self:
      keys[rows, start + rows] = _EXCLUDED_KEY
    yield start, keys
    if progress is not None:
      progress.advance(rows.size)


def _first_match_positions(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """0-based position of each row's first correct match in ascending key
  order, without sorting: the number of keys below the smallest odd key.

  Returns:
    (matchable [b] bool, positions [b] int64; meaningless where not matchable).
  """
  odd = (keys & np.uint64(1)).astype(bool)
  first_match_key = np.where(odd, keys, _NO_MATCH_KEY).min(axis=1)
  matchable = odd.any(axis=1)
  positions = np.count_nonzero(keys < first_match_key[:, None], axis=1)
  return matchable, positions


def _sorted_matches(keys: np.ndarray, num_candidates: int) -> np.ndarray:
  """[b, G'] bool: the correct matches in ranking order; sorts ``keys`` in
  place. G' = ``num_candidates`` (the excluded sample, last, is cut off)."""
  keys.sort(axis=-1)
  return (keys[:, :num_candidates] & np.uint64(1)).astype(bool)


def _first_hits(sorted_matches: np.ndarray) -> tuple[np.ndarray, int]:
  """[G'] count of queries whose first correct match is at each rank, and
  the number of queries without any correct match, from sorted_matches [Q, G']."""
  matchable = sorted_matches.any(axis=1)
  first_hit = np.argmax(sorted_matches[matchable], axis=1)
  return (np.bincount(first_hit, minlength=sorted_matches.shape[1]),
          int(np.count_nonzero(~matchable)))


def _average_precisions(sorted_matches: np.ndarray) -> np.ndarray:
  """[Q] AP of each query from sorted_matches [Q, G'] (NaN: no correct match).

  Each row's terms are the precision at each correct match (its count among
  the correct ones / its rank) at its rank's position and zero elsewhere,
  summed along the whole row: the values and the summation order of
  ``sum(precision_at_rank * sorted_matches)`` without computing the
  precision at every rank.
  """
  rows, positions = np.nonzero(sorted_matches)            # row by row
  num_relevant = np.bincount(rows, minlength=sorted_matches.shape[0])
  first_of_row = np.cumsum(num_relevant) - num_relevant
  hits_so_far = np.arange(1, rows.size + 1) - first_of_row[rows]
  terms = np.zeros(sorted_matches.shape)
  terms[rows, positions] = hits_so_far / (positions + 1)
  with np.errstate(invalid='ignore', divide='ignore'):
    average_precisions = np.sum(terms, axis=1) / num_relevant
  average_precisions[num_relevant == 0] = np.nan
  return average_precisions


# ----------------------------------------------------------------------------
# Results.


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


def _cmc_result(hits_at_rank: np.ndarray, num_unmatchable: int,
                num_queries: int, max_rank: int, denominator: int
                ) -> RetrievalCMC:
  with np.errstate(invalid='ignore'):  # Q = 0: an all-NaN curve
    curve = np.cumsum(hits_at_rank)[:max_rank] / denominator
  return RetrievalCMC(cmc=curve, num_queries=num_queries,
                      num_unmatchable=num_unmatchable)


def _mean_ap(average_precisions: np.ndarray) -> MeanAveragePrecision:
  matchable = ~np.isnan(average_precisions)
  value = (float(np.mean(average_precisions[matchable])) if matchable.any()
           else float('nan'))
  return MeanAveragePrecision(
      value=value, average_precisions=average_precisions,
      num_queries=average_precisions.size,
      num_unmatchable=int(np.count_nonzero(~matchable)))


# ----------------------------------------------------------------------------
# Retrieval from features.


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
    against the correct match. The first match's rank is counted, not sorted
    for (module docstring).
  """
  query, query_labels, gallery, gallery_labels = _checked_inputs(
      query, query_labels, gallery, gallery_labels, metric, exclude_self)
  num_candidates = gallery.shape[0] - int(exclude_self)
  max_rank = _checked_max_rank(max_rank, num_candidates)
  hits_at_rank = np.zeros(num_candidates, dtype=np.int64)
  num_unmatchable = 0
  for _, keys in _keyed_blocks(query, query_labels, gallery, gallery_labels,
                               metric, exclude_self):
    matchable, positions = _first_match_positions(keys)
    hits_at_rank += np.bincount(positions[matchable], minlength=num_candidates)
    num_unmatchable += int(np.count_nonzero(~matchable))
  return _cmc_result(hits_at_rank, num_unmatchable, query.shape[0], max_rank,
                     denominator=query.shape[0])


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
  return retrieval_cmc_and_map(query, query_labels, gallery, gallery_labels,
                               metric=metric, exclude_self=exclude_self)[1]


def retrieval_cmc_and_map(query, query_labels, gallery, gallery_labels, *,
                          metric: str = 'euclidean',
                          max_rank: int | None = None,
                          exclude_self: bool = False,
                          on_block: Optional[BlockHook] = None,
                          progress: Optional[Advance] = None
                          ) -> tuple[RetrievalCMC, MeanAveragePrecision]:
  """``retrieval_cmc`` and ``mean_average_precision`` from one pass: every
  distance block is computed once and every query's gallery sorted once.

  Args:
    query, query_labels, gallery, gallery_labels, metric, max_rank,
      exclude_self: as in ``retrieval_cmc``.
    on_block: optional ``on_block(start, distances)``, called in order with
      the [b, G] distances of query rows ``start:start + b`` (b small, before
      the exclude_self rule), e.g. to take other decisions from the same
      distances. It must neither modify nor keep them.
    progress: optional object whose ``advance(rows)`` is called as rows are
      done (``sge_jax.progress.Progress``).

  Returns:
    (RetrievalCMC, MeanAveragePrecision), equal to what the two functions
    return on their own.
  """
  query, query_labels, gallery, gallery_labels = _checked_inputs(
      query, query_labels, gallery, gallery_labels, metric, exclude_self)
  num_candidates = gallery.shape[0] - int(exclude_self)
  max_rank = _checked_max_rank(max_rank, num_candidates)
  hits_at_rank = np.zeros(num_candidates, dtype=np.int64)
  num_unmatchable = 0
  average_precisions = np.full(query.shape[0], np.nan)
  for start, keys in _keyed_blocks(query, query_labels, gallery,
                                   gallery_labels, metric, exclude_self,
                                   on_block, progress):
    sorted_matches = _sorted_matches(keys, num_candidates)
    del keys
    hits, unmatchable = _first_hits(sorted_matches)
    hits_at_rank += hits
    num_unmatchable += unmatchable
    block_ap = _average_precisions(sorted_matches)
    average_precisions[start:start + block_ap.size] = block_ap
  return (_cmc_result(hits_at_rank, num_unmatchable, query.shape[0], max_rank,
                      denominator=query.shape[0]),
          _mean_ap(average_precisions))


# ----------------------------------------------------------------------------
# Retrieval from a distance matrix, and nearest neighbours.


def _descending_key(priority: np.ndarray) -> np.ndarray:
  """[Q, G] key whose ascending order is descending ``priority``: uint16
  (max - priority) for non-negative integers below 2**16 (a stable sort of
  it is a radix sort), else -priority in float64."""
  if (np.issubdtype(priority.dtype, np.integer) and priority.size
      and priority.min() >= 0 and priority.max() < 2**16):
    return (priority.max() - priority).astype(np.uint16)
  return -np.asarray(priority, dtype=np.float64)


def _sorted_ranked_matches(distances: np.ndarray, matches: np.ndarray,
                           priority_key: Optional[np.ndarray]) -> np.ndarray:
  """[b, G] bool: correct matches in the order of ``ranked_retrieval``
  (``priority_key``: ``_descending_key`` of its priority, or None)."""
  if np.any(distances < 0):
    # Signed distances: the bit-pattern keys would order them by magnitude.
    sort_keys = [matches, distances]
    if priority_key is not None:
      sort_keys.append(priority_key)
    order = np.lexsort(sort_keys, axis=-1)
    return np.take_along_axis(matches, order, axis=-1)
  keys = ranking_keys(distances, matches)
  if priority_key is None:
    return _sorted_matches(keys, keys.shape[1])
  # Distance order first, then a stable sort by descending priority: the
  # order of lexsort((matches, distances, -priority)).
  order = np.argsort(keys, axis=-1)
  by_priority = np.argsort(np.take_along_axis(priority_key, order, axis=-1),
                           axis=-1, kind='stable')
  order = np.take_along_axis(order, by_priority, axis=-1)
  return np.take_along_axis(matches, order, axis=-1)


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
      Non-negative integers below 2**16 (e.g. ranks of the values) rank the
      fastest.

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
  priority_key = None
  if priority is not None:
    priority = np.asarray(priority)
    if priority.shape != distances.shape:
      raise ValueError(f'priority must be [Q, G]={distances.shape}, got '
                       f'{priority.shape}')
    priority_key = _descending_key(priority)
  hits_at_rank = np.zeros(num_candidates, dtype=np.int64)
  num_unmatchable = 0
  average_precisions = np.full(distances.shape[0], np.nan)
  rows = distances_lib.CACHE_ROWS     # pieces that stay in the CPU cache
  for start in range(0, distances.shape[0], rows):
    block = slice(start, start + rows)
    matches = query_labels[block, None] == gallery_labels[None]
    sorted_matches = _sorted_ranked_matches(
        distances[block], matches,
        None if priority_key is None else priority_key[block])
    hits, unmatchable = _first_hits(sorted_matches)
    hits_at_rank += hits
    num_unmatchable += unmatchable
    average_precisions[block] = _average_precisions(sorted_matches)
  return (_cmc_result(hits_at_rank, num_unmatchable, distances.shape[0],
                      max_rank, denominator=max(distances.shape[0], 1)),
          _mean_ap(average_precisions))


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
  distances_lib.check_metric(metric)
  query, gallery = distances_lib.check_features(query, gallery)
  gallery_labels = _label_vector(gallery_labels, gallery.shape[0],
                                 'gallery_labels', 'G')
  if exclude_self:
    _check_same_samples(query, gallery, gallery_labels, gallery_labels)
  nearest = np.empty(query.shape[0], dtype=np.int64)
  for start, distances in distances_lib.iter_pairwise_distances(
      query, gallery, metric):
    rows = np.arange(distances.shape[0])
    if exclude_self:
      distances[rows, start + rows] = np.inf
    nearest[start:start + rows.size] = np.argmin(distances, axis=1)
  return gallery_labels[nearest]
