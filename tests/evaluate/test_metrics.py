"""Tests of sge_jax.evaluate.metrics: hand-computed cases and scikit-learn cross-checks."""

import numpy as np
import pytest
from sklearn import metrics as skm

from sge_jax.evaluate import distances, metrics

# A 3x3 score matrix used by several hand-computed tests.
#   row 0: true 0, scores (0.9, 0.05, 0.05) -> true class ranked 1
#   row 1: true 1, scores (0.6, 0.3, 0.1)   -> ranked 2 (behind 0.6)
#   row 2: true 2, scores (0.5, 0.3, 0.2)   -> ranked 3
HAND_SCORES = np.array([[0.9, 0.05, 0.05],
                        [0.6, 0.3, 0.1],
                        [0.5, 0.3, 0.2]])
HAND_LABELS = np.array([0, 1, 2])


def _sklearn_nauc(scores, labels):
  onehot = np.eye(scores.shape[1])[labels]
  fpr, tpr, _ = skm.roc_curve(onehot.ravel(), scores.ravel())
  return skm.auc(fpr, tpr)


class TestRanks:

  def test_hand_rank_k_and_cmc(self):
    # Ranks are (1, 2, 3): rank-1 = 1/3, rank-2 = 2/3, rank-3 = 1.
    assert metrics.rank_k(HAND_SCORES, HAND_LABELS, 1) == pytest.approx(1 / 3)
    assert metrics.rank_k(HAND_SCORES, HAND_LABELS, 2) == pytest.approx(2 / 3)
    assert metrics.rank_k(HAND_SCORES, HAND_LABELS, 3) == 1.0
    np.testing.assert_allclose(metrics.cmc(HAND_SCORES, HAND_LABELS),
                               [1 / 3, 2 / 3, 1.0])

  def test_ties_count_against_the_true_class(self):
    # Row 0: true 0 tied with class 1 at the top -> rank 2.
    # Row 1: true 2, class 0 tied with it, class 1 above -> rank 3.
    scores = np.array([[0.5, 0.5, 0.0],
                       [0.2, 0.7, 0.2]])
    labels = np.array([0, 2])
    np.testing.assert_array_equal(metrics.true_class_ranks(scores, labels), [2, 3])
    np.testing.assert_allclose(metrics.cmc(scores, labels), [0.0, 0.5, 1.0])

  def test_constant_scores_get_no_rank1_credit(self):
    scores = np.zeros((4, 5))
    labels = np.array([0, 1, 2, 3])
    assert metrics.rank_k(scores, labels, 1) == 0.0
    assert metrics.rank_k(scores, labels, 5) == 1.0

  def test_rank1_equals_argmax_accuracy_without_ties(self):
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(50, 7))
    labels = rng.integers(0, 7, size=50)
    accuracy = np.mean(np.argmax(scores, axis=1) == labels)
    assert metrics.rank_k(scores, labels, 1) == pytest.approx(accuracy)

  def test_cmc_is_the_rank_k_curve(self):
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 4, size=(30, 6)).astype(float)  # many ties
    labels = rng.integers(0, 6, size=30)
    expected = [metrics.rank_k(scores, labels, k) for k in range(1, 7)]
    np.testing.assert_allclose(metrics.cmc(scores, labels), expected)

  @pytest.mark.parametrize('k', [0, 4])
  def test_rank_k_rejects_k_out_of_range(self, k):
    with pytest.raises(ValueError, match='k must be'):
      metrics.rank_k(HAND_SCORES, HAND_LABELS, k)

  def test_rejects_labels_that_are_not_columns(self):
    with pytest.raises(ValueError, match='class indices'):
      metrics.rank_k(HAND_SCORES, np.array([0, 1, 3]), 1)

  def test_rejects_non_finite_scores(self):
    scores = HAND_SCORES.copy()
    scores[1, 1] = np.nan
    with pytest.raises(ValueError, match='NaN'):
      metrics.cmc(scores, HAND_LABELS)


