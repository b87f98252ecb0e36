"""Each released-code behaviour (R1-R12) as wired into the pipeline: every test
fails when its quirk is switched off or implemented differently. The index
rules themselves are tested in tests/test_released.py."""

import jax
import numpy as np
import pytest

from sge_jax import config as config_lib
from sge_jax.config import EvalSettings, QuirkSettings, RNSettings
from sge_jax.data.dataset import SkeletonDataset, SkeletonSplit
from sge_jax.data.normalize import normalize
from sge_jax.encode import cages
from sge_jax.encode.encodings import (EncodingMetadata, SplitEncodings,
                                      combine_splits)
from sge_jax.evaluate import protocol_a, protocol_cme, recognition
from sge_jax.evaluate.released_rows import (ReleasedRows, released_test_set,
                                            released_train_set)
from sge_jax.models import GaitEncodingModel
from sge_jax.train import loop, pretext
from sge_jax.train.state import init_stacked_params
from tests.fixtures import released_reference
from tests.fixtures.pipeline import resolved_run

B = 128
# Persons below, at and above one extraction batch, and above two.
PER_PERSON = {3: 5, 7: 128, 9: 300}


def _labels(per_person=PER_PERSON):
  return np.concatenate([np.full(n, p) for p, n in per_person.items()])


def _encodings(labels, frames=2, dim=3):
  """CAGEs whose value says which sequence and frame they are: [N, f, D]."""
  n = labels.size
  return (np.arange(n)[:, None, None] * 100.0
          + np.arange(frames)[None, :, None]
          + np.zeros((1, 1, dim))).astype(np.float32)


# ----------------------------------------------------------------- R1, R3, R5


def test_r1_train_rows_pad_with_copies_of_the_first_sequence_and_truncate():
  labels = _labels()
  encodings = _encodings(labels)
  rows = ReleasedRows(extraction_batches=True)
  got, got_labels = released_train_set(encodings, labels, rows)
  assert got.shape[0] == 128 + 128 + 256
  np.testing.assert_array_equal(got[:5], encodings[:5])
  np.testing.assert_array_equal(got[5:128], np.repeat(encodings[:1], 123, 0))
  np.testing.assert_array_equal(got[128:256], encodings[5:133])
  np.testing.assert_array_equal(got[256:], encodings[133:133 + 256])
  np.testing.assert_array_equal(got_labels, np.repeat([3, 7, 9], [128, 128, 256]))
  same, same_labels = released_train_set(encodings, labels, ReleasedRows())
  assert same is encodings and same_labels is labels


def test_r1_test_rows_cut_the_copies_keep_the_truncation_and_r3_keeps_copies():
  labels = _labels()
  encodings = _encodings(labels)
  test, _ = released_test_set(encodings, labels,
                              ReleasedRows(extraction_batches=True))
  np.testing.assert_array_equal(test, encodings[:5 + 128 + 256])
  plus, _ = released_test_set(encodings, labels, ReleasedRows(
      extraction_batches=True, plus_test_copies=True))
  np.testing.assert_array_equal(
      plus, released_train_set(encodings, labels,
                               ReleasedRows(extraction_batches=True))[0])


def test_r3_applies_to_rev_rec_plus_only():
  run = resolved_run(config_lib.get_config('released'))
  assert ReleasedRows.from_settings(run, 'rev_rec_plus').plus_test_copies
  assert not ReleasedRows.from_settings(run, 'rev_rec').plus_test_copies


def test_r5_ap_scores_full_frame_batches_regrouped_in_stored_order():
  labels = _labels()
  encodings = _encodings(labels, frames=6)
  scored, scored_labels = released_test_set(
      encodings, labels, ReleasedRows(full_test_batches=True, manner='ap'))
  # 433 sequences x 6 = 2598 frames -> 20 batches = 2560 frames = 426 windows.
  assert scored.shape == (426, 6, 3)
  np.testing.assert_array_equal(scored, encodings[:426])
  np.testing.assert_array_equal(scored_labels, labels[:426])


