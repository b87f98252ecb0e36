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
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Optional

import numpy as np

from sge_jax import released
from sge_jax.config import EvalSettings, RNSettings
from sge_jax.data.authors_layout import condition_pair
from sge_jax.encode.encodings import EncodingSet, SplitEncodings
from sge_jax.errors import ConfigError, DataError
from sge_jax.evaluate import baselines as baselines_lib
from sge_jax.evaluate import metrics, recognition, saved_rn
from sge_jax.evaluate.released_rows import (ReleasedRows, released_test_set,
                                            released_train_set)

RETRIEVAL_DESCRIPTIONS = {
    'concat': 'flattened f x D frame-level CAGEs (the sequence-level CAGE)',
    'mean': 'mean over the f frames of the frame-level CAGEs',
}
TRAIN_SPLIT = 'train'
RANKS = (1, 5, 10)

_log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------
# Small helpers.


def split_label(dataset: str, split: str) -> str:
  """Human name of a probe set: 'IAS-A', 'BIWI Walking', else the split name."""
  if dataset.upper().startswith('IAS') and split in ('A', 'B'):
    return f'IAS-{split}'
  if dataset.upper().startswith('BIWI') and split in ('Walking', 'Still'):
    return f'BIWI {split}'
  return split


def sequence_features(encodings: np.ndarray, representation: str
                      ) -> np.ndarray:
  """Retrieval features of sequences: CAGEs [N, f, D] -> [N, f * D] ('concat')
  or [N, D] ('mean'), float64."""
  encodings = np.asarray(encodings, dtype=np.float64)
  if representation == 'concat':
    return encodings.reshape(encodings.shape[0], -1)
  if representation == 'mean':
    return encodings.mean(axis=1)
  raise ConfigError(f'unknown retrieval representation {representation!r}')


def _rank_values(curve: np.ndarray) -> dict[str, Optional[float]]:
  """rank1/rank5/rank10 from a CMC curve (None where the curve is shorter)."""
  return {f'rank{k}': float(curve[k - 1]) if k <= curve.size else None
          for k in RANKS}


def classification_metrics(scores: np.ndarray, columns: np.ndarray
                           ) -> dict[str, Any]:
  """Rank-k, CMC and nAUC of a score matrix [N, C] against columns [N]."""
  curve = metrics.cmc(scores, columns)
  values = _rank_values(curve)
  values['nauc'] = (metrics.nauc(scores, columns) if scores.shape[1] >= 2
                    else None)
  values['cmc'] = curve.tolist()
  return values


def retrieval_metrics(query, query_labels, gallery, gallery_labels, *,
                      distance: str, exclude_self: bool, max_rank: int
                      ) -> dict[str, Any]:
  """Rank-k, CMC (up to max_rank) and mAP of probe -> gallery retrieval."""
  candidates = gallery.shape[0] - int(exclude_self)
  result = metrics.retrieval_cmc(
      query, query_labels, gallery, gallery_labels, metric=distance,
      max_rank=min(max(max_rank, max(RANKS)), candidates),
      exclude_self=exclude_self)
  average_precision = metrics.mean_average_precision(
      query, query_labels, gallery, gallery_labels, metric=distance,
      exclude_self=exclude_self)
  values = _rank_values(result.cmc)
  values['map'] = (average_precision.value
                   if np.isfinite(average_precision.value) else None)
  values['cmc'] = result.cmc[:max_rank].tolist()
  values['num_unmatchable'] = result.num_unmatchable
  return values


def _keep_known_people(labels: np.ndarray, known: np.ndarray
                       ) -> tuple[np.ndarray, list[int]]:
  """Boolean mask of labels in ``known`` and the sorted unknown person ids."""
  keep = np.isin(labels, known)
  return keep, sorted(int(p) for p in np.unique(labels[~keep]))


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
                              settings: EvalSettings
                              ) -> tuple[dict[str, Any], dict[str, tuple]]:
  """Protocol-A baselines: k-NN over the train split; returns (entries, ROCs)."""
  entries, rocs = {}, {}
  meta = encoding_set.metadata
  for name in baselines_lib.BASELINES:
    try:
      result = baselines_lib.run_baseline(
          name, train.sequences, train.labels, test_sequences,
          bones=meta.bones, joint_names=meta.joint_names, classes=classes,
          k=min(settings.baseline_k, train.labels.size),
          metric=settings.distance)
    except ValueError as error:
      entries[name] = {'skipped': str(error)}
      continue
    entry = classification_metrics(result.scores, test_columns)
    entry['description'] = result.description
    entries[name] = entry
    if result.scores.shape[1] >= 2:
      rocs[name] = metrics.micro_roc(result.scores, test_columns)
  return entries, rocs


