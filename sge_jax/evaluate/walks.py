"""Windows grouped into walks, and walk-level aggregation (docs/method.md §7.1).

A walk is one recording; its windows are the f-frame sequences cut from it.
Every function here is pure NumPy on per-window arrays.

Aggregations (``config.eval.walk_aggregation`` picks the one listed first;
both are always reported):

* ``vote``: every window casts one vote, for its own window-level decision:
  its top class (classification) or the person of its nearest gallery window
  (retrieval); a window whose top is shared by t classes (people) gives each
  1/t. A walk's score for a class is its *share* of the walk's windows (votes
  / windows, in [0, 1]), so walks of different lengths are on one scale when
  scores are pooled (ROC, nAUC). Classes rank by share first and, only among
  equal shares, by the mean score (an exact lexicographic order, the
  ``tie_break`` of ``WalkScores``); classes equal in both stay tied (ties then
  count against the true class, as everywhere in
  ``sge_jax.evaluate.metrics``). It keeps the window-level matching (like is
  compared with like), and a few outlying windows cannot swing it; it throws
  the margins away and ties often when a walk has few windows.
* ``mean``: a walk's class scores are the mean of its windows' score vectors
  [C]; a walk's feature is the mean of its windows' feature vectors. It keeps
  how sure every window is, so one confident window can outweigh several that
  hesitate. For retrieval the mean of the flattened per-frame CAGEs averages
  the windows' gait phases away, and a walk's mean compared with single
  gallery windows is not like with like.

Vote counts are sums of fractions 1/t; they are rounded to ``VOTE_DECIMALS``
decimals so that equal counts reached in different orders compare equal.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sge_jax.data import recording_ids
from sge_jax.errors import DataError


@dataclasses.dataclass(frozen=True)
class Walks:
  """The walks of a set of windows.

  Attributes:
    recordings: [W] recording id of each walk, in order of first appearance.
    window_walk: [N] index in 0..W-1 of the walk of each window.
    labels: [W] person id of each walk.
    num_windows: [W] windows per walk.
  """
  recordings: np.ndarray
  window_walk: np.ndarray
  labels: np.ndarray
  num_windows: np.ndarray

  @property
  def count(self) -> int:
    return int(self.recordings.size)


def group_windows(recordings: np.ndarray, labels: np.ndarray,
                  where: str = 'the data') -> Walks:
  """Groups windows [N] by recording id.

  Raises:
    DataError: a recording holding windows of two people (the recording ids
      are wrong); ``where`` names the data.
  """
  recordings = np.asarray(recordings, dtype=np.int64)
  labels = np.asarray(labels, dtype=np.int64)
  ids, first, window_walk = np.unique(recordings, return_index=True,
                                      return_inverse=True)
  # Walks in order of first appearance (stored order), not sorted by id.
  order = np.argsort(first, kind='stable')
  rank = np.empty_like(order)
  rank[order] = np.arange(order.size)
  window_walk = rank[window_walk.reshape(-1)]
  walk_labels = labels[first[order]]
  problem = recording_ids.mixed_people_problem(recordings, labels)
  if problem:
    raise DataError(f'{where}: {problem}. Fix the recording ids.')
  return Walks(recordings=ids[order], window_walk=window_walk,
               labels=walk_labels,
               num_windows=np.bincount(window_walk, minlength=order.size))


def select_windows(walks: Walks, walk_mask: np.ndarray) -> np.ndarray:
  """[N] bool: the windows of the walks where ``walk_mask`` [W] is True."""
  return np.asarray(walk_mask, bool)[walks.window_walk]


def windows_per_walk(walks: Walks) -> dict[str, float]:
  """{min, median, max} windows per walk (zeros when there is no walk)."""
  if not walks.count:
    return {'min': 0, 'median': 0, 'max': 0}
  return {'min': int(walks.num_windows.min()),
          'median': float(np.median(walks.num_windows)),
          'max': int(walks.num_windows.max())}


def mean_over_walks(values: np.ndarray, walks: Walks) -> np.ndarray:
  """Per-window rows [N, ...] -> per-walk means [W, ...] (float64)."""
  values = np.asarray(values, dtype=np.float64)
  sums = np.zeros((walks.count,) + values.shape[1:])
  np.add.at(sums, walks.window_walk, values)
  return sums / walks.num_windows.reshape((-1,) + (1,) * (values.ndim - 1))


# Vote counts are rounded to this many decimals before they are compared:
# sums of fractions 1/t reached in different orders can differ in the last
# bits (ten votes of 0.1 sum to 0.9999999999999999), while two different
# counts differ by far more than 1e-9 unless windows tie among thousands of
# classes in several different ways.
VOTE_DECIMALS = 9


@dataclasses.dataclass(frozen=True)
class WalkScores:
  """Class scores of walks and how they rank.

  Attributes:
    scores: [W, C] what pooled metrics (ROC, nAUC) read: the mean of the
      windows' scores ('mean') or the share of the walk's windows voting for
      each class ('vote', in [0, 1]).
    tie_break: [W, C] ranks classes of equal ``scores`` (higher first): the
      mean score for 'vote'; None for 'mean'.
  """
  scores: np.ndarray
  tie_break: np.ndarray | None = None


def vote_counts(choices: np.ndarray, walks: Walks) -> np.ndarray:
  """[W, C] votes from per-window votes ``choices`` [N, C] (rows sum to 1),
  rounded to ``VOTE_DECIMALS``."""
  counts = np.zeros((walks.count, choices.shape[1]))
  np.add.at(counts, walks.window_walk, choices)
  return np.round(counts, VOTE_DECIMALS)


def vote_shares(choices: np.ndarray, walks: Walks) -> np.ndarray:
  """[W, C] share of each walk's windows voting for each column (votes /
  windows, in [0, 1]) from per-window votes ``choices`` [N, C]."""
  return vote_counts(choices, walks) / walks.num_windows[:, None]


def top_choices(window_scores: np.ndarray) -> np.ndarray:
  """[N, C] votes of windows for their top-scoring classes: 1 for a single top
  class, 1/t each for t classes tied at the top."""
  top = window_scores == window_scores.max(axis=1, keepdims=True)
  return top / top.sum(axis=1, keepdims=True)


def aggregate_scores(window_scores: np.ndarray, walks: Walks,
                     aggregation: str) -> WalkScores:
  """Walk class scores from window scores [N, C] by ``aggregation``.

  'mean': the mean of the walk's window scores. 'vote': each window votes for
  its top class (``top_choices``); scores are the vote shares
  (``vote_shares``), ranked by the mean score among equal shares.
  """
  mean = mean_over_walks(window_scores, walks)
  if aggregation == 'mean':
    return WalkScores(mean)
  if aggregation == 'vote':
    return WalkScores(vote_shares(top_choices(np.asarray(window_scores)),
                                  walks), tie_break=mean)
  raise ValueError(f'unknown walk aggregation {aggregation!r}')
