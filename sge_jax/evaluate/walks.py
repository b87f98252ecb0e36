"""Windows grouped into walks, and walk-level aggregation (docs/method.md §7.1).

A walk is one recording; its windows are the f-frame sequences cut from it.
Every function here is pure NumPy on per-window arrays.

Aggregations (``config.eval.walk_aggregation`` picks the one listed first;
both are always reported):

* ``vote`` (the default): every window casts one vote, for its own
  window-level decision: its top class (classification) or the person of its
  nearest gallery window (retrieval); a window whose top is shared by t
  classes (people) gives each 1/t. A walk ranks classes by their votes. It
  keeps the window-level matching (like is compared with like), and a few
  outlying windows cannot swing it; it throws the margins away and ties often
  when a walk has few windows. Ties in votes are broken by the mean
  aggregation: ``vote_scores`` adds a fraction in (0, 1) that is monotone in
  the mean score, so equal votes rank by mean score, and only classes equal in
  both votes and mean score stay tied (ties then count against the true class,
  as everywhere in ``sge_jax.evaluate.metrics``).
* ``mean``: a walk's class scores are the mean of its windows' score vectors
  [C]; a walk's feature is the mean of its windows' feature vectors. It keeps
  how sure every window is, so one confident window can outweigh several that
  hesitate. For retrieval the mean of the flattened per-frame CAGEs averages
  the windows' gait phases away, and a walk's mean compared with single
  gallery windows is not like with like; on the demo and GIST it ranks CAGEs
  below the vote in every retrieval table (README, "Walk level").
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


def vote_counts(choices: np.ndarray, walks: Walks) -> np.ndarray:
  """[W, C] votes from per-window votes ``choices`` [N, C] (rows sum to 1)."""
  counts = np.zeros((walks.count, choices.shape[1]))
  np.add.at(counts, walks.window_walk, choices)
  return counts


def top_choices(window_scores: np.ndarray) -> np.ndarray:
  """[N, C] votes of windows for their top-scoring classes: 1 for a single top
  class, 1/t each for t classes tied at the top."""
  top = window_scores == window_scores.max(axis=1, keepdims=True)
  return top / top.sum(axis=1, keepdims=True)


def tie_break_fraction(mean_scores: np.ndarray) -> np.ndarray:
  """[W, C] in (0, 1), strictly increasing in each row's mean scores (equal
  scores stay equal): (s - min + 1) / (max - min + 2)."""
  low = mean_scores.min(axis=1, keepdims=True)
  high = mean_scores.max(axis=1, keepdims=True)
  return (mean_scores - low + 1.0) / (high - low + 2.0)


def vote_scores(window_scores: np.ndarray, walks: Walks) -> np.ndarray:
  """Majority-vote walk scores [W, C] from window scores [N, C].

  Window i votes for the top class of its row (``top_choices``); score =
  votes + ``tie_break_fraction`` of the mean scores, so classes rank by votes,
  then by mean score.
  """
  window_scores = np.asarray(window_scores, dtype=np.float64)
  votes = vote_counts(top_choices(window_scores), walks)
  return votes + tie_break_fraction(mean_over_walks(window_scores, walks))


def aggregate_scores(window_scores: np.ndarray, walks: Walks,
                     aggregation: str) -> np.ndarray:
  """Walk class scores [W, C] by ``aggregation`` ('mean' or 'vote')."""
  if aggregation == 'mean':
    return mean_over_walks(window_scores, walks)
  if aggregation == 'vote':
    return vote_scores(window_scores, walks)
  raise ValueError(f'unknown walk aggregation {aggregation!r}')
