"""Tests of sge_jax.released: the index bookkeeping of the authors' released code.

Expected values are built independently of the module (hand-made fixtures,
explicit loops, the closed forms of docs/released_procedure.md), so a wrong
implementation fails.
"""

import math

import numpy as np
import pytest

from sge_jax import released
from tests.fixtures import released_reference

B = 128


def _interleaved_labels(counts: dict[int, int], seed: int = 0) -> np.ndarray:
  """Labels with ``counts[p]`` sequences of person p, stored in a shuffled order."""
  labels = np.concatenate([np.full(n, p) for p, n in counts.items()])
  return np.random.default_rng(seed).permutation(labels)


# Persons below, at and above B, keys deliberately not in sorted order.
COUNTS = {7: 5, 2: 300, 11: 128}
LABELS = _interleaved_labels(COUNTS)


def _rows(person: int) -> np.ndarray:
  return np.flatnonzero(LABELS == person)


# ---------------------------------------------------------------- R1 / R3


def test_extraction_order_matches_hand_built_order():
  indices, is_padding = released.released_extraction_order(LABELS)
  # Sorted keys: 2 (300 -> first 256 in stored order), 7 (5 + 123 copies), 11 (128).
  expected = np.concatenate([
      _rows(2)[:256],
      _rows(7), np.full(123, _rows(7)[0]),
      _rows(11)])
  expected_padding = np.zeros(expected.shape[0], dtype=bool)
  expected_padding[256 + 5:256 + 128] = True
  np.testing.assert_array_equal(indices, expected)
  np.testing.assert_array_equal(is_padding, expected_padding)
  assert indices.shape == (512,)


def test_padding_copies_are_the_persons_first_sequence():
  indices, is_padding = released.released_extraction_order(LABELS)
  copies = indices[is_padding]
  assert copies.shape == (B - 5,)
  assert np.all(copies == _rows(7)[0])
  assert np.all(LABELS[copies] == 7)
  # No person other than the small one gets copies; every block is a multiple of B.
  for person in COUNTS:
    assert np.sum(LABELS[indices] == person) % B == 0


def test_truncation_keeps_first_floor_n_over_b_times_b_in_stored_order():
  indices, _ = released.released_extraction_order(LABELS)
  kept = indices[LABELS[indices] == 2]
  np.testing.assert_array_equal(kept, _rows(2)[:256])
  dropped = np.setdiff1d(_rows(2), indices)
  np.testing.assert_array_equal(dropped, _rows(2)[256:])
  assert dropped.shape == (44,)


def test_persons_iterated_by_sorted_key_not_first_appearance():
  labels = np.array([10, 9, 10, 9])
  indices, _ = released.released_extraction_order(labels, batch_size=2)
  np.testing.assert_array_equal(indices, [1, 3, 0, 2])


def test_ids_dict_list_order_is_respected():
  ids = {1: [5, 3, 4], 0: []}
  indices, is_padding = released.released_extraction_order_from_ids(ids, batch_size=4)
  np.testing.assert_array_equal(indices, [5, 3, 4, 5])
  np.testing.assert_array_equal(is_padding, [False, False, False, True])


def test_test_order_cuts_copies_but_keeps_truncation():
  test = released.released_test_order(LABELS)
  expected = np.concatenate([_rows(2)[:256], _rows(7), _rows(11)])
  np.testing.assert_array_equal(test, expected)


def test_rev_rec_plus_test_order_keeps_copies():
  indices, is_padding = released.rev_rec_plus_test_order(LABELS)
  assert indices.shape == (512,)
  assert is_padding.sum() == 123
  assert not np.array_equal(indices, released.released_test_order(LABELS))


def test_frame_rows_are_sequence_major():
  sequence, frame = released_reference.frame_rows(np.array([4, 9]), 3)
  np.testing.assert_array_equal(sequence, [4, 4, 4, 9, 9, 9])
  np.testing.assert_array_equal(frame, [0, 1, 2, 0, 1, 2])


# ------------------------------------------------------------- counts

