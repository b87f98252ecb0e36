"""Walk-level re-identification entries (docs/method.md §7.1).

Every window-level protocol entry scores f-frame windows. Here a test walk (one
recording, ``sge_jax.data.recording_ids``) is the unit, with all its windows as
evidence, aggregated as ``sge_jax.evaluate.walks`` describes (mean, vote):

* **A**: a walk's class scores aggregate its windows' RN scores (the same RN,
  the same selected epoch as the window entry); Rank-k, CMC and nAUC over walks.
* **B**: a walk's feature is the mean of its windows' sequence-level CAGEs,
  ranked against gallery *walks* (each the mean of its windows) and, as a
  second entry, against gallery *windows*; with ``vote`` every probe window
  votes for the person of its nearest gallery window (the window-level
  decision of protocol B; split among the people of equally near ones), and
  the gallery walks (windows) are ranked by their person's votes, then by
  distance to the walk's mean feature. Rank-k, CMC and mAP over walks. The
  votes come from the window-level distances of protocol B (``WindowVotes``),
  not from a second pass over them.

The baselines are aggregated the same way from their own window-level scores
(A) or z-scored features (B). Test walks with fewer than
``eval.min_walk_windows`` windows are left out and counted; walks of people the
RN (or the gallery) does not know are excluded as at window level; when a
recording lies in both the gallery (train) and the probe split, or holds two
people, the walk level of that split is skipped with a warning
(``walk_problem``). Entry keys:
``A/<split>/walks-<aggregation>``, ``B/<split>/walks-<aggregation>`` and
``B/<split>/walks-<aggregation>-vs-windows``.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np

from sge_jax.config import EvalSettings
from sge_jax.data import recording_ids
from sge_jax.evaluate import metrics
from sge_jax.evaluate import walks as walks_lib
from sge_jax.evaluate.distances import CACHE_ROWS
from sge_jax.evaluate.report import is_walk_entry  # noqa: F401 (re-exported)
from sge_jax.evaluate.result_cache import ResultCache
from sge_jax.evaluate.scoring import (CAGES, classification_metrics,
                                      ranked_retrieval_metrics)
from sge_jax.progress import Progress

GALLERY_LEVELS = ('walk', 'window')


def entry_key(protocol: str, probe: str, aggregation: str,
              gallery_level: str = 'walk') -> str:
  """'A/test/walks-mean', 'B/test/walks-vote-vs-windows', ..."""
  key = f'{protocol}/{probe}/walks-{aggregation}'
  return key + ('-vs-windows' if gallery_level == 'window' else '')


def walk_problem(gallery_name: str, gallery: Any, probe_name: str,
                 probe: Any) -> Optional[str]:
  """Why the walks of ``probe`` cannot be scored against ``gallery`` (both
  SplitEncodings: a recording in both splits, or one holding two people), or
  None."""
  return (recording_ids.straddling_problem(
      {gallery_name: gallery.recordings, probe_name: probe.recordings},
      train=gallery_name)
          or recording_ids.mixed_people_problem(probe.recordings, probe.labels)
          or recording_ids.mixed_people_problem(gallery.recordings,
                                                gallery.labels))


class ProbeWalks:
  """The test walks of one probe split that are scored.

  Attributes:
    walks: the scored walks (at least ``min_walk_windows`` windows each).
    windows: [n] bool over the given windows: True for a window of a scored walk.
    counts: the entry's walk bookkeeping (num_walks, num_sequences = windows
      scored, windows_per_walk {min, median, max}, min_walk_windows,
      num_short_walks, num_short_walk_windows).
  """

  def __init__(self, recordings: np.ndarray, labels: np.ndarray,
               min_windows: int, where: str):
    every_walk = walks_lib.group_windows(recordings, labels, where)
    long_enough = every_walk.num_windows >= min_windows
    self.windows = walks_lib.select_windows(every_walk, long_enough)
    self.walks = walks_lib.group_windows(recordings[self.windows],
                                         labels[self.windows], where)
    self.counts = {
        'level': 'walk',
        'num_walks': self.walks.count,
        'num_sequences': int(np.count_nonzero(self.windows)),
        'windows_per_walk': walks_lib.windows_per_walk(self.walks),
        'min_walk_windows': int(min_windows),
        'num_short_walks': int(np.count_nonzero(~long_enough)),
        'num_short_walk_windows': int(
            every_walk.num_windows[~long_enough].sum()),
    }


def _skipped(probe_walks: ProbeWalks) -> Optional[str]:
  if probe_walks.walks.count:
    return None
  return (f'no test walk has at least {probe_walks.counts["min_walk_windows"]} '
          'windows (config.eval.min_walk_windows)')


# ----------------------------------------------------------------------------
# Protocol A.


def classification_entries(base: dict[str, Any], probe: str,
                           window_scores: np.ndarray, recordings: np.ndarray,
                           labels: np.ndarray, classes: np.ndarray,
                           baseline_scores: Mapping[str, Any],
                           settings: EvalSettings, where: str
                           ) -> tuple[dict[str, dict], dict[str, dict]]:
  """Walk-level protocol-A entries, one per aggregation, and their ROCs.

  Args:
    base: fields every entry repeats (protocol, probe, gallery, label, ...).
    probe: the test split's name (entry keys).
    window_scores: [n, C] RN scores of the test windows of known people.
    recordings: [n] their recording ids; labels: [n] their person ids.
    classes: [C] person id of each score column.
    baseline_scores: baseline name -> [n, C] window scores, or the reason it
      was skipped (str); each entry's value also has 'description'.
    settings: ``min_walk_windows`` and the aggregations.
    where: names the data in errors.

  Returns:
    (entries {key: entry}, rocs {key: {method: (fpr, tpr)}}).
  """
  probe_walks = ProbeWalks(recordings, labels, settings.min_walk_windows, where)
  skipped = _skipped(probe_walks)
  columns = metrics.class_indices(probe_walks.walks.labels, classes)
  entries, rocs = {}, {}
  for aggregation in settings.aggregations('A'):
    key = entry_key('A', probe, aggregation)
    entry = {**base, 'aggregation': aggregation, **probe_walks.counts,
             'num_people': int(np.unique(probe_walks.walks.labels).size)}
    entries[key] = entry
    if skipped:
      entry['skipped'] = skipped
      continue

    def walk_scores(scores):
      return walks_lib.aggregate_scores(scores[probe_walks.windows],
                                        probe_walks.walks, aggregation)

    scores = walk_scores(window_scores)
    entry.update(classification_metrics(scores.scores, columns,
                                        scores.tie_break))
    rocs[key] = {}
    if classes.size >= 2:
      rocs[key][CAGES] = metrics.micro_roc(scores.scores, columns)
    if baseline_scores:
      entry['baselines'] = {}
    for name, value in baseline_scores.items():
      if isinstance(value, str):
        entry['baselines'][name] = {'skipped': value}
        continue
      baseline_window_scores, description = value
      aggregated = walk_scores(baseline_window_scores)
      entry['baselines'][name] = {
          **classification_metrics(aggregated.scores, columns,
                                   aggregated.tie_break),
          'description': f'{description}; walk = {aggregation} of its windows'}
      if classes.size >= 2:
        rocs[key][name] = metrics.micro_roc(aggregated.scores, columns)
  return entries, rocs


# ----------------------------------------------------------------------------
# Protocol B.


def _walk_retrieval(distances: np.ndarray, probe_walks: walks_lib.Walks,
                    item_labels: np.ndarray, window_votes: Optional[np.ndarray],
                    people: np.ndarray, settings: EvalSettings
                    ) -> dict[str, Any]:
  """Retrieval metrics of probe walks against gallery items (walks or windows).

  Args:
    distances: [W, G'] from each walk's mean feature to each gallery item
      (a walk mean or a window); item_labels: [G'] their people.
    probe_walks: the scored probe walks.
    window_votes: None ('mean': items ranked by distance), or [n, P] each
      probe window's vote for the people ``people`` [P] ('vote': items ranked
      by their person's vote share first; ``nearest_people_votes``).
  """
  priority = None
  if window_votes is not None:
    shares = walks_lib.vote_shares(window_votes, probe_walks)
    if not np.isnan(shares).any():
      # Ranks of the shares order the items as the shares do, and rank faster.
      shares = np.unique(shares, return_inverse=True)[1].reshape(shares.shape)
    priority = shares[:, np.searchsorted(people, item_labels)]
  return ranked_retrieval_metrics(distances, probe_walks.labels, item_labels,
                                  max_rank=settings.cmc_max_rank,
                                  priority=priority)


def nearest_people_votes(distances: np.ndarray, columns: np.ndarray,
                         num_people: int) -> np.ndarray:
  """[b, P] votes of b probe windows for the person (column 0..P-1 of each
  gallery item, ``columns`` [G]) of their nearest gallery item, from their
  distances [b, G]; 1/t each when items of t people are equally near."""
  rows = np.arange(distances.shape[0])
  first = np.argmin(distances, axis=1)          # a NaN row: its first NaN
  nearest = distances[rows, first]
  equally_near = np.count_nonzero(distances == nearest[:, None], axis=1)
  choices = np.zeros((rows.size, num_people))
  single = equally_near == 1
  choices[rows[single], columns[first[single]]] = 1.0
  # Ties are rare: only their rows are searched. A row with a NaN distance
  # (equally_near = 0) gets no vote, and NaN shares, as a minimum would.
  tied = np.flatnonzero(equally_near > 1)
  tied_rows, items = np.nonzero(distances[tied] == nearest[tied, None])
  choices[tied[tied_rows], columns[items]] = 1.0
  return choices / choices.sum(axis=1, keepdims=True)


class WindowVotes:
  """Every probe window's vote, collected from the window-level distance
  blocks of protocol B (an ``on_block`` hook of
  ``metrics.retrieval_cmc_and_map``), so the walk level computes no distance
  of a probe window again.

  Attributes:
    votes: [n, P] each probe window's vote for the gallery's people
      (``np.unique(gallery_labels)``), ``nearest_people_votes``.
  """

  def __init__(self, num_windows: int, gallery_labels: np.ndarray):
    people, self._columns = np.unique(gallery_labels, return_inverse=True)
    self.votes = np.full((num_windows, people.size), np.nan)

  def __call__(self, start: int, distances: np.ndarray) -> None:
    self.votes[start:start + distances.shape[0]] = nearest_people_votes(
        distances, self._columns, self.votes.shape[1])


def _nearest_people(windows: np.ndarray, gallery: np.ndarray,
                    columns: np.ndarray, num_people: int,
                    distance: str) -> np.ndarray:
  """[n, P] votes of windows [n, F] for the person (column 0..P-1 of each
  gallery item) of their nearest gallery item (``nearest_people_votes``)."""
  choices = np.empty((windows.shape[0], num_people))
  for start, block in metrics.iter_pairwise_distances(
      windows, gallery, distance, chunk_rows=CACHE_ROWS):
    choices[start:start + block.shape[0]] = nearest_people_votes(
        block, columns, num_people)
  return choices


def retrieval_entries(base: dict[str, Any], probe: str,
                      split_labels: tuple[str, str],
                      feature_sets: Mapping[str, Any], recordings: np.ndarray,
                      labels: np.ndarray, gallery_labels: np.ndarray,
                      gallery_recordings: np.ndarray, settings: EvalSettings,
                      where: str, describe,
                      window_votes: Optional[Mapping[str, np.ndarray]] = None,
                      cache: Optional[ResultCache] = None
                      ) -> dict[str, dict]:
  """Walk-level protocol-B entries: per gallery level (walks, windows) and
  aggregation.

  Args:
    base: fields every entry repeats (protocol, probe, gallery, ...).
    probe: the probe split's name (entry keys).
    split_labels: human names of the probe and gallery sets (entry labels).
    feature_sets: method -> (probe window features [n, F], gallery window
      features [G, F]) or the reason it was skipped; ``CAGES`` first.
    recordings, labels: [n] recording and person ids of the probe windows.
    gallery_labels, gallery_recordings: [G] of the gallery windows; gallery
      walks are compared only when every gallery recording is known.
    settings: distance, CMC length, ``min_walk_windows``, aggregations.
    where: names the data in errors.
    describe: baseline name -> its description.
    window_votes: method -> [n, P] the probe windows' votes (``WindowVotes``)
      where the window level collected them; the others are computed here.
    cache: where the baselines' entries of an earlier evaluation of the same
      data may be read back, and are stored (``result_cache``).
  """
  cache = cache or ResultCache(None)
  probe_walks = ProbeWalks(recordings, labels, settings.min_walk_windows, where)
  skipped = _skipped(probe_walks)
  gallery_walks = (walks_lib.group_windows(gallery_recordings, gallery_labels,
                                           where)
                   if recording_ids.known(gallery_recordings) else None)
  # Votes are the window-level decisions: each probe window's nearest gallery
  # window, whatever the gallery items ranked are (collected by the window
  # level where it ran). Features, distances and votes are computed once per
  # method and reused by both aggregations.
  people, columns = np.unique(gallery_labels, return_inverse=True)
  computed: dict[tuple[str, str], Any] = {}
  window_votes = window_votes or {}

  def window_votes_of(name, probe_windows, gallery_features):
    if name in window_votes:
      return window_votes[name][probe_walks.windows]
    return _nearest_people(probe_windows, gallery_features, columns,
                           people.size, settings.distance)

  methods = sum(not isinstance(value, str) for value in feature_sets.values())
  progress = Progress(
      f'protocol B {split_labels[0]} walks -> {split_labels[1]}',
      0 if skipped else methods * len(GALLERY_LEVELS)
      * len(settings.aggregations('B')), 'rankings')

  def cached(key, make):
    if key not in computed:
      computed[key] = make()
    return computed[key]

  entries, scored = {}, []
  for gallery_level in GALLERY_LEVELS:
    for aggregation in settings.aggregations('B'):
      entry = {**base, 'aggregation': aggregation,
               'gallery_level': gallery_level, **probe_walks.counts,
               'num_people': int(np.unique(probe_walks.walks.labels).size)}
      entries[entry_key('B', probe, aggregation, gallery_level)] = entry
      entry['label'] = (f'{split_labels[0]} walks -> {split_labels[1]} '
                        f'{gallery_level}s')
      entry['num_gallery'] = (
          int(gallery_labels.size) if gallery_level == 'window'
          else gallery_walks.count if gallery_walks else 0)
      if skipped:
        entry['skipped'] = skipped
      elif gallery_level == 'walk' and gallery_walks is None:
        entry['skipped'] = ("the gallery's recordings are unknown, so it has "
                            'no walks')
      else:
        scored.append((entry, gallery_level, aggregation))

  def score(name, gallery_level, aggregation):
    probe_features, gallery_features = feature_sets[name]
    probe_windows = cached((name, 'probe windows'),
                           lambda: probe_features[probe_walks.windows])
    if gallery_level == 'walk':
      items = cached((name, 'gallery walks'), lambda: walks_lib.
                     mean_over_walks(gallery_features, gallery_walks))
      item_labels = gallery_walks.labels
    else:
      items, item_labels = gallery_features, gallery_labels
    walk_means = cached((name, 'probe walks'), lambda: walks_lib.
                        mean_over_walks(probe_windows, probe_walks.walks))
    distances = cached((name, gallery_level), lambda: (
        metrics.pairwise_distances(walk_means, items, settings.distance)))
    votes = (cached((name, 'votes'), lambda: window_votes_of(
        name, probe_windows, gallery_features))
             if aggregation == 'vote' else None)
    scores = _walk_retrieval(distances, probe_walks.walks, item_labels,
                             votes, people, settings)
    progress.advance()
    return scores

  for entry, gallery_level, aggregation in scored:
    entry.update(score(CAGES, gallery_level, aggregation))
  baselines = {name: value for name, value in feature_sets.items()
               if name != CAGES}
  if not (baselines and scored):
    return entries

  def score_baselines():
    """{'<gallery level>/<aggregation>': {baseline: its entry}}."""
    return {f'{gallery_level}/{aggregation}': {
        name: ({'skipped': value} if isinstance(value, str) else
               {**score(name, gallery_level, aggregation), 'description':
                f'{describe(name)}; walk = {aggregation} of its windows'})
        for name, value in baselines.items()}
            for _, gallery_level, aggregation in scored}

  # The baselines depend on the data alone: an earlier evaluation's results
  # are read back (``result_cache``).
  baseline_entries = cache.get(
      'walk_retrieval_baselines',
      (baselines, {name: window_votes[name] for name in baselines
                   if name in window_votes},
       recordings, labels, gallery_labels, gallery_recordings,
       settings.distance, settings.cmc_max_rank, settings.min_walk_windows,
       [(gallery_level, aggregation) for _, gallery_level, aggregation
        in scored], [describe(name) for name in baselines]),
      score_baselines)
  for entry, gallery_level, aggregation in scored:
    entry['baselines'] = baseline_entries[f'{gallery_level}/{aggregation}']
  return entries