class TestNauc:

  def test_hand_computed(self):
    # The 9 cells sorted by score, P = true-class cell, n = other:
    #   0.9 P | 0.6 n | 0.5 n | 0.3 {P, n} tied | 0.2 P | 0.1 n | 0.05 {n, n}
    # 3 positives, 6 negatives. ROC points (fp/6, tp/3) at each threshold:
    #   (0,0) (0,1/3) (1/6,1/3) (2/6,1/3) (3/6,2/3) (3/6,1) (4/6,1) (1,1)
    # Area: height 1/3 from fp 0 to 2/6: 1/9; 2/6->3/6, trapezoid 1/3->2/3:
    # 1/12; then height 1 from 3/6 to 1: 1/2. Total 4/36+3/36+18/36 = 25/36.
    # (The drop of collinear points leaves the area unchanged.)
    assert metrics.nauc(HAND_SCORES, HAND_LABELS) == pytest.approx(25 / 36)
    fpr, tpr = metrics.micro_roc(HAND_SCORES, HAND_LABELS)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)

  def test_perfect_chance_and_worst(self):
    labels = np.array([0, 1, 2])
    assert metrics.nauc(np.eye(3), labels) == 1.0
    assert metrics.nauc(np.ones((3, 3)), labels) == 0.5
    assert metrics.nauc(1.0 - np.eye(3), labels) == 0.0

  @pytest.mark.parametrize('seed', range(25))
  def test_matches_sklearn_continuous_scores(self, seed):
    rng = np.random.default_rng(seed)
    num_rows, num_classes = rng.integers(2, 40), rng.integers(2, 12)
    labels = rng.integers(0, num_classes, size=num_rows)
    scores = rng.normal(size=(num_rows, num_classes))
    scores[np.arange(num_rows), labels] += rng.uniform(0, 2)
    assert metrics.nauc(scores, labels) == pytest.approx(
        _sklearn_nauc(scores, labels), abs=1e-12)

  @pytest.mark.parametrize('seed', range(25))
  def test_matches_sklearn_with_ties(self, seed):
    rng = np.random.default_rng(100 + seed)
    num_rows, num_classes = rng.integers(2, 40), rng.integers(2, 12)
    labels = rng.integers(0, num_classes, size=num_rows)
    # Few distinct values -> many tied thresholds, across and within rows.
    scores = rng.integers(0, rng.integers(2, 6), size=(num_rows, num_classes))
    scores = scores.astype(np.float32) / 3
    assert metrics.nauc(scores, labels) == pytest.approx(
        _sklearn_nauc(scores, labels), abs=1e-12)

  @pytest.mark.parametrize('seed', range(5))
  def test_micro_roc_points_match_sklearn(self, seed):
    rng = np.random.default_rng(200 + seed)
    labels = rng.integers(0, 5, size=30)
    scores = np.round(rng.normal(size=(30, 5)), 1)
    fpr, tpr = metrics.micro_roc(scores, labels)
    sk_fpr, sk_tpr, _ = skm.roc_curve(np.eye(5)[labels].ravel(), scores.ravel())
    np.testing.assert_allclose(fpr, sk_fpr, atol=1e-15)
    np.testing.assert_allclose(tpr, sk_tpr, atol=1e-15)

  def test_needs_two_classes(self):
    with pytest.raises(ValueError, match='C >= 2'):
      metrics.nauc(np.ones((3, 1)), np.zeros(3, dtype=int))


class TestConfusionMatrix:

  def test_hand_computed(self):
    pred = np.array([0, 0, 1, 2, 2, 2])
    labels = np.array([0, 1, 1, 2, 2, 0])
    # rows = true: class 0 -> predicted 0 once, 2 once; class 1 -> 0 once,
    # 1 once; class 2 -> 2 twice.
    np.testing.assert_array_equal(
        metrics.confusion_matrix(pred, labels, 3),
        [[1, 0, 1],
         [1, 1, 0],
         [0, 0, 2]])

  @pytest.mark.parametrize('seed', range(5))
  def test_matches_sklearn(self, seed):
    rng = np.random.default_rng(seed)
    pred = rng.integers(0, 6, size=80)
    labels = rng.integers(0, 6, size=80)
    np.testing.assert_array_equal(
        metrics.confusion_matrix(pred, labels, 6),
        skm.confusion_matrix(labels, pred, labels=np.arange(6)))

  def test_rejects_out_of_range(self):
    with pytest.raises(ValueError, match='pred'):
      metrics.confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)


