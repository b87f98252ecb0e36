"""The walk-level evaluator (docs/method.md §7.1): what protocols A and B hand
over, scored as walks.

A and B score windows. With walks asked for (``config.eval.level`` 'walk' or
'both') each hands over, per probe split, what its walk level needs: A its
RN's window scores (``ClassifiedWindows``), B its feature sets and the probe
windows' votes from its distance pass (``RankedWindows``), in
``Outcome.window_results``. ``EVALUATOR`` (the interface of every evaluator,
``evaluator.py``) scores them as walks with ``walk_level``: the entries
``A/<split>/walks-<aggregation>``, ``B/<split>/walks-<aggregation>`` and
``B/<split>/walks-<aggregation>-vs-windows``, with notes where a split's walks
cannot be scored (unknown recordings, a recording in both splits or holding
two people, A's released row rules). ``sge_jax.evaluate.stage`` runs it after
the protocols and puts each walk entry after its window entry
(``in_report_order``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from sge_jax.config import EvalSettings
from sge_jax.data import recording_ids
from sge_jax.encode.encodings import SplitEncodings
from sge_jax.evaluate.evaluator import EvaluationInputs, Evaluator, Outcome
from sge_jax.evaluate.result_cache import ResultCache
from sge_jax.evaluate.scoring import retrieval_baseline_description, split_label
from sge_jax.evaluate.walk_level import (classification_entries,
                                         retrieval_entries, walk_problem)


@dataclasses.dataclass(frozen=True)
class ClassifiedWindows:
  """Protocol A's window results on one test split, for its walk level.

  Attributes:
    window_entry: the window-level entry (label, exclusions, the RN's
      selection); the walk entries follow it in results.json.
    train: the train split (the RN's classes); probe: the test split.
    keep: [n] bool over the probe's windows: those of training people.
    scores: [n_kept, C] the RN's scores of the kept windows.
    classes: [C] person id of each score column.
    baseline_scores: baseline -> ([n_kept, C] scores, description), or the
      reason it was skipped.
    rows_copy_windows: the released row rules (R1 extraction_batches, R5
      full_test_batches) copy or drop test windows.
  """
  window_entry: dict[str, Any]
  train: SplitEncodings
  probe: SplitEncodings
  keep: np.ndarray
  scores: np.ndarray
  classes: np.ndarray
  baseline_scores: Mapping[str, Any]
  rows_copy_windows: bool


@dataclasses.dataclass(frozen=True)
class RankedWindows:
  """Protocol B's window results on one probe split, for its walk level.

  Attributes:
    window_entry: the window-level entry (label, exclusions, counts); the
      walk entries follow it in results.json.
    gallery_name, gallery: the gallery split; probe_name, probe: the probe.
    keep: [n] bool over the probe's windows: those of gallery people.
    feature_sets: method -> (probe [n_kept, F], gallery [G, F]) features, or
      the reason it was skipped (``protocol_common.retrieval_feature_sets``).
    window_votes: method -> [n_kept, P] votes collected at window level
      (``WindowVotes``; ``collects_votes`` says when).
  """
  window_entry: dict[str, Any]
  gallery_name: str
  gallery: SplitEncodings
  probe_name: str
  probe: SplitEncodings
  keep: np.ndarray
  feature_sets: Mapping[str, Any]
  window_votes: Mapping[str, np.ndarray]


WindowResults = Union[ClassifiedWindows, RankedWindows]


def collects_votes(settings: EvalSettings, gallery_name: str,
                   gallery: SplitEncodings, probe_name: str,
                   probe: SplitEncodings, keep: np.ndarray) -> bool:
  """Whether protocol B's window level should collect the probe windows'
  votes (``WindowVotes``): their walks will be scored with 'vote'."""
  return bool(settings.walks and 'vote' in settings.aggregations('B')
              and recording_ids.known(probe.recordings[keep])
              and not walk_problem(gallery_name, gallery, probe_name, probe))


def walk_problem_note(outcome: Outcome, label: str, problem: str) -> None:
  """Warns that the walks of ``label`` are not scored, and why."""
  outcome.note((
      f'No walk level for {label}: {problem} (recording field of '
      'encodings.npz). Fix the recording ids, or score windows only with '
      '--config.eval.level=window.'), warn=True)


def _classified_walks(outcome: Outcome, windows: ClassifiedWindows,
                      settings: EvalSettings, dataset: str) -> None:
  """Adds the walk-level entries of one protocol-A test split."""
  window_entry, probe, keep = windows.window_entry, windows.probe, windows.keep
  name = window_entry['probe']
  if not recording_ids.known(probe.recordings[keep]):
    return
  if windows.rows_copy_windows:
    outcome.note((
        f'Protocol A, {window_entry["label"]}: no walk level, since the '
        'released row rules (R1 extraction_batches, R5 full_test_batches) copy '
        'or drop test windows, so the RN scores no longer map one to one onto '
        'the windows of a walk.'))
    return
  problem = walk_problem(window_entry['gallery'], windows.train, name, probe)
  if problem:
    walk_problem_note(outcome, window_entry['label'], problem)
    return
  base = {key: window_entry[key] for key in (
      'protocol', 'probe', 'gallery', 'num_excluded', 'excluded_people',
      'num_classes', 'selection', 'selected_epoch')}
  base['label'] = f'{window_entry["label"]} walks'
  entries, rocs = classification_entries(
      base, name, windows.scores, probe.recordings[keep], probe.labels[keep],
      windows.classes, windows.baseline_scores, settings,
      f'{dataset} split {name}')
  outcome.entries.update(entries)
  outcome.rocs.update(rocs)


def _ranked_walks(outcome: Outcome, windows: RankedWindows,
                  settings: EvalSettings, dataset: str, split_labels,
                  describe, cache: ResultCache) -> None:
  """Adds the walk-level entries of one protocol-B probe split."""
  window_entry, probe, keep = windows.window_entry, windows.probe, windows.keep
  if not recording_ids.known(probe.recordings[keep]):
    return
  problem = walk_problem(windows.gallery_name, windows.gallery,
                         windows.probe_name, probe)
  if problem:
    walk_problem_note(outcome, f'Protocol B, {window_entry["label"]}',
                      problem)
    return
  base = {key: window_entry[key] for key in (
      'protocol', 'probe', 'gallery', 'num_excluded', 'excluded_people',
      'num_classes', 'features')}
  outcome.entries.update(retrieval_entries(
      base, windows.probe_name, split_labels, windows.feature_sets,
      probe.recordings[keep], probe.labels[keep], windows.gallery.labels,
      windows.gallery.recordings, settings,
      f'{dataset} splits {windows.probe_name}/{windows.gallery_name}',
      describe, windows.window_votes, cache))


def score_walks(window_results: Sequence[WindowResults],
                settings: EvalSettings, dataset: str,
                cache: Optional[ResultCache] = None) -> Outcome:
  """The walk-level entries (and ROCs, notes) of the window results that the
  protocols handed over (``Outcome.window_results``), in their order, on
  ``dataset`` (entry labels); the baselines' results are read back from
  ``cache`` where an earlier evaluation stored them."""
  outcome = Outcome()
  cache = cache or ResultCache(None)
  for windows in window_results:
    if isinstance(windows, ClassifiedWindows):
      _classified_walks(outcome, windows, settings, dataset)
    else:
      _ranked_walks(
          outcome, windows, settings, dataset,
          (split_label(dataset, windows.probe_name),
           split_label(dataset, windows.gallery_name)),
          functools.partial(retrieval_baseline_description,
                            distance=settings.distance), cache)
  return outcome


def in_report_order(entries: Mapping[str, Any],
                    walk_entries: Mapping[str, Any]) -> dict[str, Any]:
  """``entries`` with each walk entry right after its window entry
  ('A/test/walks-mean' after 'A/test'), in the order they were made (also
  for ROCs, which are keyed by entry)."""
  ordered = {}
  for key, entry in entries.items():
    ordered[key] = entry
    ordered.update((walk_key, walk_entry)
                   for walk_key, walk_entry in walk_entries.items()
                   if walk_key.startswith(key + '/walks-'))
  ordered.update((key, entry) for key, entry in walk_entries.items()
                 if key not in ordered)
  return ordered


def with_walks(outcome: Outcome, inputs: EvaluationInputs) -> Outcome:
  """A protocol's ``outcome`` with the walk level of the window results it
  handed over: each walk entry (and ROC) after its window entry, the walk
  level's notes and warnings where the protocol handed those windows over,
  as if the protocol had scored the walks itself."""
  if not outcome.window_results:
    return outcome
  entries, rocs, notes, warnings = {}, {}, [], []
  notes_done = warnings_done = 0
  for windows, (notes_at, warnings_at) in zip(outcome.window_results,
                                              outcome.note_marks):
    walks = EVALUATOR.evaluate(dataclasses.replace(inputs,
                                                   window_results=(windows,)))
    entries.update(walks.entries)
    rocs.update(walks.rocs)
    notes += outcome.notes[notes_done:notes_at] + walks.notes
    warnings += outcome.warnings[warnings_done:warnings_at] + walks.warnings
    notes_done, warnings_done = notes_at, warnings_at
  return dataclasses.replace(
      outcome, entries=in_report_order(outcome.entries, entries),
      rocs=in_report_order(outcome.rocs, rocs),
      notes=notes + outcome.notes[notes_done:],
      warnings=warnings + outcome.warnings[warnings_done:],
      window_results=[], note_marks=[])


def evaluate(inputs: EvaluationInputs) -> Outcome:
  """The evaluator: the walk level of ``inputs.window_results``."""
  return score_walks(inputs.window_results, inputs.settings,
                     inputs.encoding_set.metadata.dataset, inputs.cache)


# Its entries belong to protocols A and B (their 'protocol' field), whose
# ranks decide the headline; it never runs as a protocol of its own.
EVALUATOR = Evaluator('walks', evaluate, headline_rank=100)
