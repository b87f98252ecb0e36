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
from sge_jax.evaluate.protocol_b import EVALUATOR as PROTOCOL_B
from sge_jax.evaluate.protocol_b import protocol_b  # noqa: F401
from sge_jax.evaluate.protocol_common import retrieval_counts, score_retrieval
from sge_jax.evaluate.scoring import keep_known_people, sequence_features

_log = logging.getLogger(__name__)


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


def _evaluate_cme(inputs: EvaluationInputs) -> Outcome:
  return protocol_cme(inputs.encoding_set, inputs.run.data.view,
                      inputs.settings,
                      second_nearest=inputs.run.quirks.second_nearest)


# Every protocol, in the order they run and are reported (``PROTOCOLS``).
EVALUATORS: dict[str, Evaluator] = {
    evaluator.name: evaluator for evaluator in (
        PROTOCOL_A,
        PROTOCOL_B,
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

