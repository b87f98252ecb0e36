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
  mean = walks.aggregate_scores(scores, grouped, 'mean')
  np.testing.assert_allclose(mean.scores, [[1.0, 2.0 / 3.0], [5.0, 2.0]])
  assert mean.tie_break is None


def _rank1(walk_scores, columns):
  return metrics.rank_k(walk_scores.scores, np.asarray(columns), 1,
                        walk_scores.tie_break)


def test_mean_and_vote_disagree_when_one_window_is_confident():
  # Two windows prefer class 1 a little, one window prefers class 0 a lot.
  scores = np.array([[10.0, 0.0], [0.0, 0.5], [0.0, 0.5]])
  grouped = walks.group_windows(np.zeros(3, int), np.zeros(3, int))
  mean = walks.aggregate_scores(scores, grouped, 'mean')
  vote = walks.aggregate_scores(scores, grouped, 'vote')
  np.testing.assert_allclose(vote.scores, [[1 / 3, 2 / 3]])
  assert _rank1(mean, [0]) == 1.0         # mean: the confident window wins
  assert _rank1(vote, [0]) == 0.0         # vote: two windows against one
  assert _rank1(vote, [1]) == 1.0


def test_votes_rank_before_the_mean_score_even_when_a_vote_is_split():
  # Window 1 votes for class 0; window 2 is tied between classes 1 and 2, so
  # the votes are [1, .5, .5]. Class 1 has by far the highest mean score
  # (7.45 against 0), which must not lift it over class 0's larger vote.
  scores = np.array([[10.0, 9.9, 0.0], [-10.0, 5.0, 5.0]])
  grouped = walks.group_windows(np.zeros(2, int), np.zeros(2, int))
  vote = walks.aggregate_scores(scores, grouped, 'vote')
  np.testing.assert_allclose(vote.scores, [[0.5, 0.25, 0.25]])
  np.testing.assert_array_equal(
      metrics.true_class_ranks(vote.scores, np.array([0]), vote.tie_break), [1])
  np.testing.assert_array_equal(
      metrics.true_class_ranks(vote.scores, np.array([1]), vote.tie_break), [2])
  # Equal votes for classes 1 and 2: the mean score (7.45 > 2.5) decides.
  np.testing.assert_array_equal(
      metrics.true_class_ranks(vote.scores, np.array([2]), vote.tie_break), [3])


def test_vote_scores_are_shares_of_the_walk_so_walk_length_does_not_weigh():
  # A 2-window walk voting 2/2 for its class (0) and a 10-window walk voting
  # 6/10 for its class (1) and 4/10 for class 0. As raw counts the wrong
  # cell (4) outscores a right one (2); as shares every right cell (1.0, 0.6)
  # is above every wrong one (0.4, 0.0), so the pooled nAUC is 1.
  scores = np.zeros((12, 2))
  scores[[0, 1], 0] = 1.0
  scores[2:8, 1] = 1.0
  scores[8:12, 0] = 1.0
  recordings = np.array([0, 0] + [1] * 10)
  labels = np.array([0, 0] + [1] * 10)
  grouped = walks.group_windows(recordings, labels)
  vote = walks.aggregate_scores(scores, grouped, 'vote')
  np.testing.assert_allclose(vote.scores, [[1.0, 0.0], [0.4, 0.6]])
  assert metrics.nauc(vote.scores, np.array([0, 1])) == 1.0


def test_equal_votes_are_broken_by_the_mean_score():
  # One vote each for classes 0 and 2; class 2's mean score is higher.
  scores = np.array([[2.0, 0.0, 1.9], [0.0, 0.0, 3.0]])
  grouped = walks.group_windows(np.zeros(2, int), np.zeros(2, int))
  vote = walks.aggregate_scores(scores, grouped, 'vote')
  np.testing.assert_allclose(vote.scores, [[0.5, 0.0, 0.5]])
  assert _rank1(vote, [2]) == 1.0
  assert _rank1(vote, [0]) == 0.0
  assert metrics.rank_k(vote.scores, np.array([0]), 2, vote.tie_break) == 1.0


def test_equal_votes_reached_in_different_orders_compare_equal():
  # Ten windows tied among classes 0-9 give each ten votes of 0.1 (summed in
  # floating point: 0.9999999999999999); one window votes for class 10 (1.0)
  # and scores class 0 second. Equal votes, so the mean score puts class 0
  # first.
  scores = np.zeros((11, 11))
  scores[:10, :10] = 1.0
  scores[10, 10], scores[10, 0] = 2.0, 1.5
  grouped = walks.group_windows(np.zeros(11, int), np.zeros(11, int))
  vote = walks.aggregate_scores(scores, grouped, 'vote')
  assert vote.scores[0, 0] == vote.scores[0, 10]
  assert _rank1(vote, [0]) == 1.0


def test_a_tie_in_votes_and_mean_counts_against_the_true_class():
  # Symmetric windows: equal votes and equal mean scores for classes 0 and 1.
  scores = np.array([[1.0, 0.0], [0.0, 1.0]])
  grouped = walks.group_windows(np.zeros(2, int), np.zeros(2, int))
  vote = walks.aggregate_scores(scores, grouped, 'vote')
  assert vote.scores[0, 0] == vote.scores[0, 1]
  assert _rank1(vote, [0]) == 0.0
  assert _rank1(vote, [1]) == 0.0


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
    assert _rank1(walk_scores, [0, 1]) == 0.0


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
