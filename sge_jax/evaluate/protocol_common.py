"""What several protocols share: the at-least-two-people check and
sequence-level retrieval with its baselines (protocols B and CME).

Sequence-level representation for retrieval, ``config.eval.
retrieval_features``: ``concat`` (default) is the flattened [f * D] CAGE, the
"sequence-level CAGE" that docs/method.md §7 matches in CME and that the SC
manner feeds the RN; with the Euclidean distance it compares the two sequences
frame by frame, which keeps the within-sequence dynamics the encoder was
trained to capture. ``mean`` ([D], the mean over the f frames, the temporal
pooling of the successor papers) is order-free and smaller. One choice is used
for every retrieval in a run and reported in results.json and report.md.

Retrieval baselines (``config.eval.baselines``): every ``baselines.BASELINES``
feature on the raw input sequences ranks the same gallery, z-scored with the
gallery's statistics. A baseline that cannot run on the data (no bones or
joint names) is reported as skipped with the reason.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from sge_jax.config import EvalSettings
from sge_jax.encode.encodings import EncodingSet, SplitEncodings
from sge_jax.errors import DataError
from sge_jax.evaluate import baselines as baselines_lib
from sge_jax.evaluate import walk_level
from sge_jax.evaluate.evaluator import Outcome
from sge_jax.evaluate.result_cache import ResultCache
from sge_jax.evaluate.scoring import (CAGES, retrieval_baseline_description,
                                      retrieval_metrics, sequence_features)
from sge_jax.progress import Progress

MIN_CLASSES = 2


def require_classes(people: np.ndarray, what: str, dataset: str) -> None:
  """Re-identification needs at least two people to tell apart."""
  if np.unique(people).size < MIN_CLASSES:
    raise DataError(
        f'{dataset}: {what} holds {np.unique(people).size} person; telling '
        f'people apart needs at least {MIN_CLASSES} (a score over one class '
        'is 100 % whatever the encodings). Use data with more people.')


# ----------------------------------------------------------------------------
# Sequence-level retrieval (B and CME).


def _baseline_features(name: str, sequences: np.ndarray,
                       encoding_set: EncodingSet) -> np.ndarray:
  meta = encoding_set.metadata
  return baselines_lib.BASELINES[name](sequences, meta.bones,
                                       meta.joint_names).features


def retrieval_feature_sets(encoding_set: EncodingSet,
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


def retrieval_counts(outcome: Outcome, label: str, probe: SplitEncodings,
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
                      exclude_self: bool, task: str, collect_votes: bool,
                      cache: ResultCache
                      ) -> tuple[dict, dict[str, np.ndarray]]:
  """Window-level retrieval metrics of CAGEs, with the baselines under
  ``baselines`` (``retrieval_feature_sets``); ``task`` names the retrieval
  in progress lines. A baseline's metrics and votes are read from ``cache``
  where an earlier evaluation stored them.

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
      on_block = walk_level.WindowVotes(probe_labels.size, gallery_labels)
    values = retrieval_metrics(
        probe_features, probe_labels, gallery_features, gallery_labels,
        distance=settings.distance, exclude_self=exclude_self,
        max_rank=settings.cmc_max_rank, on_block=on_block,
        progress=Progress(f'{task}, {name}', probe_labels.size, 'queries'))
    return values, (on_block.votes if collect_votes else None)

  def score_baseline(name):
    probe_features, gallery_features = feature_sets[name]
    return cache.get(
        'retrieval_baseline',
        (name, probe_features, probe_labels, gallery_features, gallery_labels,
         settings.distance, exclude_self, settings.cmc_max_rank,
         collect_votes),
        lambda: score(name))

  def keep_votes(name, scored):
    values, window_votes = scored
    if window_votes is not None:
      votes[name] = window_votes
    return values

  scores = keep_votes(CAGES, score(CAGES))
  if settings.baselines:
    scores['baselines'] = {
        name: ({'skipped': features} if isinstance(features, str) else
               {**keep_votes(name, score_baseline(name)), 'description':
                retrieval_baseline_description(name, settings.distance)})
        for name, features in feature_sets.items() if name != CAGES}
  return scores, votes


def score_retrieval(entry: dict[str, Any], encoding_set: EncodingSet,
                    probe: SplitEncodings, gallery: SplitEncodings,
                    keep: np.ndarray, settings: EvalSettings,
                    exclude_self: bool, collect_votes: bool = False,
                    cache: Optional[ResultCache] = None
                    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  """Adds the window-level retrieval metrics of the kept probe sequences to
  ``entry``; returns the feature sets they came from and the probe windows'
  votes (``_retrieval_scores``), for the walk level. The baselines' results
  are read from ``cache`` where an earlier evaluation stored them."""
  feature_sets = retrieval_feature_sets(
      encoding_set, probe.sequences[keep], probe.encodings[keep], gallery,
      settings, exclude_self=exclude_self)
  scores, votes = _retrieval_scores(
      feature_sets, probe.labels[keep], gallery.labels, settings,
      exclude_self=exclude_self,
      task=(entry['label'] if entry['protocol'] == 'CME'
            else f'protocol {entry["protocol"]} {entry["label"]}'),
      collect_votes=collect_votes, cache=cache or ResultCache(None))
  entry.update(scores)
  return feature_sets, votes
