"""Re-identification protocols on exported CAGEs (docs/method.md §2.4, §7).

Each protocol turns an ``EncodingSet`` into result entries (the numbers people
compare); ``sge_jax.evaluate.stage.evaluate_run`` runs the configured ones.

Protocols (``config.eval.protocols``, comma-separated):

* **A** (the CAGEs paper): a recognition network (``sge_jax.evaluate.recognition``) is
  trained on the CAGEs of the ``train`` split and classifies every other split
  (``test``; BIWI ``Walking``/``Still``; IAS ``A``/``B``; ``gallery``/``probe``),
  each reported separately: Rank-1/5/10, CMC (k = 1..C), nAUC. The classes are
  the training people; a test sequence whose person is not among them cannot be
  classified and is excluded, with a count and the person ids in the entry.
  One RN run serves all splits (the training does not depend on them); the
  ``paper`` rule picks its epoch per split, as separate runs of the authors'
  code would.
* **B** (the successor papers' retrieval protocol): sequence-level CAGEs of the
  probe are ranked against a gallery by ``config.eval.distance``: Rank-1/5/10,
  CMC, mAP. Gallery choice: with ``gallery`` and ``probe`` splits, probe ->
  gallery; otherwise every test split is a probe against the ``train`` split
  as gallery (the same labelled side protocol A learns from). Probe sequences
  whose person has no gallery sequence are excluded and counted, as in A.
* **CME** (CASIA-B cross-condition matching): nearest-neighbour matching of the
  ``probe`` split's sequence-level CAGEs to the ``gallery`` split's. Rule: CME
  runs when requested as ``CME``, and replaces ``B`` when the dataset is
  ``CASIA_B_match`` (config.data.name or the encodings' dataset); the condition
  pair is read from ``config.data.view`` ('<probe>.<gallery>', e.g. 'nm.bg').
  Self-match rule: when the probe and gallery are the same samples (what an
  equal-condition pair nm.nm/bg.bg/cl.cl loads), each probe skips itself and
  takes its nearest OTHER sequence (``exclude_self`` in ``sge_jax.evaluate.metrics``).
  CASIA-B CVE needs nothing special: it is protocol A on a per-view dataset.

Sequence-level representation for retrieval (B and CME), ``config.eval.
retrieval_features``: ``concat`` (default) is the flattened [f * D] CAGE, the
"sequence-level CAGE" that docs/method.md §7 matches in CME and that the SC manner feeds
the RN; with the Euclidean distance it compares the two sequences frame by
frame, which keeps the within-sequence dynamics the encoder was trained to
capture. ``mean`` ([D], the mean over the f frames, the temporal pooling of the
successor papers) is order-free and smaller. One choice is used for every
retrieval in a run and reported in results.json and report.md.

Baselines (``config.eval.baselines``): every ``baselines.BASELINES`` feature on
the raw input sequences, on the same splits: protocol A scores test sequences
by k-NN over the train split (``run_baseline``, columns = the RN's classes);
B/CME rank the same gallery with the z-scored (gallery statistics) features.
A baseline that cannot run on the data (no bones or joint names) is reported as
skipped with the reason.

Walk level (``config.eval.level`` 'walk' or 'both', docs/method.md §7.1): A and
B hand their window scores and feature sets to ``walk_level``, which adds the
walk entries of every test split whose recordings are known. The window
entries are computed the same way whether or not walks are scored.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Optional

import numpy as np

from sge_jax import released
from sge_jax.config import CME_DATASET, EvalSettings, RNSettings
from sge_jax.data import recording_ids
from sge_jax.data.authors_layout import condition_pair
from sge_jax.encode.encodings import EncodingSet, SplitEncodings
from sge_jax.errors import DataError
from sge_jax.evaluate import baselines as baselines_lib
from sge_jax.evaluate import metrics, recognition, saved_rn, walk_level
from sge_jax.evaluate.evaluator import EvaluationInputs, Evaluator, Outcome
from sge_jax.evaluate.scoring import (CAGES, TRAIN_SPLIT, classification_metrics,
                                      confusion_record, keep_known_people,
                                      retrieval_metrics, sequence_features,
                                      split_label)
from sge_jax.evaluate.released_rows import (ReleasedRows, r1_test_rows,
                                            r5_padding, r5_scored_rows,
                                            released_train_set)
from sge_jax.progress import Progress

_log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------
# Baselines.


def _baseline_features(name: str, sequences: np.ndarray,
                       encoding_set: EncodingSet) -> np.ndarray:
  meta = encoding_set.metadata
  return baselines_lib.BASELINES[name](sequences, meta.bones,
                                       meta.joint_names).features


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


def _retrieval_feature_sets(encoding_set: EncodingSet,
                            probe_sequences: np.ndarray,
                            probe_encodings: np.ndarray,
                            gallery: SplitEncodings, settings: EvalSettings,
                            exclude_self: bool) -> dict[str, Any]:
  """Method -> (probe features [n, F], gallery features [G, F]) for retrieval,
  or the reason a baseline cannot run: ``CAGES`` (sequence-level CAGEs), then
  with ``settings.baselines`` every baseline, z-scored with gallery statistics.

  Under ``exclude_self`` probe and gallery are the same sequences, and the
  gallery's features serve as the probe's (the very same array, as
  ``metrics`` checks).
  """
  gallery_features = sequence_features(gallery.encodings,
                                       settings.retrieval_features)
  probe_features = (gallery_features if exclude_self else sequence_features(
      probe_encodings, settings.retrieval_features))
  feature_sets: dict[str, Any] = {CAGES: (probe_features, gallery_features)}
  if not settings.baselines:
    return feature_sets
  for name in baselines_lib.BASELINES:
    try:
      gallery_features = _baseline_features(name, gallery.sequences,
                                            encoding_set)
      probe_features = _baseline_features(name, probe_sequences, encoding_set)
    except ValueError as error:
      feature_sets[name] = str(error)
      continue
    standardizer = baselines_lib.Standardizer.fit(gallery_features)
    gallery_features = standardizer.transform(gallery_features)
    probe_features = (gallery_features if exclude_self
                      else standardizer.transform(probe_features))
    feature_sets[name] = (probe_features, gallery_features)
  return feature_sets


def retrieval_baseline_description(name: str, distance: str) -> str:
  return (f'{name}: features z-scored with gallery statistics, ranked by '
          f'{distance} distance')


# ----------------------------------------------------------------------------
# Protocol A.


MIN_CLASSES = 2


def _require_classes(people: np.ndarray, what: str, dataset: str) -> None:
  """Re-identification needs at least two people to tell apart."""
  if np.unique(people).size < MIN_CLASSES:
    raise DataError(
        f'{dataset}: {what} holds {np.unique(people).size} person; telling '
        f'people apart needs at least {MIN_CLASSES} (a score over one class '
        'is 100 % whatever the encodings). Use data with more people.')


def protocol_a(encoding_set: EncodingSet, rn_settings: RNSettings,
               settings: EvalSettings,
               rows: ReleasedRows = ReleasedRows(),
               saved: Optional[saved_rn.SavedRN] = None) -> Outcome:
  """RN classification of every non-train split (module docstring).

  ``rows`` (the released R1/R3/R5 row rules) picks the RN's training rows and
  the test sequences it scores; by default every sequence, once. The RN is
  re-scored from ``saved`` when that can serve ``rn_settings`` and ``rows`` on
  these encodings (``saved_rn``), else trained; ``trained_rn`` of the outcome
  is set when it was trained (to be saved).
  """
  outcome = Outcome()
  dataset = encoding_set.metadata.dataset
  if TRAIN_SPLIT not in encoding_set.split_names:
    outcome.note('Protocol A skipped: the encodings have no train split to '
          'train the recognition network on.', warn=True)
    return outcome
  train = encoding_set.select(TRAIN_SPLIT)
  _require_classes(train.labels, 'the train split (the classes of protocol A)',
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
            'accordingly (config.rn.batch_size).'),
              warn=True)
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
      input_dim = recognition.rn_samples(train.encodings[:1],
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
      entry['baselines'], baseline_rocs, baseline_scores = (
          _classification_baselines(
              encoding_set, train, split.sequences[keep],
              metrics.class_indices(split.labels[keep], classes), classes,
              settings, f'protocol A {entry["label"]}'))
      rocs.update(baseline_rocs)
    outcome.entries[key] = entry
    outcome.rocs[key] = rocs
    if settings.walks and recording_ids.known(split.recordings[keep]):
      _walks_a(outcome, entry, train, split, keep, scores, baseline_scores,
               classes, settings, rows, dataset)
  return outcome


def _walk_problem_note(outcome: Outcome, label: str, problem: str) -> None:
  outcome.note((
      f'No walk level for {label}: {problem} (recording field of '
      'encodings.npz). Fix the recording ids, or score windows only with '
      '--config.eval.level=window.'), warn=True)


def _walks_a(outcome: Outcome, window_entry: dict[str, Any],
             train: SplitEncodings, split: SplitEncodings, keep: np.ndarray,
             scores: np.ndarray, baseline_scores: dict[str, Any],
             classes: np.ndarray, settings: EvalSettings, rows: ReleasedRows,
             dataset: str) -> None:
  """Adds the walk-level entries of one protocol-A test split (walk_level)."""
  name = window_entry['probe']
  if rows.extraction_batches or rows.full_test_batches:
    outcome.note((
        f'Protocol A, {window_entry["label"]}: no walk level, since the '
        'released row rules (R1 extraction_batches, R5 full_test_batches) copy '
        'or drop test windows, so the RN scores no longer map one to one onto '
        'the windows of a walk.'))
    return
  problem = walk_level.walk_problem(TRAIN_SPLIT, train, name, split)
  if problem:
    _walk_problem_note(outcome, window_entry['label'], problem)
    return
  base = {key: window_entry[key] for key in (
      'protocol', 'probe', 'gallery', 'num_excluded', 'excluded_people',
      'num_classes', 'selection', 'selected_epoch')}
  base['label'] = f'{window_entry["label"]} walks'
  entries, rocs = walk_level.classification_entries(
      base, name, scores, split.recordings[keep], split.labels[keep], classes,
      baseline_scores, settings, f'{dataset} split {name}')
  outcome.entries.update(entries)
  outcome.rocs.update(rocs)


def _rn_summary(result: recognition.RNResult, rn_settings: RNSettings,
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
      'input_dim': int(recognition.rn_samples(train.encodings[:1],
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


# ----------------------------------------------------------------------------
# Protocol B and CME.


def retrieval_pairs(encoding_set: EncodingSet) -> list[tuple[str, str]]:
  """(probe, gallery) split pairs of protocol B (module docstring)."""
  names = encoding_set.split_names
  if 'gallery' in names and 'probe' in names:
    return [('probe', 'gallery')]
  if TRAIN_SPLIT in names:
    return [(name, TRAIN_SPLIT) for name in names if name != TRAIN_SPLIT]
  return []


def _retrieval_counts(outcome: Outcome, label: str, probe: SplitEncodings,
                      gallery: SplitEncodings, keep: np.ndarray,
                      unknown: list[int], settings: EvalSettings
                      ) -> dict[str, Any]:
  """The bookkeeping fields of a retrieval entry (B or CME); notes exclusions."""
  if unknown:
    outcome.note((
        f'{label}: {int(np.count_nonzero(~keep))} of {keep.size} probe '
        f'sequences excluded: people {unknown} have no gallery sequence.'),
          warn=True)
  return {
      'num_sequences': int(np.count_nonzero(keep)),
      'num_excluded': int(np.count_nonzero(~keep)),
      'excluded_people': unknown,
      'num_gallery': int(gallery.labels.size),
      'num_classes': int(np.unique(gallery.labels).size),
      'num_people': int(np.unique(probe.labels[keep]).size),
      'features': settings.retrieval_features,
  }


def _retrieval_scores(feature_sets: dict[str, Any], probe_labels: np.ndarray,
                      gallery_labels: np.ndarray, settings: EvalSettings,
                      exclude_self: bool, task: str, collect_votes: bool
                      ) -> tuple[dict, dict[str, np.ndarray]]:
  """Window-level retrieval metrics of CAGEs, with the baselines under
  ``baselines`` (``_retrieval_feature_sets``); ``task`` names the retrieval
  in progress lines.

  Returns:
    (metrics, window votes): with ``collect_votes`` the second maps each
    scored method to its probe windows' walk-level votes [n, P], taken from
    the same distances (``walk_level.WindowVotes``); else it is empty.
  """
  votes = {}

  def score(name):
    probe_features, gallery_features = feature_sets[name]
    on_block = None
    if collect_votes:
      on_block = votes[name] = walk_level.WindowVotes(probe_labels.size,
                                                      gallery_labels)
    return retrieval_metrics(
        probe_features, probe_labels, gallery_features, gallery_labels,
        distance=settings.distance, exclude_self=exclude_self,
        max_rank=settings.cmc_max_rank, on_block=on_block,
        progress=Progress(f'{task}, {name}', probe_labels.size, 'queries'))

  scores = score(CAGES)
  if settings.baselines:
    scores['baselines'] = {
        name: ({'skipped': features} if isinstance(features, str) else
               {**score(name), 'description':
                retrieval_baseline_description(name, settings.distance)})
        for name, features in feature_sets.items() if name != CAGES}
  return scores, {name: collected.votes for name, collected in votes.items()}


def _score_retrieval(entry: dict[str, Any], encoding_set: EncodingSet,
                     probe: SplitEncodings, gallery: SplitEncodings,
                     keep: np.ndarray, settings: EvalSettings,
                     exclude_self: bool, collect_votes: bool = False
                     ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  """Adds the window-level retrieval metrics of the kept probe sequences to
  ``entry``; returns the feature sets they came from and the probe windows'
  votes (``_retrieval_scores``), for the walk level."""
  feature_sets = _retrieval_feature_sets(
      encoding_set, probe.sequences[keep], probe.encodings[keep], gallery,
      settings, exclude_self=exclude_self)
  scores, votes = _retrieval_scores(
      feature_sets, probe.labels[keep], gallery.labels, settings,
      exclude_self=exclude_self,
      task=(entry['label'] if entry['protocol'] == 'CME'
            else f'protocol {entry["protocol"]} {entry["label"]}'),
      collect_votes=collect_votes)
  entry.update(scores)
  return feature_sets, votes


def protocol_b(encoding_set: EncodingSet, settings: EvalSettings) -> Outcome:
  """Probe -> gallery retrieval of sequence-level CAGEs."""
  outcome = Outcome()
  dataset = encoding_set.metadata.dataset
  pairs = retrieval_pairs(encoding_set)
  if not pairs:
    outcome.note('Protocol B skipped: no gallery/probe splits and no train '
          'split to use as gallery.', warn=True)
    return outcome
  for probe_name, gallery_name in pairs:
    probe = encoding_set.select(probe_name)
    gallery = encoding_set.select(gallery_name)
    _require_classes(gallery.labels, f'the {gallery_name} split (the gallery '
                     'of protocol B)', dataset)
    keep, unknown = keep_known_people(probe.labels, gallery.labels)
    label = (f'{split_label(dataset, probe_name)} -> '
             f'{split_label(dataset, gallery_name)}')
    entry = {
        'protocol': 'B', 'probe': probe_name, 'gallery': gallery_name,
        'label': label,
        **_retrieval_counts(outcome, f'Protocol B, {label}', probe, gallery,
                            keep, unknown, settings),
    }
    outcome.entries[f'B/{probe_name}'] = entry
    if not keep.any():
      entry['skipped'] = 'no probe person has a gallery sequence'
      continue
    walks = settings.walks and recording_ids.known(probe.recordings[keep])
    problem = walks and walk_level.walk_problem(gallery_name, gallery,
                                                probe_name, probe)
    feature_sets, window_votes = _score_retrieval(
        entry, encoding_set, probe, gallery, keep, settings,
        exclude_self=False,
        collect_votes=bool(walks and not problem
                           and 'vote' in settings.aggregations('B')))
    if not walks:
      continue
    if problem:
      _walk_problem_note(outcome, f'Protocol B, {label}', problem)
      continue
    base = {key: entry[key] for key in (
        'protocol', 'probe', 'gallery', 'num_excluded', 'excluded_people',
        'num_classes', 'features')}
    outcome.entries.update(walk_level.retrieval_entries(
        base, probe_name, (split_label(dataset, probe_name),
                           split_label(dataset, gallery_name)),
        feature_sets, probe.recordings[keep], probe.labels[keep],
        gallery.labels, gallery.recordings, settings,
        f'{dataset} splits {probe_name}/{gallery_name}',
        functools.partial(retrieval_baseline_description,
                          distance=settings.distance), window_votes))
  return outcome


def _same_samples(a: SplitEncodings, b: SplitEncodings) -> bool:
  """Whether two splits hold the same skeleton sequences in the same order.

  Compares the inputs, not the CAGEs: a pretext with per-split targets (sorting)
  encodes the same sequences of a gallery and a probe split differently.
  """
  return (a.sequences.shape == b.sequences.shape
          and np.array_equal(a.labels, b.labels)
          and np.array_equal(a.sequences, b.sequences))


def released_cme_rank1(probe: SplitEncodings, gallery: SplitEncodings,
                       same_condition: bool, representation: str) -> float:
  """Quirk R11: the released CME Rank-1.

  The gallery holds R1's training rows (small persons padded with copies of
  their first sequence, large ones truncated), the probes R1's test rows; each
  probe takes the nearest gallery entry, or the SECOND nearest for an equal
  condition, whatever the nearest is (Euclidean). Rank-1 = share of probes
  whose matched entry has their label.
  """
  gallery_rows, _ = released.released_extraction_order(gallery.labels)
  probe_rows = released.released_test_order(probe.labels)
  distances = metrics.pairwise_distances(
      sequence_features(probe.encodings[probe_rows], representation),
      sequence_features(gallery.encodings[gallery_rows], representation),
      'euclidean')
  matched = released.cme_match_from_distances(distances, same_condition)
  return float(np.mean(gallery.labels[gallery_rows][matched]
                       == probe.labels[probe_rows]))


def protocol_cme(encoding_set: EncodingSet, view: str,
                 settings: EvalSettings,
                 second_nearest: bool = False) -> Outcome:
  """CASIA-B CME: probe -> gallery nearest neighbour with the self-match rule
  (``second_nearest``: quirk R11's Rank-1 replaces it; mAP and CMC keep the
  self-match rule)."""
  outcome = Outcome()
  names = encoding_set.split_names
  if 'gallery' not in names or 'probe' not in names:
    raise DataError(
        'The CME protocol matches a probe split to a gallery split, but these '
        f'encodings have splits {", ".join(names)}. Encode a CASIA_B_match '
        "dataset (config.data.view='<probe>.<gallery>', e.g. nm.bg), or drop "
        'CME from --config.eval.protocols.')
  probe = encoding_set.select('probe')
  gallery = encoding_set.select('gallery')
  pair = condition_pair(view)
  conditions = f'{pair[0]}.{pair[1]}' if pair else 'probe.gallery'
  exclude_self = _same_samples(probe, gallery)
  if pair and pair[0] == pair[1] and not exclude_self:
    outcome.note((
        f'CME {conditions}: equal conditions but the probe and gallery hold '
        'different sequences, so no probe can match itself; plain nearest '
        'neighbour.'))
  if pair and pair[0] != pair[1] and exclude_self:
    outcome.note((
        f'CME {conditions}: different conditions but identical probe and '
        'gallery data; each probe skips itself (self-match rule).'), warn=True)
  keep = np.ones(probe.labels.size, dtype=bool)
  unknown: list[int] = []
  if not exclude_self:
    keep, unknown = keep_known_people(probe.labels, gallery.labels)
  entry = {
      'protocol': 'CME', 'probe': 'probe', 'gallery': 'gallery',
      'label': f'CME {conditions}', 'conditions': conditions,
      'self_match_skipped': exclude_self,
      **_retrieval_counts(outcome, f'CME {conditions}', probe, gallery, keep,
                          unknown, settings),
  }
  if exclude_self and gallery.labels.size < 2:
    raise DataError(f'CME {conditions}: the self-match rule needs at least two '
                    'gallery sequences')
  _score_retrieval(entry, encoding_set, probe, gallery, keep, settings,
                   exclude_self=exclude_self)
  if second_nearest:
    entry['rank1_self_match_rule'] = entry['rank1']
    entry['rank1'] = released_cme_rank1(
        probe, gallery, bool(pair and pair[0] == pair[1]),
        settings.retrieval_features)
    outcome.note((f'CME {conditions}: Rank-1 by the released rule (R11: '
                    'R1 gallery rows, second nearest for equal conditions); '
                    'mAP and CMC by the self-match rule.'))
  outcome.entries[f'CME/{conditions}'] = entry
  return outcome




# ----------------------------------------------------------------------------
# The registry.


def _evaluate_a(inputs: EvaluationInputs) -> Outcome:
  return protocol_a(inputs.encoding_set, inputs.rn_settings, inputs.settings,
                    inputs.rows, saved_rn.load_rn(inputs.saved_rn_path))


def _evaluate_b(inputs: EvaluationInputs) -> Outcome:
  return protocol_b(inputs.encoding_set, inputs.settings)


def _evaluate_cme(inputs: EvaluationInputs) -> Outcome:
  return protocol_cme(inputs.encoding_set, inputs.run.data.view,
                      inputs.settings,
                      second_nearest=inputs.run.quirks.second_nearest)


# Every protocol, in the order they run and are reported (``PROTOCOLS``).
EVALUATORS: dict[str, Evaluator] = {
    evaluator.name: evaluator for evaluator in (
        Evaluator('A', _evaluate_a, headline_rank=0, walk_level=True),
        Evaluator('B', _evaluate_b, headline_rank=2, walk_level=True),
        Evaluator('CME', _evaluate_cme, headline_rank=1),
    )}


def protocol_plan(encoding_set: EncodingSet, settings: EvalSettings,
                  notes: list[str]) -> tuple[str, ...]:
  """The protocols to run, in registry order: the configured ones, with B
  run as CME on the CME dataset (module docstring); notes that rule."""
  plan = list(settings.protocols)
  if encoding_set.metadata.dataset == CME_DATASET and 'B' in plan:
    plan.remove('B')
    if 'CME' not in plan:
      plan.append('CME')
    message = (f'{CME_DATASET}: protocol B runs as CME (probe -> gallery '
               'nearest neighbour with the self-match rule for equal '
               'conditions).')
    notes.append(message)
    _log.info('[eval] %s', message)
  return tuple(name for name in EVALUATORS if name in plan)
