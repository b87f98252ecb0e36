"""Pretext targets and the stacking order of the models."""

import numpy as np
import pytest

from sge_jax.train import pretext


def _sequences(n=5, f=4, j=3):
  return np.arange(n * f * j * 3, dtype=np.float32).reshape(n, f, j, 3)


def test_rev_rec_targets_are_reversed_inputs():
  seqs = _sequences()
  inputs, targets = pretext.task_inputs_and_targets(
      seqs, pretext.PretextTask('rev_rec', 'LA'), 0, 'train')
  np.testing.assert_array_equal(inputs, seqs)
  np.testing.assert_array_equal(targets, seqs[:, ::-1])


def test_prediction_targets_the_next_stored_sequence():
  seqs = _sequences()
  _, targets = pretext.task_inputs_and_targets(
      seqs, pretext.PretextTask('prediction', 'BA'), 0, 'train')
  np.testing.assert_array_equal(targets[:-1], seqs[1:])
  np.testing.assert_array_equal(targets[-1], seqs[-1])


def test_sorting_permutes_frames_per_sequence_with_a_seed():
  seqs = _sequences(n=50, f=6)
  task = pretext.PretextTask('sorting', 'BA')
  inputs, targets = pretext.task_inputs_and_targets(seqs, task, 3, 'train')
  np.testing.assert_array_equal(targets, seqs)
  perms = pretext.sorting_permutations(50, 6, 3, 'train')
  for n in range(50):
    np.testing.assert_array_equal(inputs[n], seqs[n][perms[n]])
    assert sorted(perms[n]) == list(range(6))
  assert len({tuple(p) for p in perms}) > 30            # fresh per sequence
  again, _ = pretext.task_inputs_and_targets(seqs, task, 3, 'train')
  np.testing.assert_array_equal(inputs, again)          # seeded
  other_split, _ = pretext.task_inputs_and_targets(seqs, task, 3, 'test')
  assert not np.array_equal(inputs, other_split)


def test_rev_rec_plus_stacks_nine_models_task_major():
  tasks = pretext.pretext_tasks('rev_rec_plus', 'LA')
  assert [(t.name, t.attention) for t in tasks] == [
      ('rev_rec', 'LA'), ('prediction', 'BA'), ('sorting', 'BA')]
  assert pretext.model_names(tasks)[:4] == ['rev_rec/x', 'rev_rec/y', 'rev_rec/z',
                                            'prediction/x']
  seqs = _sequences()
  data = pretext.stacked_pretext_data(seqs, tasks, 0, 'train')
  assert data['inputs'].shape == (9, 5, 4, 3)
  np.testing.assert_array_equal(data['inputs'][1], seqs[..., 1])        # rev_rec/y
  np.testing.assert_array_equal(data['targets'][2], seqs[:, ::-1, :, 2])
  np.testing.assert_array_equal(data['targets'][3][:-1], seqs[1:, ..., 0])
  masks, weights = pretext.stacked_locality_masks(
      pretext.per_model_tasks(tasks), 4)
  assert masks.shape == (9, 4, 4)
  np.testing.assert_array_equal(weights, [1, 1, 1, 0, 0, 0, 0, 0, 0])
  assert masks[0][0, 3] == 1.0 and masks[3][0, 0] == 1.0


def test_unknown_settings_are_rejected():
  with pytest.raises(ValueError, match='pretext'):
    pretext.pretext_tasks('reverse', 'LA')
  with pytest.raises(ValueError, match='attention'):
    pretext.pretext_tasks('rev_rec', 'LOCAL')
