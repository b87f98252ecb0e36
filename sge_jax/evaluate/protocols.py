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

import numpy as np

from sge_jax import released
from sge_jax.config import CME_DATASET, EvalSettings
from sge_jax.data.authors_layout import condition_pair
from sge_jax.encode.encodings import EncodingSet, SplitEncodings
from sge_jax.errors import DataError
from sge_jax.evaluate import metrics
from sge_jax.evaluate.evaluator import EvaluationInputs, Evaluator, Outcome
from sge_jax.evaluate.protocol_a import EVALUATOR as PROTOCOL_A
from sge_jax.evaluate.protocol_a import protocol_a  # noqa: F401
from sge_jax.data import recording_ids
from sge_jax.evaluate import walk_level
from sge_jax.evaluate.protocol_common import (require_classes,
                                              retrieval_baseline_description,
                                              retrieval_counts, score_retrieval,
                                              walk_problem_note)
from sge_jax.evaluate.scoring import (TRAIN_SPLIT, keep_known_people,
                                      sequence_features, split_label)

_log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------
# Protocol B.


def retrieval_pairs(encoding_set: EncodingSet) -> list[tuple[str, str]]:
  """(probe, gallery) split pairs of protocol B (module docstring)."""
  names = encoding_set.split_names
  if 'gallery' in names and 'probe' in names:
    return [('probe', 'gallery')]
  if TRAIN_SPLIT in names:
    return [(name, TRAIN_SPLIT) for name in names if name != TRAIN_SPLIT]
  return []


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
    require_classes(gallery.labels, f'the {gallery_name} split (the gallery '
                    'of protocol B)', dataset)
    keep, unknown = keep_known_people(probe.labels, gallery.labels)
    label = (f'{split_label(dataset, probe_name)} -> '
             f'{split_label(dataset, gallery_name)}')
    entry = {
        'protocol': 'B', 'probe': probe_name, 'gallery': gallery_name,
        'label': label,
        **retrieval_counts(outcome, f'Protocol B, {label}', probe, gallery,
                           keep, unknown, settings),
    }
    outcome.entries[f'B/{probe_name}'] = entry
    if not keep.any():
      entry['skipped'] = 'no probe person has a gallery sequence'
      continue
    walks = settings.walks and recording_ids.known(probe.recordings[keep])
    problem = walks and walk_level.walk_problem(gallery_name, gallery,
                                                probe_name, probe)
    feature_sets, window_votes = score_retrieval(
        entry, encoding_set, probe, gallery, keep, settings,
        exclude_self=False,
        collect_votes=bool(walks and not problem
                           and 'vote' in settings.aggregations('B')))
    if not walks:
      continue
    if problem:
      walk_problem_note(outcome, f'Protocol B, {label}', problem)
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


# ----------------------------------------------------------------------------
# CME.


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
      **retrieval_counts(outcome, f'CME {conditions}', probe, gallery, keep,
                         unknown, settings),
  }
  if exclude_self and gallery.labels.size < 2:
    raise DataError(f'CME {conditions}: the self-match rule needs at least two '
                    'gallery sequences')
  score_retrieval(entry, encoding_set, probe, gallery, keep, settings,
                  exclude_self=exclude_self)
  if second_nearest:
    entry['rank1_self_match_rule'] = entry['rank1']
    entry['rank1'] = released_cme_rank1(
        probe, gallery, bool(pair and pair[0] == pair[1]),
        settings.retrieval_features)
    outcome.note(f'CME {conditions}: Rank-1 by the released rule (R11: R1 '
                 'gallery rows, second nearest for equal conditions); mAP and '
                 'CMC by the self-match rule.')
  outcome.entries[f'CME/{conditions}'] = entry
  return outcome


# ----------------------------------------------------------------------------
# The registry.


def _evaluate_b(inputs: EvaluationInputs) -> Outcome:
  return protocol_b(inputs.encoding_set, inputs.settings)


def _evaluate_cme(inputs: EvaluationInputs) -> Outcome:
  return protocol_cme(inputs.encoding_set, inputs.run.data.view,
                      inputs.settings,
                      second_nearest=inputs.run.quirks.second_nearest)


# Every protocol, in the order they run and are reported (``PROTOCOLS``).
EVALUATORS: dict[str, Evaluator] = {
    evaluator.name: evaluator for evaluator in (
        PROTOCOL_A,
        Evaluator('B', _evaluate_b, headline_rank=2, walk_level=True),
        Evaluator('CME', _evaluate_cme, headline_rank=1),
    )}


def protocol_plan(encoding_set: EncodingSet, settings: EvalSettings,
                  notes: list[str]) -> tuple[str, ...]:
  """The protocols to run, in registry order: the configured ones, with B run
  as CME on the CME dataset (``CASIA_B_match``, read from the encodings);
  notes that rule when it acts."""
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

