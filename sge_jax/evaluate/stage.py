"""The evaluate stage: every configured protocol on the exported CAGEs, then
``results.json``, ``report.md`` and the plots.

Entry: ``evaluate_run(run_settings, encoding_set, workdir)``;
``aggregate_seed_results`` combines the runs of a multi-seed job. The
protocols are evaluators (``evaluator.py``) registered in ``protocols.py``;
this module runs the planned ones, then the walk-level evaluator
(``walk_evaluator.py``) on the window results they hand over, and assembles their
outcomes.
"""

from __future__ import annotations

import pathlib
import time
from typing import Any, Optional, Sequence

import numpy as np

from sge_jax.config.quirks import procedure_record, rn_settings_for
from sge_jax.config.settings import EvalSettings, RunSettings
from sge_jax.encode.encodings import EncodingSet
from sge_jax.errors import DataError
from sge_jax.evaluate import baselines as baselines_lib
from sge_jax.data import recording_ids
from sge_jax.data.synthetic import SOURCE_PREFIX as SYNTHETIC_SOURCE_PREFIX
from sge_jax.evaluate import (protocols, recognition, result_cache,
                              run_record, saved_rn, scoring, walk_evaluator,
                              walk_level)
from sge_jax.evaluate.evaluator import EvaluationInputs
from sge_jax.evaluate import results as results_lib
from sge_jax.evaluate.released_rows import ReleasedRows
from sge_jax.released import require_equal_person_sets


def is_synthetic(encoding_set: EncodingSet) -> bool:
  """True for encodings of the built-in procedural walkers (not real
  recordings), read off the encodings scored, not the config."""
  meta = encoding_set.metadata
  if meta.data_source:
    return meta.data_source.startswith(SYNTHETIC_SOURCE_PREFIX)
  return meta.dataset == 'demo'     # files written before data_source existed


def _headline_key(entries: dict[str, dict[str, Any]],
                  plan: Sequence[str]) -> Optional[str]:
  """The entry whose numbers go to the top level of results.json.

  The protocol of the lowest ``headline_rank`` first (A before CME before B);
  within a protocol the 'probe' split if there is one, else the first split in
  report order. Skipped entries never qualify; walk-level entries only when
  there is no window-level one (eval.level=walk).
  """
  scored = [key for key, entry in entries.items() if 'rank1' in entry]
  windows = [key for key in scored
             if not walk_level.is_walk_entry(entries[key])]
  # Window entries when there are any (the paper's numbers); else the walk
  # entries, against gallery walks before gallery windows (the configured
  # aggregation comes first in each).
  scored = windows or sorted(
      scored, key=lambda key: entries[key].get('gallery_level') == 'window')
  for protocol in sorted(
      plan, key=lambda name: protocols.EVALUATORS[name].headline_rank):
    candidates = [k for k in scored if entries[k]['protocol'] == protocol]
    for key in candidates:
      if entries[key]['probe'] == 'probe':
        return key
    if candidates:
      return candidates[0]
  return None


