"""Protocol A (the CAGEs paper): recognition-network classification
(docs/method.md §7).

A recognition network (``sge_jax.evaluate.recognition``) is trained on the
CAGEs of the ``train`` split and classifies every other split (``test``; BIWI
``Walking``/``Still``; IAS ``A``/``B``; ``gallery``/``probe``), each reported
separately: Rank-1/5/10, CMC (k = 1..C), nAUC, the confusion matrix. The
classes are the training people; a test sequence whose person is not among
them cannot be classified and is excluded, with a count and the person ids in
the entry. One RN run serves all splits (the training does not depend on
them); the ``paper`` rule picks its epoch per split, as separate runs of the
authors' code would. The RN is re-scored from a saved ``rn.npz`` when that can
serve this evaluation (``saved_rn``), else trained (and then saved by the
stage).

Baselines (``config.eval.baselines``): every ``baselines.BASELINES`` feature on
the raw input sequences scores the test sequences by k-NN over the train split
(``run_baseline``, columns = the RN's classes); one that cannot run on the
data (no bones or joint names) is reported as skipped with the reason.

Walk level (``config.eval.level`` 'walk' or 'both', docs/method.md §7.1): the
window scores of each test split are handed to the walk-level evaluator
(``walk_evaluator.ClassifiedWindows`` in ``Outcome.window_results``). The window
entries are computed the same way whether or not walks are scored.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from sge_jax.config import EvalSettings, RNSettings
from sge_jax.encode.encodings import EncodingSet, SplitEncodings
from sge_jax.evaluate import baselines as baselines_lib
from sge_jax.evaluate import (metrics, recognition, rn_inputs, saved_rn,
                              walk_evaluator)
from sge_jax.evaluate.evaluator import EvaluationInputs, Evaluator, Outcome
from sge_jax.evaluate.protocol_common import require_classes
from sge_jax.evaluate.released_rows import (ReleasedRows, r1_test_rows,
                                            r5_padding, r5_scored_rows,
                                            released_train_set)
from sge_jax.evaluate.result_cache import ResultCache
from sge_jax.evaluate.rn_result import RNResult
from sge_jax.evaluate.scoring import (CAGES, TRAIN_SPLIT, classification_metrics,
                                      confusion_record, keep_known_people,
                                      split_label)
from sge_jax.progress import Progress


def protocol_a(encoding_set: EncodingSet, rn_settings: RNSettings,
               settings: EvalSettings,
               rows: ReleasedRows = ReleasedRows(),
               saved: Optional[saved_rn.SavedRN] = None,
               cache: Optional[ResultCache] = None) -> Outcome:
  """RN classification of every non-train split (module docstring).

  ``rows`` (the released R1/R3/R5 row rules) picks the RN's training rows and
  the test sequences it scores; by default every sequence, once. The RN is
  re-scored from ``saved`` when that can serve ``rn_settings`` and ``rows`` on
  these encodings (``saved_rn``), else trained; ``trained_rn`` of the outcome
  is set when it was trained (to be saved). The baselines' results are read
  from ``cache`` where an earlier evaluation stored them (``result_cache``).
  """
  cache = cache or ResultCache(None)
  outcome = Outcome()
  dataset = encoding_set.metadata.dataset
  if TRAIN_SPLIT not in encoding_set.split_names:
    outcome.note('Protocol A skipped: the encodings have no train split to '
                 'train the recognition network on.', warn=True)
    return outcome
  train = encoding_set.select(TRAIN_SPLIT)
  require_classes(train.labels, 'the train split (the classes of protocol A)',
                  dataset)
  classes = np.unique(train.labels)
  test_names = [s for s in encoding_set.split_names if s != TRAIN_SPLIT]
  if not test_names:
    outcome.note('Protocol A skipped: no test split.', warn=True)
    return outcome

  test_sets, kept = {}, {}
  for name in test_names:
    split = encoding_set.select(name)
    keep, unknown = keep_known_people(split.labels, classes)
    kept[name] = (split, keep, unknown)
    if unknown:
      outcome.note((
          f'Protocol A, {split_label(dataset, name)}: '
          f'{int(np.count_nonzero(~keep))} of {keep.size} test sequences '
          f'excluded: people {unknown} are not among the {classes.size} '
          'training people, so the RN has no class for them.'), warn=True)
    if keep.any():
      r1_rows = r1_test_rows(split.encodings[keep], split.labels[keep], rows)
      padding = r5_padding(r1_rows[1].size, split.encodings.shape[1], rows)
      if padding:
        unit = 'frames' if rows.manner == 'ap' else 'sequences'
        outcome.note((
            f'Protocol A, {split_label(dataset, name)}: R5 full_test_batches '
            f'scores one RN batch of {rows.batch_size} rows, but the split has '
            f'only {rows.batch_size - padding} test {unit}: {padding} of the '
            f'{rows.batch_size} scored rows ({padding / rows.batch_size:.0%}) '
            'are copies of its first row, and its numbers weigh that row '
            'accordingly (config.rn.batch_size).'), warn=True)
      test_sets[name] = r5_scored_rows(*r1_rows, rows, name)
  if not test_sets:
    outcome.note('Protocol A skipped: no test sequence belongs to a '
                 'training person.', warn=True)
    return outcome

  rn_train = released_train_set(train.encodings, train.labels, rows)
  digest = outcome.rn_digest = saved_rn.encodings_digest(encoding_set, rows)
  why_not = damaged = None
  if saved is not None:
    damaged = saved.unusable
    why_not = damaged or saved.mismatch(rn_settings, saved_rn.expected_fingerprint(
        rn_settings, digest, rn_train[1]))
    if why_not is None:
      input_dim = rn_inputs.rn_samples(train.encodings[:1],
                                         rn_settings.manner).shape[-1]
      why_not = damaged = saved_rn.fit_problem(saved, input_dim, classes,
                                               list(test_sets))
  if saved is not None and why_not is None:
    result = saved_rn.rescore(saved, test_sets, rn_settings)
    source = f're-scored from the saved RN {saved.path}'
  else:
    if damaged:
      outcome.note(f'The RN is trained again: the saved RN {saved.path} is '
                   f'unusable ({damaged}).', warn=True)
    elif saved is not None:
      outcome.note(f'The RN is trained again: the saved RN {saved.path} '
                   f'cannot serve this evaluation ({why_not}).')
    result = recognition.train_and_score(*rn_train, test_sets, rn_settings)
    outcome.trained_rn = result
    source = 'trained in this evaluation'
  val_fraction = rn_settings.val_fraction if result.num_val_sequences else None
  outcome.rn = _rn_summary(result, rn_settings, train, val_fraction)
  outcome.rn['source'] = source
  for name in test_names:
    split, keep, unknown = kept[name]
    key = f'A/{name}'
    entry = {
        'protocol': 'A', 'probe': name, 'gallery': TRAIN_SPLIT,
        'label': split_label(dataset, name),
        'num_sequences': int(np.count_nonzero(keep)),
        'num_excluded': int(np.count_nonzero(~keep)),
        'excluded_people': unknown,
        'num_classes': int(classes.size),
        'num_people': int(np.unique(split.labels[keep]).size),
    }
    if name not in test_sets:
      entry['skipped'] = 'no test sequence belongs to a training person'
      outcome.entries[key] = entry
      continue
    scored_labels = test_sets[name][1]
    columns = metrics.class_indices(scored_labels, classes)
    scores = result.scores[name]
    entry['num_scored_sequences'] = int(scored_labels.size)
    entry.update(classification_metrics(scores, columns))
    entry['selection'] = result.selection
    entry['selected_epoch'] = result.selected_epochs[name]
    entry['by_selection'] = {
        rule: {'label': recognition.selection_label(rule,
                                                    rn_settings.test_ties),
               'epoch': selection.epochs[name],
               'rank1': metrics.rank_k(selection.scores[name], columns, 1),
               'nauc': (metrics.nauc(selection.scores[name], columns)
                        if classes.size >= 2 else None)}
        for rule, selection in result.rules.items()}
    entry['confusion_matrix'] = confusion_record(scores, columns, classes)
    rocs, baseline_scores = {}, {}
    if classes.size >= 2:
      rocs[CAGES] = metrics.micro_roc(scores, columns)
    if settings.baselines:
      # The baselines score every kept test sequence (no released row rules).
      test_sequences = split.sequences[keep]
      test_columns = metrics.class_indices(split.labels[keep], classes)
      meta = encoding_set.metadata
      entry['baselines'], baseline_rocs, baseline_scores = cache.get(
          'protocol_a_baselines',
          (train.sequences, train.labels, test_sequences, test_columns,
           classes, meta.bones, meta.joint_names, settings.baseline_k,
           settings.distance),
          lambda: _classification_baselines(
              encoding_set, train, test_sequences, test_columns, classes,
              settings, f'protocol A {entry["label"]}'))
      rocs.update(baseline_rocs)
    outcome.entries[key] = entry
    outcome.rocs[key] = rocs
    if settings.walks:
      outcome.hand_to_walk_level(walk_evaluator.ClassifiedWindows(
          entry, train, split, keep, scores, classes, baseline_scores,
          rows_copy_windows=bool(rows.extraction_batches
                                 or rows.full_test_batches)))
  return outcome


def _classification_baselines(encoding_set: EncodingSet, train: SplitEncodings,
                              test_sequences: np.ndarray,
                              test_columns: np.ndarray, classes: np.ndarray,
                              settings: EvalSettings, task: str
                              ) -> tuple[dict[str, Any], dict[str, tuple],
                                         dict[str, Any]]:
  """Protocol-A baselines: k-NN over the train split (``task`` names the
  split in progress lines).

  Returns:
    (entries, ROCs, window scores): the last maps each baseline to
    (scores [n, C], description) or to the reason it was skipped, for the
    walk level.
  """
  entries, rocs, window_scores = {}, {}, {}
  meta = encoding_set.metadata
  for name in baselines_lib.BASELINES:
    try:
      result = baselines_lib.run_baseline(
          name, train.sequences, train.labels, test_sequences,
          bones=meta.bones, joint_names=meta.joint_names, classes=classes,
          k=min(settings.baseline_k, train.labels.size),
          metric=settings.distance,
          progress=Progress(f'{task}, {name} k-NN', test_sequences.shape[0],
                            'queries'))
    except ValueError as error:
      entries[name] = {'skipped': str(error)}
      window_scores[name] = str(error)
      continue
    entry = classification_metrics(result.scores, test_columns)
    entry['description'] = result.description
    entries[name] = entry
    window_scores[name] = (result.scores, result.description)
    if result.scores.shape[1] >= 2:
      rocs[name] = metrics.micro_roc(result.scores, test_columns)
  return entries, rocs, window_scores


def _rn_summary(result: RNResult, rn_settings: RNSettings,
                train: SplitEncodings, val_fraction: Optional[float]
                ) -> dict[str, Any]:
  """The ``rn`` section of results.json; ``val_fraction`` is the validation
  hold-out the RN was trained with (None without one)."""
  history = result.history
  return {
      'manner': rn_settings.manner,
      'selection': result.selection,
      'selection_label': recognition.selection_label(result.selection,
                                                     rn_settings.test_ties),
      'epochs': rn_settings.epochs,
      'batch_size': result.batch_size,
      'configured_batch_size': rn_settings.batch_size,
      'learning_rate': rn_settings.learning_rate,
      'hidden': rn_settings.hidden,
      'val_fraction': val_fraction,
      'rules_reported': list(result.rules),
      'num_classes': int(result.classes.size),
      'input_dim': int(rn_inputs.rn_samples(train.encodings[:1],
                                              rn_settings.manner).shape[-1]),
      'num_train_sequences': result.num_train_sequences,
      'train_sequences_per_person': result.train_sequences_per_person,
      'train_frames_per_person': (
          {person: count * int(train.encodings.shape[1]) for person, count
           in result.train_sequences_per_person.items()}
          if rn_settings.manner == 'ap' else None),
      'num_val_sequences': result.num_val_sequences,
      'samples_per_epoch': result.samples_per_epoch,
      'batches_per_epoch': result.batches_per_epoch,
      'samples_dropped_per_epoch': (result.samples_per_epoch
                                    - result.batches_per_epoch
                                    * result.batch_size),
      'train_seconds': result.train_seconds,
      'final_train_loss': float(history.train_loss[-1]),
      'history': {
          'train_loss': history.train_loss.tolist(),
          'val_accuracy': (None if history.val_accuracy is None
                           else history.val_accuracy.tolist()),
          'test_accuracy': {name: curve.tolist() for name, curve
                            in history.test_accuracy.items()},
      },
  }


def evaluate(inputs: EvaluationInputs) -> Outcome:
  """The evaluator: protocol A, with the RN saved in ``inputs.saved_rn_path``
  (if any) offered for re-scoring."""
  return protocol_a(inputs.encoding_set, inputs.rn_settings, inputs.settings,
                    inputs.rows, saved_rn.load_rn(inputs.saved_rn_path),
                    inputs.cache)


EVALUATOR = Evaluator('A', evaluate, headline_rank=0, walk_level=True)
