"""Protocol B (the successor papers'): probe -> gallery retrieval of
sequence-level CAGEs (docs/method.md §7).

The probe's sequence-level CAGEs (``protocol_common``: ``concat`` or ``mean``
of the frames) are ranked against a gallery by ``config.eval.distance``:
Rank-1/5/10, CMC, mAP. Gallery choice (``retrieval_pairs``): with ``gallery``
and ``probe`` splits, probe -> gallery; otherwise every test split is a probe
against the ``train`` split as gallery (the same labelled side protocol A
learns from). Probe sequences whose person has no gallery sequence are
excluded and counted, as in A. The baselines rank the same gallery with their
z-scored features.

Walk level (``config.eval.level`` 'walk' or 'both', docs/method.md §7.1): the
feature sets and the probe windows' votes, collected in the window level's
distance pass, are handed to the walk-level evaluator
(``walk_evaluator.RankedWindows`` in ``Outcome.window_results``).
"""

from __future__ import annotations

from typing import Optional

from sge_jax.config import EvalSettings
from sge_jax.encode.encodings import EncodingSet
from sge_jax.evaluate import walk_evaluator
from sge_jax.evaluate.evaluator import EvaluationInputs, Evaluator, Outcome
from sge_jax.evaluate.protocol_common import (require_classes,
                                              retrieval_counts, score_retrieval)
from sge_jax.evaluate.result_cache import ResultCache
from sge_jax.evaluate.scoring import TRAIN_SPLIT, keep_known_people, split_label


def retrieval_pairs(encoding_set: EncodingSet) -> list[tuple[str, str]]:
  """(probe, gallery) split pairs of protocol B (module docstring)."""
  names = encoding_set.split_names
  if 'gallery' in names and 'probe' in names:
    return [('probe', 'gallery')]
  if TRAIN_SPLIT in names:
    return [(name, TRAIN_SPLIT) for name in names if name != TRAIN_SPLIT]
  return []


def protocol_b(encoding_set: EncodingSet, settings: EvalSettings,
               cache: Optional[ResultCache] = None) -> Outcome:
  """Probe -> gallery retrieval of sequence-level CAGEs; the baselines'
  results are read from ``cache`` where an earlier evaluation stored them."""
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
    feature_sets, window_votes = score_retrieval(
        entry, encoding_set, probe, gallery, keep, settings,
        exclude_self=False,
        collect_votes=walk_evaluator.collects_votes(
            settings, gallery_name, gallery, probe_name, probe, keep),
        cache=cache)
    if settings.walks:
      outcome.hand_to_walk_level(walk_evaluator.RankedWindows(
          entry, gallery_name, gallery, probe_name, probe, keep,
          feature_sets, window_votes))
  return outcome


def evaluate(inputs: EvaluationInputs) -> Outcome:
  """The evaluator: protocol B."""
  return protocol_b(inputs.encoding_set, inputs.settings, inputs.cache)


EVALUATOR = Evaluator('B', evaluate, headline_rank=2, walk_level=True)
