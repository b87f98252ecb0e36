"""CASIA-B CME: cross-condition nearest-neighbour matching (docs/method.md
§2.4, §7).

The ``probe`` split's sequence-level CAGEs are matched to the ``gallery``
split's (Rank-1/5/10, CMC, mAP, as a retrieval: ``protocol_common``). CME runs
when requested as ``CME``, and replaces ``B`` when the dataset is
``CASIA_B_match`` (``protocols.protocol_plan``); the condition pair is read
from ``config.data.view`` ('<probe>.<gallery>', e.g. 'nm.bg'). Self-match
rule: when the probe and gallery are the same samples (what an
equal-condition pair nm.nm/bg.bg/cl.cl loads), each probe skips itself and
takes its nearest OTHER sequence (``exclude_self`` in
``sge_jax.evaluate.metrics``). With quirk R11 (``quirks.second_nearest``) the
Rank-1 is the released code's (``released_cme_rank1``). CASIA-B CVE needs
nothing special: it is protocol A on a per-view dataset. Window level only.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from sge_jax import released
from sge_jax.config import EvalSettings
from sge_jax.data.authors_layout import condition_pair
from sge_jax.encode.encodings import EncodingSet, SplitEncodings
from sge_jax.errors import DataError
from sge_jax.evaluate import metrics
from sge_jax.evaluate.evaluator import EvaluationInputs, Evaluator, Outcome
from sge_jax.evaluate.protocol_common import retrieval_counts, score_retrieval
from sge_jax.evaluate.result_cache import ResultCache
from sge_jax.evaluate.scoring import keep_known_people, sequence_features


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
                 second_nearest: bool = False,
                 cache: Optional[ResultCache] = None) -> Outcome:
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
                  exclude_self=exclude_self, cache=cache)
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


def evaluate(inputs: EvaluationInputs) -> Outcome:
  """The evaluator: CME on the probe and gallery splits, the condition pair
  from ``config.data.view``."""
  return protocol_cme(inputs.encoding_set, inputs.run.data.view,
                      inputs.settings,
                      second_nearest=inputs.run.quirks.second_nearest,
                      cache=inputs.cache)


EVALUATOR = Evaluator('CME', evaluate, headline_rank=1)