def _retrieval_baselines(encoding_set: EncodingSet, probe_sequences,
                         probe_labels, gallery_sequences, gallery_labels, *,
                         settings: EvalSettings, exclude_self: bool
                         ) -> dict[str, Any]:
  """B/CME baselines: z-scored features ranked against the same gallery."""
  entries = {}
  for name in baselines_lib.BASELINES:
    try:
      gallery = _baseline_features(name, gallery_sequences, encoding_set)
      probe = _baseline_features(name, probe_sequences, encoding_set)
    except ValueError as error:
      entries[name] = {'skipped': str(error)}
      continue
    standardizer = baselines_lib.Standardizer.fit(gallery)
    gallery = standardizer.transform(gallery)
    # Under exclude_self the probe must be the very same array as the gallery.
    probe = gallery if exclude_self else standardizer.transform(probe)
    entry = retrieval_metrics(probe, probe_labels, gallery, gallery_labels,
                              distance=settings.distance,
                              exclude_self=exclude_self,
                              max_rank=settings.cmc_max_rank)
    entry['description'] = (f'{name}: features z-scored with gallery '
                            f'statistics, ranked by {settings.distance} '
                            'distance')
    entries[name] = entry
  return entries


# ----------------------------------------------------------------------------
# Protocol A.


@dataclasses.dataclass
class _Outcome:
  """What a protocol adds to the results."""
  entries: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
  rocs: dict[str, dict[str, tuple]] = dataclasses.field(default_factory=dict)
  notes: list[str] = dataclasses.field(default_factory=list)
  warnings: list[str] = dataclasses.field(default_factory=list)
  rn: Optional[dict[str, Any]] = None
  trained_rn: Optional[recognition.RNResult] = None
  rn_digest: str = ''


def _note(outcome: _Outcome, message: str, warn: bool = False) -> None:
  """A remark for results.json; ``warn`` also puts it among the warnings that
  the console summary repeats."""
  outcome.notes.append(message)
  if warn:
    outcome.warnings.append(message)
  (_log.warning if warn else _log.info)('[eval] %s', message)


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
               saved: Optional[saved_rn.SavedRN] = None) -> _Outcome:
  """RN classification of every non-train split (module docstring).

  ``rows`` (the released R1/R3/R5 row rules) picks the RN's training rows and
  the test sequences it scores; by default every sequence, once. The RN is
  re-scored from ``saved`` when that can serve ``rn_settings`` and ``rows`` on
  these encodings (``saved_rn``), else trained; ``trained_rn`` of the outcome
  is set when it was trained (to be saved).
  """
  outcome = _Outcome()
  dataset = encoding_set.metadata.dataset
  if TRAIN_SPLIT not in encoding_set.split_names:
    _note(outcome, 'Protocol A skipped: the encodings have no train split to '
          'train the recognition network on.', warn=True)
    return outcome
  train = encoding_set.select(TRAIN_SPLIT)
  _require_classes(train.labels, 'the train split (the classes of protocol A)',
                   dataset)
  classes = np.unique(train.labels)
  test_names = [s for s in encoding_set.split_names if s != TRAIN_SPLIT]
  if not test_names:
    _note(outcome, 'Protocol A skipped: no test split.', warn=True)
    return outcome

  test_sets, kept = {}, {}
  for name in test_names:
    split = encoding_set.select(name)
    keep, unknown = _keep_known_people(split.labels, classes)
    kept[name] = (split, keep, unknown)
    if unknown:
      _note(outcome, (
          f'Protocol A, {split_label(dataset, name)}: '
          f'{int(np.count_nonzero(~keep))} of {keep.size} test sequences '
          f'excluded: people {unknown} are not among the {classes.size} '
          'training people, so the RN has no class for them.'), warn=True)
    if keep.any():
      test_sets[name] = released_test_set(split.encodings[keep],
                                          split.labels[keep], rows)
  if not test_sets:
    _note(outcome, 'Protocol A skipped: no test sequence belongs to a '
          'training person.', warn=True)
    return outcome

  digest = outcome.rn_digest = saved_rn.encodings_digest(encoding_set, rows)
  why_not = (saved.mismatch(rn_settings, digest) if saved is not None
             else None)
  if saved is not None and why_not is None:
    result = saved_rn.rescore(saved, test_sets, rn_settings)
    source = f're-scored from the saved RN {saved.path}'
    val_fraction = saved.meta['fingerprint']['val_fraction']
  else:
    if saved is not None:
      _note(outcome, f'The RN is trained again: the saved RN {saved.path} '
            f'cannot serve this evaluation ({why_not}).')
    result = recognition.train_and_score(
        *released_train_set(train.encodings, train.labels, rows), test_sets,
        rn_settings)
    outcome.trained_rn = result
    source = 'trained in this evaluation'
    val_fraction = (rn_settings.val_fraction if rn_settings.selection == 'val'
                    else None)
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
    rocs = {}
    if classes.size >= 2:
      rocs['CAGEs'] = metrics.micro_roc(scores, columns)
    if settings.baselines:
      # The baselines score every kept test sequence (no released row rules).
      entry['baselines'], baseline_rocs = _classification_baselines(
          encoding_set, train, split.sequences[keep],
          metrics.class_indices(split.labels[keep], classes), classes,
          settings)
      rocs.update(baseline_rocs)
    outcome.entries[key] = entry
    outcome.rocs[key] = rocs
  return outcome


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


