"""Walk grouping and aggregation on hand-made scores (sge_jax.evaluate.walks)."""

import numpy as np
import pytest

from sge_jax.errors import DataError
from sge_jax.evaluate import metrics
from sge_jax.evaluate import walks


def test_group_windows_keeps_first_appearance_order_and_counts():
  recordings = np.array([7, 7, 3, 3, 3, 9])
  labels = np.array([1, 1, 0, 0, 0, 1])
  grouped = walks.group_windows(recordings, labels)
  np.testing.assert_array_equal(grouped.recordings, [7, 3, 9])
  np.testing.assert_array_equal(grouped.window_walk, [0, 0, 1, 1, 1, 2])
  np.testing.assert_array_equal(grouped.labels, [1, 0, 1])
  np.testing.assert_array_equal(grouped.num_windows, [2, 3, 1])
  assert walks.windows_per_walk(grouped) == {'min': 1, 'median': 2.0, 'max': 3}


def test_group_windows_groups_interleaved_windows_of_one_recording():
  grouped = walks.group_windows(np.array([5, 6, 5]), np.array([0, 1, 0]))
  np.testing.assert_array_equal(grouped.window_walk, [0, 1, 0])
  np.testing.assert_array_equal(grouped.num_windows, [2, 1])


def test_a_recording_with_two_people_is_refused():
  with pytest.raises(DataError, match=r'here: recording 4 holds windows of '
                     r'people \[0, 2\]'):
    walks.group_windows(np.array([4, 5, 4]), np.array([0, 2, 2]), 'here')


def test_mean_aggregation_is_the_mean_of_window_scores():
  scores = np.array([[3.0, 0.0], [0.0, 1.0], [0.0, 1.0], [5.0, 2.0]])
  grouped = walks.group_windows(np.array([0, 0, 0, 1]), np.array([0, 0, 0, 1]))
  np.testing.assert_allclose(
      walks.aggregate_scores(scores, grouped, 'mean'),
      [[1.0, 2.0 / 3.0], [5.0, 2.0]])


def test_mean_and_vote_disagree_when_one_window_is_confident():
  # Two windows prefer class 1 a little, one window prefers class 0 a lot.
  scores = np.array([[10.0, 0.0], [0.0, 0.5], [0.0, 0.5]])
  grouped = walks.group_windows(np.zeros(3, int), np.zeros(3, int))
  mean = walks.aggregate_scores(scores, grouped, 'mean')
  vote = walks.aggregate_scores(scores, grouped, 'vote')
  assert np.argmax(mean[0]) == 0          # mean: the confident window wins
  assert np.argmax(vote[0]) == 1          # vote: two windows against one
  columns = np.array([0])
  assert metrics.rank_k(mean, columns, 1) == 1.0
  assert metrics.rank_k(vote, columns, 1) == 0.0


def test_equal_votes_are_broken_by_the_mean_score():
  # One vote each for classes 0 and 2; class 2's mean score is higher.
  scores = np.array([[2.0, 0.0, 1.9], [0.0, 0.0, 3.0]])
  grouped = walks.group_windows(np.zeros(2, int), np.zeros(2, int))
  vote = walks.vote_scores(scores, grouped)
  np.testing.assert_array_equal(np.floor(vote[0]), [1, 0, 1])
  assert np.argmax(vote[0]) == 2
  assert metrics.rank_k(vote, np.array([2]), 1) == 1.0
  assert metrics.rank_k(vote, np.array([0]), 1) == 0.0
  assert metrics.rank_k(vote, np.array([0]), 2) == 1.0


def test_a_tie_in_votes_and_mean_counts_against_the_true_class():
  # Symmetric windows: equal votes and equal mean scores for classes 0 and 1.
  scores = np.array([[1.0, 0.0], [0.0, 1.0]])
  grouped = walks.group_windows(np.zeros(2, int), np.zeros(2, int))
  vote = walks.vote_scores(scores, grouped)
  assert vote[0, 0] == vote[0, 1]
  assert metrics.rank_k(vote, np.array([0]), 1) == 0.0
  assert metrics.rank_k(vote, np.array([1]), 1) == 0.0


def test_tie_break_fraction_is_inside_the_unit_interval_and_monotone():
  mean = np.array([[-1e6, 0.0, 1e6, 1e6], [4.0, 4.0, 4.0, 4.0]])
  fraction = walks.tie_break_fraction(mean)
  assert np.all((fraction > 0) & (fraction < 1))
  assert fraction[0, 0] < fraction[0, 1] < fraction[0, 2] == fraction[0, 3]
  assert np.all(fraction[1] == fraction[1, 0])


def test_vote_counts_count_each_window_once():
  grouped = walks.group_windows(np.array([0, 0, 0, 1, 1]),
                                np.array([0, 0, 0, 1, 1]))
  choices = np.eye(3)[[2, 2, 0, 1, 1]]
  counts = walks.vote_counts(choices, grouped)
  np.testing.assert_array_equal(counts, [[1, 0, 2], [0, 2, 0]])


def test_a_window_tied_at_the_top_splits_its_vote():
  np.testing.assert_allclose(
      walks.top_choices(np.array([[2.0, 2.0, 1.0], [0.0, 3.0, 0.0]])),
      [[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]])


def test_constant_scores_give_no_credit_under_any_aggregation():
  # As at window level (ties against the true class): Rank-1 = 0.
  scores = np.zeros((6, 4))
  grouped = walks.group_windows(np.repeat([0, 1], 3), np.repeat([0, 1], 3))
  for aggregation in ('mean', 'vote'):
    walk_scores = walks.aggregate_scores(scores, grouped, aggregation)
    assert metrics.rank_k(walk_scores, np.array([0, 1]), 1) == 0.0


def test_ranked_retrieval_with_vote_priority_ranks_people_first():
  # Gallery: persons 0, 0, 1. The walk's mean feature is nearest to person 1,
  # but its windows voted twice for person 0.
  distances = np.array([[2.0, 3.0, 1.0]])
  gallery_labels = np.array([0, 0, 1])
  plain, plain_ap = metrics.ranked_retrieval(distances, np.array([0]),
                                             gallery_labels)
  voted, voted_ap = metrics.ranked_retrieval(
      distances, np.array([0]), gallery_labels,
      priority=np.array([[2, 2, 0]]))
  np.testing.assert_allclose(plain.cmc, [0, 1, 1])
  np.testing.assert_allclose(voted.cmc, [1, 1, 1])
  assert plain_ap.value == pytest.approx((1 / 2 + 2 / 3) / 2)
  assert voted_ap.value == pytest.approx(1.0)


def test_ranked_retrieval_matches_feature_retrieval():
  rng = np.random.default_rng(0)
  query, gallery = rng.normal(size=(7, 3)), rng.normal(size=(11, 3))
  query_labels, gallery_labels = rng.integers(0, 3, 7), rng.integers(0, 4, 11)
  cmc, average_precision = metrics.ranked_retrieval(
      metrics.pairwise_distances(query, gallery), query_labels, gallery_labels)
  np.testing.assert_array_equal(
      cmc.cmc, metrics.retrieval_cmc(query, query_labels, gallery,
                                     gallery_labels).cmc)
  assert average_precision.value == metrics.mean_average_precision(
      query, query_labels, gallery, gallery_labels).value


def test_ranked_retrieval_ties_go_against_the_correct_match():
  cmc, _ = metrics.ranked_retrieval(np.array([[1.0, 1.0]]), np.array([0]),
                                    np.array([0, 1]),
                                    priority=np.array([[1, 1]]))
  np.testing.assert_allclose(cmc.cmc, [0, 1])
