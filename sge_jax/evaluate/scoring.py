"""Scoring helpers shared by the window- and walk-level protocols: metric
dictionaries of score matrices and of retrieval, sequence-level features,
probe-set names. Fractions in [0, 1]."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from sge_jax.errors import ConfigError
from sge_jax.evaluate import metrics

RETRIEVAL_DESCRIPTIONS = {
    'concat': 'flattened f x D frame-level CAGEs (the sequence-level CAGE)',
    'mean': 'mean over the f frames of the frame-level CAGEs',
}
TRAIN_SPLIT = 'train'
# The learned method's name next to the baselines' (ROC curves, feature sets).
CAGES = 'CAGEs'
RANKS = (1, 5, 10)


def split_label(dataset: str, split: str) -> str:
  """Human name of a probe set: 'IAS-A', 'BIWI Walking', else the split name."""
  if dataset.upper().startswith('IAS') and split in ('A', 'B'):
    return f'IAS-{split}'
  if dataset.upper().startswith('BIWI') and split in ('Walking', 'Still'):
    return f'BIWI {split}'
  return split


def retrieval_baseline_description(name: str, distance: str) -> str:
  """What a retrieval baseline's entry says it computed."""
  return (f'{name}: features z-scored with gallery statistics, ranked by '
          f'{distance} distance')


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


def rank_values(curve: np.ndarray) -> dict[str, Optional[float]]:
  """rank1/rank5/rank10 from a CMC curve (None where the curve is shorter)."""
  return {f'rank{k}': float(curve[k - 1]) if k <= curve.size else None
          for k in RANKS}


def classification_metrics(scores: np.ndarray, columns: np.ndarray,
                           tie_break: Optional[np.ndarray] = None
                           ) -> dict[str, Any]:
  """Rank-k, CMC and nAUC of a score matrix [N, C] against columns [N].

  ``tie_break`` [N, C] (optional) ranks classes of equal score for Rank-k and
  the CMC (``metrics.true_class_ranks``); nAUC pools the scores alone.
  """
  curve = metrics.cmc(scores, columns, tie_break)
  values = rank_values(curve)
  values['nauc'] = (metrics.nauc(scores, columns) if scores.shape[1] >= 2
                    else None)
  values['cmc'] = curve.tolist()
  return values


def confusion_record(scores: np.ndarray, columns: np.ndarray,
                     classes: np.ndarray) -> dict[str, list]:
  """The ``confusion_matrix`` field of a protocol-A entry: ``classes`` [C]
  (person ids, the class order) and ``counts`` [C][C] (row = true person,
  column = predicted one, ``metrics.top_predictions``: its trace over the rows
  is Rank-1) of a score matrix [N, C] against columns [N]."""
  predicted = metrics.top_predictions(scores, columns)
  return {'classes': np.asarray(classes).tolist(),
          'counts': metrics.confusion_matrix(predicted, columns,
                                             len(classes)).tolist()}


def retrieval_metrics(query, query_labels, gallery, gallery_labels, *,
                      distance: str, exclude_self: bool, max_rank: int,
                      on_block=None, progress=None) -> dict[str, Any]:
  """Rank-k, CMC (up to max_rank) and mAP of probe -> gallery retrieval, from
  one pass over the distances (``metrics.retrieval_cmc_and_map``, which also
  takes ``on_block`` and ``progress``)."""
  candidates = gallery.shape[0] - int(exclude_self)
  result, average_precision = metrics.retrieval_cmc_and_map(
      query, query_labels, gallery, gallery_labels, metric=distance,
      max_rank=min(max(max_rank, max(RANKS)), candidates),
      exclude_self=exclude_self, on_block=on_block, progress=progress)
  return _retrieval_values(result, average_precision, max_rank)


def ranked_retrieval_metrics(distances: np.ndarray, query_labels,
                             gallery_labels, *, max_rank: int,
                             priority: Optional[np.ndarray] = None
                             ) -> dict[str, Any]:
  """``retrieval_metrics`` from a distance matrix [Q, G] (and an optional
  priority [Q, G] ranked before distance, ``metrics.ranked_retrieval``)."""
  result, average_precision = metrics.ranked_retrieval(
      distances, query_labels, gallery_labels,
      max_rank=min(max(max_rank, max(RANKS)), distances.shape[1]),
      priority=priority)
  return _retrieval_values(result, average_precision, max_rank)


def _retrieval_values(result: metrics.RetrievalCMC,
                      average_precision: metrics.MeanAveragePrecision,
                      max_rank: int) -> dict[str, Any]:
  values = rank_values(result.cmc)
  values['map'] = (average_precision.value
                   if np.isfinite(average_precision.value) else None)
  values['cmc'] = result.cmc[:max_rank].tolist()
  values['num_unmatchable'] = result.num_unmatchable
  return values


def keep_known_people(labels: np.ndarray, known: np.ndarray
                       ) -> tuple[np.ndarray, list[int]]:
  """Boolean mask of labels in ``known`` and the sorted unknown person ids."""
  keep = np.isin(labels, known)
  return keep, sorted(int(p) for p in np.unique(labels[~keep]))