def _retrieval_counts(outcome: _Outcome, label: str, probe: SplitEncodings,
                      gallery: SplitEncodings, keep: np.ndarray,
                      unknown: list[int], settings: EvalSettings
                      ) -> dict[str, Any]:
  """The bookkeeping fields of a retrieval entry (B or CME); notes exclusions."""
  if unknown:
    _note(outcome, (
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


def _retrieval_scores(encoding_set: EncodingSet, probe: SplitEncodings,
                      gallery: SplitEncodings, keep: np.ndarray,
                      settings: EvalSettings, exclude_self: bool) -> dict:
  """Retrieval metrics (and baselines) of the kept probe sequences.

  Under ``exclude_self`` probe and gallery are the same sequences (``keep`` is
  all True) and probe i may not match gallery i; the gallery's CAGEs then serve
  as the probe's too, so each probe is exactly one gallery entry.
  """
  gallery_features = sequence_features(gallery.encodings,
                                       settings.retrieval_features)
  probe_features = (gallery_features if exclude_self else sequence_features(
      probe.encodings[keep], settings.retrieval_features))
  scores = retrieval_metrics(
      probe_features, probe.labels[keep], gallery_features, gallery.labels,
      distance=settings.distance, exclude_self=exclude_self,
      max_rank=settings.cmc_max_rank)
  if settings.baselines:
    scores['baselines'] = _retrieval_baselines(
        encoding_set, probe.sequences[keep], probe.labels[keep],
        gallery.sequences, gallery.labels, settings=settings,
        exclude_self=exclude_self)
  return scores


def protocol_b(encoding_set: EncodingSet, settings: EvalSettings) -> _Outcome:
  """Probe -> gallery retrieval of sequence-level CAGEs."""
  outcome = _Outcome()
  dataset = encoding_set.metadata.dataset
  pairs = retrieval_pairs(encoding_set)
  if not pairs:
    _note(outcome, 'Protocol B skipped: no gallery/probe splits and no train '
          'split to use as gallery.', warn=True)
    return outcome
  for probe_name, gallery_name in pairs:
    probe = encoding_set.select(probe_name)
    gallery = encoding_set.select(gallery_name)
    _require_classes(gallery.labels, f'the {gallery_name} split (the gallery '
                     'of protocol B)', dataset)
    keep, unknown = _keep_known_people(probe.labels, gallery.labels)
    label = (f'{split_label(dataset, probe_name)} -> '
             f'{split_label(dataset, gallery_name)}')
    entry = {
        'protocol': 'B', 'probe': probe_name, 'gallery': gallery_name,
        'label': label,
        **_retrieval_counts(outcome, f'Protocol B, {label}', probe, gallery,
                            keep, unknown, settings),
    }
    if keep.any():
      entry.update(_retrieval_scores(encoding_set, probe, gallery, keep,
                                     settings, exclude_self=False))
    else:
      entry['skipped'] = 'no probe person has a gallery sequence'
    outcome.entries[f'B/{probe_name}'] = entry
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
                 second_nearest: bool = False) -> _Outcome:
  """CASIA-B CME: probe -> gallery nearest neighbour with the self-match rule
  (``second_nearest``: quirk R11's Rank-1 replaces it; mAP and CMC keep the
  self-match rule)."""
  outcome = _Outcome()
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
    _note(outcome, (
        f'CME {conditions}: equal conditions but the probe and gallery hold '
        'different sequences, so no probe can match itself; plain nearest '
        'neighbour.'))
  if pair and pair[0] != pair[1] and exclude_self:
    _note(outcome, (
        f'CME {conditions}: different conditions but identical probe and '
        'gallery data; each probe skips itself (self-match rule).'), warn=True)
  keep = np.ones(probe.labels.size, dtype=bool)
  unknown: list[int] = []
  if not exclude_self:
    keep, unknown = _keep_known_people(probe.labels, gallery.labels)
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
  entry.update(_retrieval_scores(encoding_set, probe, gallery, keep, settings,
                                 exclude_self=exclude_self))
  if second_nearest:
    entry['rank1_self_match_rule'] = entry['rank1']
    entry['rank1'] = released_cme_rank1(
        probe, gallery, bool(pair and pair[0] == pair[1]),
        settings.retrieval_features)
    _note(outcome, (f'CME {conditions}: Rank-1 by the released rule (R11: '
                    'R1 gallery rows, second nearest for equal conditions); '
                    'mAP and CMC by the self-match rule.'))
  outcome.entries[f'CME/{conditions}'] = entry
  return outcome