def _entries_of_level(entries: dict[str, dict[str, Any]],
                      rocs: dict[str, Any], settings: EvalSettings
                      ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
  """Drops the window-level entries (and their ROCs) for eval.level='walk'."""
  if settings.windows:
    return entries, rocs
  kept = {key: entry for key, entry in entries.items()
          if walk_level.is_walk_entry(entry)}
  return kept, {key: roc for key, roc in rocs.items() if key in kept}


def _walks_record(encoding_set: EncodingSet, settings: EvalSettings,
                  plan: Sequence[str], entries: dict[str, dict[str, Any]],
                  notes: list[str]) -> dict[str, Any]:
  """The ``walks`` section of results.json; notes what has no walk level.

  Raises:
    DataError: eval.level='walk' and no walk-level entry was scored.
  """
  recordings = {name: encoding_set.select(name).recordings
                for name in encoding_set.split_names}
  walk_entries = [e for e in entries.values() if walk_level.is_walk_entry(e)]
  walked = {entry['probe'] for entry in walk_entries}
  missing = [name for name in recording_ids.splits_without_recordings(
      recordings) if name not in walked]
  if settings.walks:
    for name in missing:
      notes.append(f'No walk level for split {name}: '
                   f'{recording_ids.unknown_problem(recordings[name])}; window '
                   'level only.')
  walking = [name for name in plan if protocols.EVALUATORS[name].walk_level]
  if settings.walks:
    notes.extend(f'{name} is scored at window level only.'
                 for name in plan if name not in walking)
  if (settings.level == 'walk'
      and not any('rank1' in entry for entry in walk_entries)):
    reasons = [e['skipped'] for e in walk_entries if 'skipped' in e] + [
        note for note in notes if note.startswith('No walk level')]
    with_walks = [name for name, evaluator in protocols.EVALUATORS.items()
                  if evaluator.walk_level]
    raise DataError(
        "config.eval.level='walk' but no walk could be scored"
        + (f' ({"; ".join(sorted(set(reasons)))})' if reasons else
           f' (walk level covers protocols {" and ".join(with_walks)}, on '
           'test splits whose recordings are known)')
        + '. Use --config.eval.level=both to see the window level too.')
  return {
      'level': settings.level,
      'aggregations': ({name: list(settings.aggregations(name))
                        for name in walking} if settings.walks else {}),
      'min_walk_windows': settings.min_walk_windows,
      'num_walks': {name: (int(np.unique(ids).size)
                           if recording_ids.known(ids) else None)
                    for name, ids in recordings.items()},
  }


def evaluate_run(run: RunSettings, encoding_set: EncodingSet,
                 workdir: str | pathlib.Path,
                 training_warnings: Sequence[str] = (),
                 saved_rn_path: Optional[pathlib.Path] = None,
                 run_dir: Optional[pathlib.Path] = None) -> dict[str, Any]:
  """Runs the configured protocols and writes results.json, report.md, plots.

  Raises DataError when no protocol can score anything (the reasons are the
  warnings); a protocol that is skipped while another scores is a warning in
  results.json and in the console summary.

  Args:
    run: the run's settings (``seed``, ``data``, ``quirks``, ``rn``, ``eval``
      are read).
    encoding_set: the exported CAGEs of every split.
    workdir: where the result files go (created if missing).
    training_warnings: warnings of the train stage (e.g. divergence), repeated
      in results.json.
    saved_rn_path: an ``rn.npz`` to re-score from when it fits (default: the
      one in ``workdir``). An RN trained here is saved to ``workdir/rn.npz``.
    run_dir: the directory of the run evaluated, whose metrics.jsonl holds
      its stage timings (default ``workdir``; another one: a re-evaluation).

  Returns:
    The results dict, as written to ``results.json`` (schema in
    ``sge_jax.evaluate.results``).
  """
  started = time.monotonic()
  workdir = pathlib.Path(workdir)
  run_dir = workdir if run_dir is None else pathlib.Path(run_dir)
  meta = encoding_set.metadata
  settings = run.eval
  # What depends on the dataset scored: R6's tie rule, the quirks that act.
  rn_settings = rn_settings_for(run, meta.dataset)
  procedure = procedure_record(run, meta.dataset)
  notes: list[str] = []
  plan = protocols.protocol_plan(encoding_set, settings, notes)

  rows = ReleasedRows.from_settings(run, meta.pretext)
  if run.quirks.equal_id_counts:
    require_equal_person_sets({name: encoding_set.select(name).labels
                               for name in encoding_set.split_names})
  cache = result_cache.cache_for(run_dir)
  inputs = EvaluationInputs(
      run=run, encoding_set=encoding_set, rn_settings=rn_settings, rows=rows,
      saved_rn_path=saved_rn_path or workdir / saved_rn.RN_FILE, cache=cache)
  # Each protocol, then the walk level of the windows it handed over.
  outcomes = [walk_evaluator.with_walks(
      protocols.EVALUATORS[name].evaluate(inputs), inputs) for name in plan]
  cache.log_summary()

  entries, rocs, rn_summary = {}, {}, None
  warnings = list(training_warnings)
  for outcome in outcomes:
    entries.update(outcome.entries)
    rocs.update(outcome.rocs)
    notes.extend(outcome.notes)
    warnings.extend(outcome.warnings)
    rn_summary = outcome.rn or rn_summary
  entries, rocs = _entries_of_level(entries, rocs, settings)
  walks_record = _walks_record(encoding_set, settings, plan, entries, notes)
  headline = _headline_key(entries, plan)
  if headline is None:
    raise DataError('Nothing could be evaluated: ' + ' '.join(
        warnings or ['no protocol produced a score.']))
  head = entries.get(headline, {})
  synthetic = is_synthetic(encoding_set)
  if synthetic:
    notes.insert(0, 'Synthetic data (procedural demo walkers), not a '
                 'published benchmark: the numbers only show that the '
                 'pipeline runs.')

  results = {
      'schema': results_lib.RESULTS_SCHEMA,
      'dataset': meta.dataset,
      'synthetic': synthetic,
      'seed': run.seed,
      'protocols': list(plan),
      'selection': rn_settings.selection,
      'selection_label': recognition.selection_label(rn_settings.selection,
                                                     rn_settings.test_ties),
      'procedure': procedure,
      'headline': headline,
      'protocol': head.get('protocol'),
      'rank1': head.get('rank1'),
      'nauc': head.get('nauc'),
      'map': head.get('map'),
      'cmc': head.get('cmc'),
      'encodings': {
          'length': meta.length, 'pretext': meta.pretext,
          'attention': meta.attention, 'hidden': meta.hidden,
          'feature_dim': int(encoding_set.encodings.shape[-1]),
          'model_names': list(meta.model_names),
          'encoder_seed': meta.seed, 'config_hash': meta.config_hash,
          'encoder_workdir': run.encoder_workdir or None,
          'sge_jax_version': meta.sge_jax_version,
          'procedure': meta.procedure, 'quirks_on': list(meta.quirks),
          'num_sequences': {name: int(np.count_nonzero(
              encoding_set.split == name)) for name in encoding_set.split_names},
      },
      'rn': rn_summary,
      'retrieval': {
          'features': settings.retrieval_features,
          'description': scoring.RETRIEVAL_DESCRIPTIONS[settings.retrieval_features],
          'gallery_rule': ('probe -> gallery when both splits exist, else '
                           'each test split -> train split'),
      },
      'distance': settings.distance,
      'baselines': {'enabled': settings.baselines, 'k': settings.baseline_k,
                    'names': list(baselines_lib.BASELINES)},
      'walks': walks_record,
      'entries': entries,
      'warnings': warnings,
      'notes': notes,
  }
  results['run'] = run_record.run_section(
      run, encoding_set, run_dir, reevaluation=run_dir != workdir,
      evaluate_seconds=time.monotonic() - started,
      stored_results=cache.record())
  results_lib.write_run_outputs(results, workdir, rocs=rocs, plots=settings.plots)
  for outcome in outcomes:
    if outcome.trained_rn is not None:
      saved_rn.save_rn(workdir / saved_rn.RN_FILE, outcome.trained_rn,
                       rn_settings, outcome.rn_digest,
                       rn_summary)
  return results


def aggregate_seed_results(per_seed: Sequence[dict[str, Any]],
                           workdir: str | pathlib.Path) -> dict[str, Any]:
  """Mean ± std over seeds of every metric; writes results.json and report.md.

  Args:
    per_seed: results dicts of ``evaluate_run``, one per seed, same protocols.
    workdir: the multi-seed workdir (the per-seed runs live in seed_<s>/).

  Returns:
    The aggregate (schema in ``sge_jax.evaluate.results``): every metric becomes
    {mean, std, values} with the sample standard deviation (ddof = 1; 0 for a
    single seed), CMC curves become element-wise {mean, std}.
  """
  aggregate = results_lib.aggregate(per_seed)
  results_lib.write_aggregate_outputs(aggregate, pathlib.Path(workdir),
                                 plots=True)
  return aggregate