def test_r5_ap_pads_a_short_test_set_with_frame_zero_windows():
  labels = np.array([4, 4, 5])
  encodings = _encodings(labels, frames=6)
  scored, scored_labels = released_test_set(
      encodings, labels, ReleasedRows(full_test_batches=True, manner='ap'))
  assert scored.shape[0] == 128 // 6
  np.testing.assert_array_equal(scored[:3], encodings)
  np.testing.assert_array_equal(scored[3:], np.broadcast_to(
      encodings[0, 0], (128 // 6 - 3, 6, 3)))
  assert (scored_labels[3:] == 4).all()


def test_r5_sc_scores_full_batches_of_a_seeded_permutation():
  labels = _labels()
  encodings = _encodings(labels)
  rows = ReleasedRows(full_test_batches=True, manner='sc', seed=3)
  scored, scored_labels = released_test_set(encodings, labels, rows)
  assert scored.shape[0] == 3 * B
  sequence = scored[:, 0, 0].astype(int) // 100
  assert np.unique(sequence).size == 3 * B            # no repeats
  assert not np.array_equal(sequence, np.arange(3 * B))  # permuted first
  np.testing.assert_array_equal(labels[sequence], scored_labels)
  again, _ = released_test_set(encodings, labels, rows)
  np.testing.assert_array_equal(again, scored)


def test_r5_draws_one_test_permutation_per_split():
  # IAS has two test splits of equal size (A and B): the released code draws
  # test_permutation and test_2_permutation separately, so they differ.
  labels = _labels()
  encodings = _encodings(labels)
  rows = ReleasedRows(full_test_batches=True, manner='sc', seed=3)
  split_a, _ = released_test_set(encodings, labels, rows, 'A')
  split_b, _ = released_test_set(encodings, labels, rows, 'B')
  assert not np.array_equal(split_a, split_b)
  again, _ = released_test_set(encodings, labels, rows, 'B')
  np.testing.assert_array_equal(again, split_b)


@pytest.mark.parametrize('manner', ['ap', 'sc'])
@pytest.mark.slow
def test_released_counts_in_results_match_the_closed_forms(manner):
  """Counts computed here from the ids alone (T(n), S(n), full batches), not by
  sge_jax.released, equal what protocol A reports in released mode."""
  frames = 2
  labels = _labels()
  encodings = _encodings(labels, frames=frames, dim=4)
  rng = np.random.default_rng(0)
  encodings = encodings / 1e4 + rng.normal(size=encodings.shape).astype(np.float32)

  def split(enc, lab):
    return SplitEncodings(enc, lab, np.zeros((lab.size, frames, 1, 3), np.float32),
                          np.full(lab.size, -1))

  encoding_set = combine_splits(
      [('train', split(encodings, labels)), ('test', split(encodings, labels))],
      EncodingMetadata('X', frames, 'LA', 'rev_rec', 4, 0, 'h', ('rev_rec/x',)))
  config = config_lib.resolve_config(config_lib.get_config('released'))
  config.rn.manner = manner
  config.rn.epochs = 1
  config.rn.hidden = 4
  outcome = protocol_a.protocol_a(
      encoding_set, RNSettings.from_config(config),
      EvalSettings(baselines=False),
      ReleasedRows.from_settings(resolved_run(config), 'rev_rec'))

  def trained(n):
    return B if 0 < n < B else B * (n // B)

  def tested(n):
    return n if n < B else B * (n // B)

  expected_train = {str(p): trained(n) for p, n in PER_PERSON.items()}
  assert outcome.rn['train_sequences_per_person'] == expected_train
  if manner == 'ap':
    assert outcome.rn['train_frames_per_person'] == {
        p: frames * n for p, n in expected_train.items()}
  rows = sum(tested(n) for n in PER_PERSON.values()) * (
      frames if manner == 'ap' else 1)
  scored_rows = B * (rows // B)
  expected_scored = scored_rows // frames if manner == 'ap' else scored_rows
  assert outcome.entries['A/test']['num_scored_sequences'] == expected_scored
  assert outcome.entries['A/test']['num_sequences'] == labels.size


# ----------------------------------------------------------------- R4, R6


def test_r4_fixed_shuffle_reuses_the_first_epochs_order():
  key = jax.random.key(0)
  fixed = [np.asarray(recognition.epoch_order(key, e, 50, True))
           for e in (0, 1, 7)]
  fresh = [np.asarray(recognition.epoch_order(key, e, 50, False))
           for e in (0, 1, 7)]
  np.testing.assert_array_equal(fixed[0], fresh[0])
  assert all(np.array_equal(fixed[0], order) for order in fixed)
  assert not np.array_equal(fresh[0], fresh[1])


def test_r4_setting_follows_the_quirk():
  config = config_lib.get_config()
  config.quirks.fixed_rn_shuffle = True
  assert RNSettings.from_config(config_lib.resolve_config(config)).fixed_shuffle
  assert not RNSettings.from_config(
      config_lib.resolve_config(config_lib.get_config())).fixed_shuffle


def _separable(rng, per_person=20, dim=6):
  labels = np.repeat([0, 1, 2], per_person)
  centres = 10 * np.eye(3, dim)
  encodings = centres[labels][:, None, :] + 0.01 * rng.normal(
      size=(labels.size, 2, dim))
  return encodings.astype(np.float32), labels


def test_r6_ge_keeps_the_last_tied_best_test_epoch_gt_the_first():
  rng = np.random.default_rng(0)
  train, train_labels = _separable(rng)
  test, test_labels = _separable(rng)
  results = {}
  for ties in ('first', 'last'):
    settings = RNSettings(selection='paper', epochs=12, batch_size=20,
                          learning_rate=0.05, hidden=8, test_ties=ties,
                          epochs_per_call=12)
    results[ties] = recognition.train_and_score(
        train, train_labels, {'test': (test, test_labels)}, settings)
  accuracy = results['last'].history.test_accuracy['test']
  best = accuracy.max()
  tied = np.flatnonzero(accuracy == best) + 1
  assert tied.size >= 2                      # the fixture must tie
  assert results['first'].selected_epochs['test'] == tied[0]
  assert results['last'].selected_epochs['test'] == tied[-1]
  # The in-training tracker agrees with the reference rule (0-based there).
  assert results['last'].selected_epochs['test'] == (
      released_reference.select_epoch(accuracy, '>=') + 1)
  assert results['first'].selected_epochs['test'] == (
      released_reference.select_epoch(accuracy, '>') + 1)


def test_r6_picks_the_paper_rule_with_last_ties_except_on_ias():
  config = config_lib.resolve_config(config_lib.get_config('released'))
  settings = RNSettings.from_config(config)
  assert (settings.selection, settings.test_ties) == ('paper', 'last')
  config.data.name = 'IAS'
  assert RNSettings.from_config(config).test_ties == 'first'
  clean = RNSettings.from_config(config_lib.resolve_config(config_lib.get_config()))
  assert (clean.selection, clean.test_ties) == ('val', 'first')
  # The data scored decides, not the config's name (encodings of another set).
  assert RNSettings.from_config(config, 'KGBD').test_ties == 'last'
  config.data.name = 'KGBD'
  assert RNSettings.from_config(config, 'IAS').test_ties == 'first'


def test_r5_warns_when_most_scored_rows_are_copies_of_the_first():
  # 2 people x 3 sequences x 2 frames = 12 test frames in one RN batch of
  # 128: 116 of the 128 rows scored are copies of frame 0.
  labels = np.repeat([0, 1], 3)
  encodings = np.random.default_rng(0).normal(size=(6, 2, 4)).astype(
      np.float32)

  def split(enc, lab):
    return SplitEncodings(enc, lab, np.zeros((lab.size, 2, 1, 3), np.float32),
                          np.full(lab.size, -1))

  encoding_set = combine_splits(
      [('train', split(encodings, labels)), ('test', split(encodings, labels))],
      EncodingMetadata('X', 2, 'LA', 'rev_rec', 4, 0, 'h', ('rev_rec/x',)))
  settings = RNSettings(selection='fixed', epochs=1, hidden=4)
  outcome = protocol_a.protocol_a(encoding_set, settings,
                                 EvalSettings(baselines=False),
                                 ReleasedRows(full_test_batches=True))
  assert any('116 of the 128 scored rows (91%) are copies of its first row'
             in warning for warning in outcome.warnings)
  quiet = protocol_a.protocol_a(encoding_set, settings,
                               EvalSettings(baselines=False), ReleasedRows())
  assert not any('R5' in warning for warning in quiet.warnings)


# ----------------------------------------------------------------- R2, R9, R10


def test_r2_plus_blocks_are_rev_rec_cages_in_the_released_wiring():
  model = GaitEncodingModel(hidden=4, num_joints=3)
  params = init_stacked_params(model, jax.random.key(0), 9, 5, 3)
  sequences = np.random.default_rng(0).normal(size=(7, 5, 3, 3)).astype(np.float32)
  rev_rec = cages.compute_cages(
      jax.tree.map(lambda p: p[:3], params), model, pretext.stacked_pretext_data(
          sequences, (pretext.PretextTask('rev_rec', 'LA'),), 0, 'train'))
  rev_rec = rev_rec.reshape(7, 5, 3, 4)                  # [N, f, axis, k]
  test = cages.released_plus_cages(params, model, sequences, False, 0, 'test')
  train = cages.released_plus_cages(params, model, sequences, True, 0, 'train')
  for axis in range(3):
    for block in range(3):
      columns = slice(4 * (3 * axis + block), 4 * (3 * axis + block + 1))
      np.testing.assert_allclose(test[:, :, columns], rev_rec[:, :, axis],
                                 rtol=1e-6, atol=1e-7)
      if block < 2:
        np.testing.assert_allclose(train[:, :, columns], rev_rec[:, :, axis],
                                   rtol=1e-6, atol=1e-7)
      else:  # block 2 of the training split: frame-permuted inputs
        assert not np.allclose(train[:, :, columns], rev_rec[:, :, axis])
  assert cages.released_plus_names()[:3] == (
      'rev_rec/x (block 0)', 'rev_rec/x (block 1)', 'rev_rec/x (block 2)')


def test_r9_la_mask_is_anti_diagonal_for_every_task_when_on():
  quirks = QuirkSettings(reversed_la_mask=True)
  for name in ('prediction', 'sorting'):
    on = pretext.stacked_locality_masks(
        pretext.per_model_tasks(pretext.pretext_tasks(name, 'LA', quirks)), 6)[0]
    off = pretext.stacked_locality_masks(
        pretext.per_model_tasks(pretext.pretext_tasks(name, 'LA')), 6)[0]
    assert np.all(np.diag(np.fliplr(on[0])) == 1)
    assert np.all(np.diag(off[0]) == 1)


def test_r10_sorting_permutations_differ_per_axis_and_are_redrawn_to_encode():
  sequences = np.random.default_rng(0).normal(size=(4, 6, 2, 3)).astype(np.float32)
  task = pretext.pretext_tasks('sorting', 'BA',
                               QuirkSettings(redrawn_sorting=True))[0]
  inputs, targets = pretext.task_inputs_and_targets(sequences, task, 0, 'train')
  np.testing.assert_array_equal(targets, sequences)
  orders = [np.argmax(np.all(inputs[:, :, None, :, axis]
                             == sequences[:, None, :, :, axis], axis=-1), axis=-1)
            for axis in range(3)]
  assert not (np.array_equal(orders[0], orders[1])
              and np.array_equal(orders[1], orders[2]))
  clean = pretext.task_inputs_and_targets(
      sequences, pretext.pretext_tasks('sorting', 'BA')[0], 0, 'train')[0]
  assert not np.array_equal(clean, inputs)


def test_r10_encoding_uses_another_permutation_stream(monkeypatch):
  streams = []
  original = pretext.stacked_pretext_data

  def spy(sequences, tasks, seed, stream):
    streams.append(stream)
    return original(sequences, tasks, seed, stream)

  monkeypatch.setattr(pretext, 'stacked_pretext_data', spy)
  model = GaitEncodingModel(hidden=4, num_joints=2)
  params = init_stacked_params(model, jax.random.key(0), 3, 6, 2)
  dataset = SkeletonDataset('X', 6, {'train': SkeletonSplit(
      np.zeros((2, 6, 2, 3), np.float32), np.array([1, 2]))})
  for redrawn, stream in ((False, 'train'), (True, 'train/encode')):
    config = config_lib.get_config()
    config.model.pretext = 'sorting'
    config.quirks.redrawn_sorting = redrawn
    cages.encode_dataset(resolved_run(config), dataset, params, model)
    assert streams[-1] == stream


# ----------------------------------------------------------------- R7, R8


def _biwi_config(on):
  config = config_lib.get_config()
  config.quirks.biwi_two_thirds = on
  return resolved_run(config)


@pytest.mark.parametrize('name, n, kept', [('BIWI', 10, 6), ('BIWI', 9, 6),
                                           ('KGBD', 10, 10)])
def test_r7_biwi_encoders_train_on_floor_two_thirds(name, n, kept):
  sequences = np.arange(n, dtype=np.float32)[:, None, None, None] * np.ones(
      (n, 2, 1, 3), np.float32)
  dataset = SkeletonDataset(name, 2, {'train': SkeletonSplit(
      sequences, np.arange(n))})
  split = loop.encoder_training_sequences(_biwi_config(True), dataset, 'train')
  np.testing.assert_array_equal(split.labels, np.arange(kept))
  off = loop.encoder_training_sequences(_biwi_config(False), dataset, 'train')
  assert off.num_sequences == n


def test_r8_root_joint_normalisation_subtracts_joint_zero_per_frame():
  sequences = np.random.default_rng(0).normal(size=(3, 4, 5, 3)).astype(np.float32)
  dataset = SkeletonDataset('CASIA_B', 4, {'train': SkeletonSplit(
      sequences, np.arange(3))})
  rooted = normalize(dataset, 'root_joint').splits['train'].sequences
  np.testing.assert_array_equal(rooted[:, :, 0], 0)
  np.testing.assert_allclose(rooted[:, :, 3] - rooted[:, :, 1],
                             sequences[:, :, 3] - sequences[:, :, 1], atol=1e-6)
  np.testing.assert_allclose(rooted[:, :, 2],
                             sequences[:, :, 2] - sequences[:, :, 0], atol=1e-6)


# ----------------------------------------------------------------- R11, R12


def _cme_split(encodings, labels):
  encodings = np.asarray(encodings, np.float32)[:, None, :]
  return SplitEncodings(encodings, np.asarray(labels),
                        np.zeros((len(labels), 1, 1, 3), np.float32),
                        np.full(len(labels), -1))


def test_r11_same_condition_takes_the_second_nearest_of_the_padded_gallery():
  # Person 1 has 2 sequences, person 2 one; both < 128, so the gallery also
  # holds 126 copies of 0.0 and 127 of 5.2. Same condition: gallery = probe.
  split = _cme_split([[0.0], [5.0], [5.2]], [1, 1, 2])
  # Probes 0.0 and 5.2 take a copy of themselves (right); 5.0 skips itself and
  # takes 5.2 (wrong): 2/3. Without the copies, or skipping only the probe
  # itself, it is 1/3 (0.0 -> 5.0 right, 5.0 -> 5.2 and 5.2 -> 5.0 wrong).
  assert protocol_cme.released_cme_rank1(split, split, True, 'concat') == (
      pytest.approx(2 / 3))
  # Cross-condition: the nearest, itself: all right.
  assert protocol_cme.released_cme_rank1(split, split, False, 'concat') == 1.0


def test_r12_different_person_sets_are_refused_with_the_fix():
  from sge_jax.errors import DataError
  from sge_jax.released import require_equal_person_sets
  require_equal_person_sets({'train': np.array([1, 2]), 'test': np.array([2, 1])})
  with pytest.raises(DataError, match='only in test: \\[3\\].*equal_id_counts'):
    require_equal_person_sets({'train': np.array([1, 2]),
                               'test': np.array([1, 3])})