class TestTopPredictions:

  def test_ties_at_the_top_count_against_the_true_class(self):
    scores = np.array([[0.9, 0.1, 0.0],    # true 0, clear top: 0
                       [0.5, 0.5, 0.0],    # true 1, tied with 0: 0
                       [0.2, 0.7, 0.7],    # true 1, tied with 2: 2
                       [0.3, 0.3, 0.3],    # true 2, all tied: 0
                       [0.1, 0.6, 0.3]])   # true 2, wrong top: 1
    labels = np.array([0, 1, 1, 2, 2])
    predicted = metrics.top_predictions(scores, labels)
    np.testing.assert_array_equal(predicted, [0, 0, 2, 0, 1])

  @pytest.mark.parametrize('seed', range(3))
  def test_confusion_trace_is_rank1(self, seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 3, size=(40, 5)).astype(float)   # many ties
    labels = rng.integers(0, 5, size=40)
    matrix = metrics.confusion_matrix(
        metrics.top_predictions(scores, labels), labels, 5)
    assert matrix.sum() == 40
    assert np.trace(matrix) == round(40 * metrics.rank_k(scores, labels, 1))


class TestClassIndices:

  def test_maps_person_ids_to_columns(self):
    classes = np.array([40, 7, 12])
    np.testing.assert_array_equal(
        metrics.class_indices(np.array([12, 40, 7, 12]), classes), [2, 0, 1, 2])

  def test_rejects_unknown_label(self):
    with pytest.raises(ValueError, match=r'\[99\]'):
      metrics.class_indices(np.array([7, 99]), np.array([40, 7, 12]))


class TestPairwiseDistances:

  def test_hand_computed_euclidean_and_cosine(self):
    query = np.array([[0.0, 0.0], [3.0, 4.0]])
    gallery = np.array([[3.0, 0.0], [0.0, 4.0], [3.0, 4.0]])
    np.testing.assert_allclose(
        metrics.pairwise_distances(query, gallery),
        [[3.0, 4.0, 5.0],
         [4.0, 3.0, 0.0]], atol=1e-12)
    # Cosine: the zero vector has similarity 0 -> distance 1; (3,4) vs (3,0):
    # 1 - 9/15 = 0.4; vs (0,4): 1 - 16/20 = 0.2; vs itself: 0.
    np.testing.assert_allclose(
        metrics.pairwise_distances(query, gallery, metric='cosine'),
        [[1.0, 1.0, 1.0],
         [0.4, 0.2, 0.0]], atol=1e-12)

  def test_matches_direct_difference_far_from_origin(self):
    # A large common offset would ruin |q|^2 + |g|^2 - 2qg without centring.
    rng = np.random.default_rng(0)
    query = 1e4 + rng.normal(size=(20, 8))
    gallery = 1e4 + rng.normal(size=(30, 8))
    direct = np.linalg.norm(query[:, None] - gallery[None], axis=-1)
    np.testing.assert_allclose(metrics.pairwise_distances(query, gallery),
                               direct, rtol=1e-9)

  def test_self_distance_not_nan(self):
    x = np.random.default_rng(1).normal(size=(10, 5)).astype(np.float32)
    distances = metrics.pairwise_distances(x, x)
    assert np.all(np.isfinite(distances))
    np.testing.assert_allclose(np.diag(distances), 0.0, atol=1e-6)

  @pytest.mark.parametrize('metric', metrics.METRICS)
  def test_blocked_equals_unblocked(self, metric, monkeypatch):
    rng = np.random.default_rng(2)
    query, gallery = rng.normal(size=(23, 4)), rng.normal(size=(7, 4))
    whole = metrics.pairwise_distances(query, gallery, metric)
    monkeypatch.setattr(distances, '_BLOCK_ELEMENTS', 10)  # 1 row per block
    # BLAS may round a 1-row product differently in the last bit.
    np.testing.assert_allclose(
        metrics.pairwise_distances(query, gallery, metric), whole,
        rtol=1e-13, atol=1e-15)

  def test_rejects_unknown_metric(self):
    with pytest.raises(ValueError, match='metric'):
      metrics.pairwise_distances(np.ones((2, 2)), np.ones((2, 2)), 'manhattan')


# A 1-D retrieval case. Gallery positions and labels:
#   index:  0    1    2    3    4
#   x:      0.0  1.0  2.0  3.0  10.0
#   label:  A=1  B=2  A=1  B=2  C=3
GALLERY_X = np.array([[0.0], [1.0], [2.0], [3.0], [10.0]])
GALLERY_LABELS = np.array([1, 2, 1, 2, 3])


