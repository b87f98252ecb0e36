"""sge_jax.evaluate.retrieval against brute-force rankings: one pass over the
distances for CMC and mAP, the count-based first match, the sort keys, and
the vote-priority ranking."""

import numpy as np
import pytest

from sge_jax.evaluate import distances, metrics, retrieval


def _brute_force(distance_rows, query_labels, gallery_labels, priority=None,
                 exclude_self=False):
  """(first-match rank or None, AP or None) per query, by sorting Python
  tuples: priority descending, distance ascending, wrong before correct."""
  results = []
  for i, row in enumerate(distance_rows):
    items = [(-(0.0 if priority is None else priority[i][j]), row[j],
              bool(gallery_labels[j] == query_labels[i]))
             for j in range(len(row)) if not (exclude_self and j == i)]
    ranked = [match for *_, match in sorted(items)]
    ranks = [r + 1 for r, match in enumerate(ranked) if match]
    if not ranks:
      results.append((None, None))
      continue
    results.append((ranks[0], sum((k + 1) / r for k, r in enumerate(ranks))
                    / len(ranks)))
  return results


def _check_against(results, cmc, average_precision, num_candidates):
  first_ranks = [first for first, _ in results if first is not None]
  expected_cmc = np.array([sum(r <= k for r in first_ranks) for k in
                           range(1, num_candidates + 1)]) / len(results)
  np.testing.assert_array_equal(cmc.cmc, expected_cmc)
  assert cmc.num_unmatchable == sum(first is None for first, _ in results)
  for (_, ap), got in zip(results, average_precision.average_precisions):
    if ap is None:
      assert np.isnan(got)
    else:
      # Summation order differs from the brute force's: float64 rounding.
      assert got == pytest.approx(ap, rel=1e-12)


def _tied_features(rng, count, dim=2):
  """Small integer coordinates: many exactly equal distances."""
  return rng.integers(0, 3, size=(count, dim)).astype(np.float64)


@pytest.mark.parametrize('seed', range(4))
@pytest.mark.parametrize('exclude_self', [False, True])
@pytest.mark.parametrize('metric', distances.METRICS)
def test_cmc_and_map_in_one_pass_equal_brute_force_and_the_separate_calls(
    seed, exclude_self, metric, monkeypatch):
  rng = np.random.default_rng(seed)
  gallery = _tied_features(rng, 17)
  gallery_labels = rng.integers(0, 4, size=17)
  if exclude_self:
    query, query_labels = gallery, gallery_labels
  else:
    query, query_labels = _tied_features(rng, 11), rng.integers(0, 5, size=11)
  monkeypatch.setattr(distances, '_BLOCK_ELEMENTS', 3 * 17)  # 3 rows a block
  args = (query, query_labels, gallery, gallery_labels)
  # The brute force ranks the very distances the metrics saw.
  seen = np.full((query.shape[0], 17), np.nan)

  def keep(start, block):
    seen[start:start + block.shape[0]] = block

  cmc, average_precision = metrics.retrieval_cmc_and_map(
      *args, metric=metric, exclude_self=exclude_self, on_block=keep)
  expected = _brute_force(seen, query_labels, gallery_labels,
                          exclude_self=exclude_self)
  _check_against(expected, cmc, average_precision, 17 - int(exclude_self))
  alone = metrics.retrieval_cmc(*args, metric, exclude_self=exclude_self)
  np.testing.assert_array_equal(alone.cmc, cmc.cmc)
  assert alone.num_unmatchable == cmc.num_unmatchable
  np.testing.assert_array_equal(
      metrics.mean_average_precision(
          *args, metric, exclude_self=exclude_self).average_precisions,
      average_precision.average_precisions)


def test_one_pass_sees_every_distance_block_once_and_reports_progress(
    monkeypatch):
  rng = np.random.default_rng(7)
  query, gallery = rng.normal(size=(7, 3)), rng.normal(size=(5, 3))
  monkeypatch.setattr(distances, '_BLOCK_ELEMENTS', 10)  # 2 rows a block
  passes = []
  real = distances.iter_pairwise_distances

  def counted(*args, **kwargs):
    passes.append(1)
    return real(*args, **kwargs)

  monkeypatch.setattr(distances, 'iter_pairwise_distances', counted)
  seen, advanced = [], []

  class Counter:
    def advance(self, count):
      advanced.append(count)

  metrics.retrieval_cmc_and_map(
      query, np.arange(7) % 3, gallery, np.arange(5) % 3,
      on_block=lambda start, block: seen.append((start, block.shape)),
      progress=Counter())
  assert len(passes) == 1
  assert seen == [(0, (2, 5)), (2, (2, 5)), (4, (2, 5)), (6, (1, 5))]
  assert advanced == [2, 2, 2, 1]


def test_first_match_is_counted_with_ties_against_it():
  # Keys of one query over 5 gallery items; correct items are odd keys.
  # Distances 1, 2 (correct), 2 (wrong), 3 (correct), 0.5 (wrong): the first
  # correct (2) has the wrong 0.5, 1 and the equally far wrong 2 before it.
  dist = np.array([[1.0, 2.0, 2.0, 3.0, 0.5]])
  matches = np.array([[False, True, False, True, False]])
  keys = retrieval.ranking_keys(dist, matches)
  matchable, positions = retrieval._first_match_positions(keys)
  assert matchable.tolist() == [True] and positions.tolist() == [3]
  order = np.lexsort((matches, dist), axis=-1)
  np.testing.assert_array_equal(np.argsort(keys, axis=-1, kind='stable'),
                                order)


def test_sort_keys_order_zero_signed_zero_infinity_and_nan():
  dist = np.array([[np.nan, np.inf, 0.0, -0.0, 1e-300, 5.0]])
  matches = np.array([[False, False, True, False, False, False]])
  order = np.argsort(retrieval.ranking_keys(dist, matches), axis=-1,
                     kind='stable')
  # -0.0 equals 0.0 and is wrong, so it comes first; NaN sorts last.
  assert order.tolist() == [[3, 2, 4, 5, 1, 0]]


@pytest.mark.parametrize('seed', range(4))
@pytest.mark.parametrize('signed', [False, True])
def test_ranked_retrieval_with_priority_equals_brute_force(seed, signed,
                                                           monkeypatch):
  rng = np.random.default_rng(seed)
  # Few distinct distances and priorities: ties in one key, in both, in none.
  dist = rng.integers(0, 4, size=(9, 13)).astype(np.float64) - 2.0 * signed
  priority = rng.integers(0, 3, size=(9, 13)) / 2.0
  query_labels = rng.integers(0, 4, size=9)
  gallery_labels = rng.integers(0, 4, size=13)
  monkeypatch.setattr(distances, '_BLOCK_ELEMENTS', 4 * 13)  # 4 rows a block
  for weights in (None, priority):
    cmc, average_precision = metrics.ranked_retrieval(
        dist, query_labels, gallery_labels, priority=weights)
    _check_against(_brute_force(dist, query_labels, gallery_labels, weights),
                   cmc, average_precision, 13)