# n -> (RN training sequences, test sequences), by hand from the code.
HAND_COUNTS = {0: (0, 0), 1: (128, 1), 5: (128, 5), 127: (128, 127), 128: (128, 128),
               129: (128, 128), 255: (128, 128), 256: (256, 256), 300: (256, 256)}


@pytest.mark.parametrize('n', sorted(HAND_COUNTS))
def test_per_person_counts_match_hand_table_and_bookkeeping(n):
  train, test = HAND_COUNTS[n]
  assert released_reference.train_sequences_per_person(n) == train
  assert released_reference.test_sequences_per_person(n) == test
  assert released_reference.test_sequences_per_person(n, keep_padding=True) == train
  labels = np.zeros(n, dtype=int)
  assert released.released_extraction_order(labels)[0].shape == (train,)
  assert released.released_test_order(labels).shape == (test,)


@pytest.mark.parametrize('manner,frames', [('sc', 6), ('ap', 6), ('ap', 10)])
def test_split_counts_match_bookkeeping(manner, frames):
  per_person = list(COUNTS.values()) + [0, 1, 127, 129, 255]
  labels = _interleaved_labels(
      {p: n for p, n in enumerate(per_person) if n}, seed=3)
  indices, is_padding = released.released_extraction_order(labels)
  r = frames if manner == 'ap' else 1
  train = released_reference.train_counts(per_person, manner, frames)
  assert train.sequences == indices.shape[0]
  assert train.padding == is_padding.sum()
  assert train.dropped == len(labels) - np.unique(indices).shape[0]
  assert train.rows == indices.shape[0] * r
  assert train.rows_used == B * ((indices.shape[0] * r) // B)

  test_rows = released.released_test_order(labels)
  test = released_reference.test_counts(per_person, manner, frames)
  assert test.sequences == test_rows.shape[0]
  assert test.padding == 0
  assert test.rows == test_rows.shape[0] * r
  assert test.scored_rows == released.scored_test_rows(test.rows).shape[0]
  if manner == 'sc':
    scored = released.sc_scored_sequences(np.arange(test.sequences))
    assert test.scored_sequences == scored.shape[0]
  else:
    windows, _ = released.ap_scored_windows(labels[test_rows], frames)
    assert test.scored_sequences == windows.shape[0]

  plus = released_reference.test_counts(per_person, manner, frames, keep_padding=True)
  assert plus.sequences == train.sequences and plus.padding == train.padding


def test_cve_rn_batch_of_1280():
  counts = released_reference.test_counts([300] * 10, 'sc', 20, rn_batch_size=1280)
  assert counts.sequences == 2560
  assert counts.scored_rows == 2560
  counts = released_reference.test_counts([300] * 9, 'sc', 20, rn_batch_size=1280)
  assert counts.scored_rows == 1280  # 2304 sequences, one full batch of 1280


# ---------------------------------------------------------------- R4


def test_rn_epoch_batches_are_full_batches_of_the_one_permutation():
  perm = np.random.default_rng(1).permutation(300)
  batches = released_reference.rn_epoch_batches(perm)
  assert batches.shape == (2, B)
  np.testing.assert_array_equal(batches.ravel(), perm[:256])
  np.testing.assert_array_equal(released_reference.unseen_training_rows(perm), perm[256:])
  assert released_reference.rn_epoch_batches(np.arange(100)).shape == (0, B)


# ---------------------------------------------------------------- R5


def test_scored_test_rows_only_full_batches():
  np.testing.assert_array_equal(released.scored_test_rows(300), np.arange(256))
  np.testing.assert_array_equal(released.scored_test_rows(128), np.arange(128))
  np.testing.assert_array_equal(released.scored_test_rows(255), np.arange(128))
  small = released.scored_test_rows(50)
  assert small.shape == (128,)
  np.testing.assert_array_equal(small[:50], np.arange(50))
  assert np.all(small[50:] == 0)
  with pytest.raises(ValueError):
    released.scored_test_rows(0)
  assert released_reference.scored_row_count(0) == 0


def test_sc_scores_the_first_full_batches_of_the_permuted_rows():
  perm = np.random.default_rng(2).permutation(300)
  np.testing.assert_array_equal(released.sc_scored_sequences(perm), perm[:256])
  perm = np.array([3, 0, 2, 1])
  scored = released.sc_scored_sequences(perm)
  assert scored.shape == (128,)
  np.testing.assert_array_equal(scored[:4], perm)
  assert np.all(scored[4:] == 3)  # copies of the first PERMUTED row


def test_ap_windows_are_stored_sequences_and_trailing_partial_dropped():
  labels = np.repeat(np.arange(10), 10)  # 100 sequences, 10 per person
  windows, window_labels = released.ap_scored_windows(labels, 6)
  # 600 frames -> 512 scored -> 85 whole windows (510 frames), 2 frames dropped.
  assert windows.shape == (85, 6)
  np.testing.assert_array_equal(windows, np.arange(510).reshape(85, 6))
  np.testing.assert_array_equal(window_labels, labels[:85])
  assert released_reference.scored_sequence_count(100, 'ap', 6) == 85


def test_ap_padding_windows_count_as_extra_sequences_of_row_zero():
  labels = np.array([4, 5, 5])  # 18 frames < 128
  windows, window_labels = released.ap_scored_windows(labels, 6)
  assert windows.shape == (128 // 6, 6)  # 21 windows
  np.testing.assert_array_equal(windows[:3], np.arange(18).reshape(3, 6))
  assert np.all(windows[3:] == 0)
  np.testing.assert_array_equal(window_labels, [4, 5, 5] + [4] * 18)
  assert released_reference.scored_sequence_count(3, 'ap', 6) == 21
  assert released_reference.scored_sequence_count(3, 'sc', 6) == 128


# ---------------------------------------------------------------- R6


def test_select_epoch_ge_keeps_last_tied_maximum_gt_keeps_first():
  accuracies = [0.5, 0.8, 0.7, 0.8, 0.6]
  assert released_reference.select_epoch(accuracies, '>=') == 3
  assert released_reference.select_epoch(accuracies, '>') == 1
  increasing = [0.1, 0.2, 0.3]
  assert released_reference.select_epoch(increasing, '>=') == released_reference.select_epoch(increasing, '>') == 2


def test_select_epoch_starts_from_zero_best():
  assert released_reference.select_epoch([0.0, 0.0], '>=') == 1
  assert released_reference.select_epoch([0.0, 0.0], '>') is None
  with pytest.raises(ValueError):
    released_reference.select_epoch([0.5], '==')


def test_select_epoch_ias_sc_either_split_non_strict():
  a = [0.5, 0.4, 0.5, 0.3]
  b = [0.2, 0.6, 0.1, 0.1]
  # epoch 0 (both >= 0), 1 (B improves), 2 (A ties its best), 3 (neither).
  assert released_reference.select_epoch_ias_sc(a, b) == 2


# ---------------------------------------------------------------- R7


@pytest.mark.parametrize('n', range(0, 14))
def test_biwi_encoder_rows_are_floor_two_thirds(n):
  rows = released.biwi_encoder_rows(n)
  assert rows.shape == (2 * n // 3,)
  assert rows.shape == (n - math.ceil(n / 3),)
  np.testing.assert_array_equal(rows, np.arange(2 * n // 3))
  # The authors' literal expression on a Python list gives the same.
  x = list(range(n))
  assert x[:-len(x) // 3] == rows.tolist()


def test_biwi_slice_precedence_edge_cases():
  # -n//3 == (-n)//3 == -ceil(n/3), not -(n//3).
  x = list(range(10))
  assert len(x[:-len(x) // 3]) == 6
  assert len(x[:-(len(x) // 3)]) == 7
  assert released.biwi_encoder_rows(10).shape == (6,)
  # len // 3 == 0: the other precedence would keep nothing at all.
  for n, kept in ((1, 0), (2, 1)):
    x = list(range(n))
    assert x[:-(len(x) // 3)] == []
    assert released.biwi_encoder_rows(n).shape == (kept,)
  assert released.biwi_encoder_rows(0).shape == (0,)


# ---------------------------------------------------------------- R8


def test_normalize_to_root_joint_matches_per_axis_tile_form():
  seqs = np.random.default_rng(4).normal(size=(4, 6, 14, 3)).astype(np.float32)
  out = released.normalize_to_root_joint(seqs)
  assert out.shape == seqs.shape and out.dtype == seqs.dtype
  assert np.all(out[:, :, 0, :] == 0)
  for axis in range(3):
    x = seqs[..., axis]  # [N, f, J], the authors' per-axis array
    ref = x - np.tile(np.expand_dims(x[:, :, 0], axis=-1), [1, 1, x.shape[-1]])
    np.testing.assert_allclose(out[..., axis], ref, rtol=0, atol=0)
  np.testing.assert_allclose(out[:, :, 5] - out[:, :, 3], seqs[:, :, 5] - seqs[:, :, 3],
                             atol=1e-6)


# ---------------------------------------------------------------- R9-R12


def test_la_mask_matches_loop_of_authors_algorithm():
  f = 6
  ref = np.ones((f, f))
  for index in range(f):
    pt = f - 1 - index
    for i in range(1, f + 1):
      if pt + i <= f - 1:
        ref[index][pt + i] = np.exp(-(i ** 2) / (2 * (f / 2) ** 2))
      if pt - i >= 0:
        ref[index][pt - i] = np.exp(-(i ** 2) / (2 * (f / 2) ** 2))
    ref[index][pt] = 1
  np.testing.assert_allclose(released_reference.la_objective_mask(f), ref, rtol=1e-12)
  assert np.all(np.diag(np.fliplr(released_reference.la_objective_mask(f))) == 1)
  assert np.all(np.diag(released_reference.la_objective_mask(f, reverse=False)) == 1)


def test_permute_frames_per_axis():
  seqs = np.arange(2 * 5 * 3 * 3, dtype=np.float64).reshape(2, 5, 3, 3)
  permuted, perm = released.permute_frames_per_axis(seqs, np.random.default_rng(0))
  assert perm.shape == (3, 2, 5)
  for axis in range(3):
    for i in range(2):
      assert sorted(perm[axis, i].tolist()) == list(range(5))
      np.testing.assert_array_equal(permuted[i, :, :, axis], seqs[i, perm[axis, i], :, axis])


def test_cme_same_condition_takes_second_nearest():
  gallery = np.array([[0., 0.], [5., 5.], [1., 1.], [9., 0.], [1., 1.]])
  probes = np.array([[1., 1.], [4.9, 5.]])
  # Probe 0 is in the gallery twice (a copy): second nearest is its copy.
  np.testing.assert_array_equal(released_reference.cme_match(gallery, probes, True), [4, 2])
  np.testing.assert_array_equal(released_reference.cme_match(gallery, probes, False), [2, 1])


def test_rn_label_columns():
  train_cols, test_cols, classes = released_reference.rn_label_columns(
      [3, 1, 2], [1, 2, 3], [1, 3, 2], [3, 3, 1])
  np.testing.assert_array_equal(train_cols, [0, 2, 1])
  np.testing.assert_array_equal(test_cols, [2, 2, 0])
  assert classes == 3
  # Equal counts, different ids: matched by rank, not by id.
  train_cols, test_cols, _ = released_reference.rn_label_columns([1, 2], [5, 9], [2], [9])
  assert train_cols[0] == test_cols[0] == 1
  with pytest.raises(ValueError):
    released_reference.rn_label_columns([1, 2, 3], [1, 2], [1], [1])


def test_ap_window_with_mixed_labels_is_not_counted():
  # Frame rows not aligned to sequences (cannot happen with whole sequences).
  frame_labels = np.array([0] * 4 + [1] * 200)
  windows, labels = released.ap_scored_windows_from_frame_labels(frame_labels, 6)
  # 204 rows -> 128 scored -> 21 windows; window 0 = rows 0..5 mixes 0 and 1.
  assert windows.shape == (20, 6)
  np.testing.assert_array_equal(windows[0], np.arange(6, 12))
  assert np.all(labels == 1)