class TestRetrieval:

  def test_hand_computed_cmc_and_map(self):
    # Query q0 at x=0.9, label A: order by distance 1 (B), 0 (A), 2 (A), 3, 4
    #   -> first correct at rank 2; AP = (1/2 + 2/3) / 2 = 7/12.
    # Query q1 at x=2.9, label B: order 3 (B), 2 (A), 1 (B), 0, 4
    #   -> rank 1; AP = (1/1 + 2/3) / 2 = 5/6.
    # Query q2 at x=5, label D (absent from the gallery): unmatchable.
    query = np.array([[0.9], [2.9], [5.0]])
    query_labels = np.array([1, 2, 4])
    result = metrics.retrieval_cmc(query, query_labels, GALLERY_X, GALLERY_LABELS)
    assert result.num_queries == 3 and result.num_unmatchable == 1
    # Unmatchable q2 is a miss in the denominator: (1/3, 2/3, 2/3, 2/3, 2/3).
    np.testing.assert_allclose(result.cmc, [1 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3])

    mean_ap = metrics.mean_average_precision(
        query, query_labels, GALLERY_X, GALLERY_LABELS)
    np.testing.assert_allclose(mean_ap.average_precisions[:2], [7 / 12, 5 / 6])
    assert np.isnan(mean_ap.average_precisions[2])
    assert mean_ap.num_unmatchable == 1
    assert mean_ap.value == pytest.approx((7 / 12 + 5 / 6) / 2)

  def test_exclude_self(self):
    # Gallery against itself. Without exclusion every query finds itself at
    # distance 0 (rank-1 = 1). Excluding self, per query (index: nearest other):
    #   0 (A): 1 B at 1, then 2 A at 2          -> rank 2
    #   1 (B): 0 A and 2 A at 1 (tied), 3 B at 2 -> rank 3
    #   2 (A): 1 B and 3 B at 1, 0 A at 2        -> rank 3
    #   3 (B): 2 A at 1, 1 B at 2                -> rank 2
    #   4 (C): the only C -> unmatchable
    # CMC over 5 queries (4 candidates each): (0, 2/5, 4/5, 4/5).
    plain = metrics.retrieval_cmc(GALLERY_X, GALLERY_LABELS,
                                  GALLERY_X, GALLERY_LABELS)
    assert plain.cmc[0] == 1.0 and plain.num_unmatchable == 0
    result = metrics.retrieval_cmc(GALLERY_X, GALLERY_LABELS, GALLERY_X,
                                   GALLERY_LABELS, exclude_self=True)
    assert result.num_unmatchable == 1
    np.testing.assert_allclose(result.cmc, [0.0, 0.4, 0.8, 0.8])

    # APs with one relevant item each: 1/2, 1/3, 1/3, 1/2.
    mean_ap = metrics.mean_average_precision(
        GALLERY_X, GALLERY_LABELS, GALLERY_X, GALLERY_LABELS, exclude_self=True)
    np.testing.assert_allclose(mean_ap.average_precisions[:4],
                               [1 / 2, 1 / 3, 1 / 3, 1 / 2])
    assert mean_ap.value == pytest.approx(5 / 12)

    predicted = metrics.nearest_neighbour_predict(
        GALLERY_X, GALLERY_X, GALLERY_LABELS, exclude_self=True)
    # Query 1's nearest others 0 and 2 are tied: the lower index, 0, wins.
    np.testing.assert_array_equal(predicted, [2, 1, 2, 1, 2])

  def test_exclude_self_keeps_duplicates_at_other_indices(self):
    features = np.array([[0.0], [0.0], [5.0]])
    labels = np.array([7, 7, 8])
    result = metrics.retrieval_cmc(features, labels, features, labels,
                                   exclude_self=True)
    # Queries 0 and 1 match each other at distance 0; query 2 is unmatchable.
    np.testing.assert_allclose(result.cmc, [2 / 3, 2 / 3])

  def test_exclude_self_requires_the_same_samples(self):
    with pytest.raises(ValueError, match='same samples'):
      metrics.retrieval_cmc(GALLERY_X + 1, GALLERY_LABELS, GALLERY_X,
                            GALLERY_LABELS, exclude_self=True)
    with pytest.raises(ValueError, match='same samples'):
      metrics.nearest_neighbour_predict(GALLERY_X[:3], GALLERY_X, GALLERY_LABELS,
                                        exclude_self=True)

  def test_distance_ties_count_against_the_match(self):
    # Query at x = 1, label 5; gallery x = 0 (label 5, index 0) and x = 2
    # (label 6) are both at distance 1 exactly. The correct one comes first in
    # index order, but the tie is broken against it: rank 2, AP = 1/2.
    gallery = np.array([[0.0], [2.0]])
    gallery_labels = np.array([5, 6])
    query, query_labels = np.array([[1.0]]), np.array([5])
    result = metrics.retrieval_cmc(query, query_labels, gallery, gallery_labels)
    np.testing.assert_allclose(result.cmc, [0.0, 1.0])
    mean_ap = metrics.mean_average_precision(query, query_labels, gallery,
                                             gallery_labels)
    assert mean_ap.value == pytest.approx(0.5)

  def test_max_rank_bounds(self):
    with pytest.raises(ValueError, match='max_rank'):
      metrics.retrieval_cmc(GALLERY_X, GALLERY_LABELS, GALLERY_X, GALLERY_LABELS,
                            max_rank=5, exclude_self=True)

  @pytest.mark.parametrize('exclude_self', [False, True])
  def test_blocked_equals_unblocked(self, exclude_self, monkeypatch):
    rng = np.random.default_rng(3)
    features = rng.normal(size=(40, 3))
    labels = rng.integers(0, 6, size=40)
    args = (features, labels, features, labels)
    cmc = metrics.retrieval_cmc(*args, exclude_self=exclude_self).cmc
    mean_ap = metrics.mean_average_precision(*args, exclude_self=exclude_self)
    predicted = metrics.nearest_neighbour_predict(
        features, features, labels, exclude_self=exclude_self)
    monkeypatch.setattr(distances, '_BLOCK_ELEMENTS', 100)  # 2 rows per block
    np.testing.assert_array_equal(
        metrics.retrieval_cmc(*args, exclude_self=exclude_self).cmc, cmc)
    np.testing.assert_array_equal(
        metrics.mean_average_precision(
            *args, exclude_self=exclude_self).average_precisions,
        mean_ap.average_precisions)
    np.testing.assert_array_equal(
        metrics.nearest_neighbour_predict(features, features, labels,
                                          exclude_self=exclude_self), predicted)

  @pytest.mark.parametrize('seed', range(5))
  def test_ap_matches_sklearn_average_precision(self, seed):
    # Without distance ties, re-ID AP is sklearn's AP of the relevance vector
    # scored by negative distance.
    rng = np.random.default_rng(seed)
    query, gallery = rng.normal(size=(6, 4)), rng.normal(size=(25, 4))
    query_labels = rng.integers(0, 3, size=6)
    gallery_labels = rng.integers(0, 3, size=25)
    result = metrics.mean_average_precision(query, query_labels, gallery,
                                            gallery_labels)
    distances = metrics.pairwise_distances(query, gallery)
    for i in range(6):
      relevant = gallery_labels == query_labels[i]
      if relevant.any():
        assert result.average_precisions[i] == pytest.approx(
            skm.average_precision_score(relevant, -distances[i]))

  def test_nearest_neighbour_rank1_agrees_with_retrieval_cmc(self):
    rng = np.random.default_rng(4)
    query, gallery = rng.normal(size=(30, 5)), rng.normal(size=(50, 5))
    query_labels = rng.integers(0, 8, size=30)
    gallery_labels = rng.integers(0, 8, size=50)
    for metric in metrics.METRICS:
      predicted = metrics.nearest_neighbour_predict(query, gallery,
                                                    gallery_labels, metric)
      cmc = metrics.retrieval_cmc(query, query_labels, gallery, gallery_labels,
                                  metric).cmc
      assert np.mean(predicted == query_labels) == pytest.approx(cmc[0])


def test_a_tie_break_orders_equal_scores_only_and_its_ties_count_against():
  # Row 0: class 1 outscores the true class 0 whatever the tie-break; classes
  # 0 and 2 share a score, and the tie-break puts 0 first. Row 1: the true
  # class 2 ties class 0 in both keys, which counts against it.
  scores = np.array([[1.0, 2.0, 1.0], [3.0, 0.0, 3.0]])
  tie_break = np.array([[5.0, -9.0, 4.0], [1.0, 7.0, 1.0]])
  labels = np.array([0, 2])
  np.testing.assert_array_equal(
      metrics.true_class_ranks(scores, labels, tie_break), [2, 2])
  np.testing.assert_array_equal(metrics.true_class_ranks(scores, labels),
                                [3, 2])
  np.testing.assert_allclose(metrics.cmc(scores, labels, tie_break),
                             [0.0, 1.0, 1.0])
  assert metrics.rank_k(scores, labels, 1, tie_break) == 0.0
  with pytest.raises(ValueError, match='tie_break must be'):
    metrics.true_class_ranks(scores, labels, tie_break[:, :2])
