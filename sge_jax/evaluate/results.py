"""The results files' schema, writing them, and the mean ± std over seeds.

``results.json`` of one run (``RESULTS_SCHEMA``); fractions in [0, 1]:

  schema, dataset, synthetic, seed, protocols ['A', 'B' | 'CME'],
  selection ('val' | 'fixed' | 'paper'), selection_label,
  headline        key of the entry whose numbers are repeated at the top level
  protocol, rank1, nauc, map, cmc     of the headline entry (null if n/a)
  encodings       {length, pretext, attention, hidden, feature_dim, model_names,
                   encoder_seed, config_hash, sge_jax_version,
                   num_sequences: {split: n}}
  rn              the recognition network run (protocol A) or null: manner,
                  epochs, batch_size, learning_rate, hidden, val_fraction,
                  rules_reported (selection rules computed), num_classes, input_dim, num_train_sequences,
                  num_val_sequences, samples_per_epoch, batches_per_epoch,
                  samples_dropped_per_epoch, train_seconds, final_train_loss,
                  history {train_loss, val_accuracy, test_accuracy: {split}}
  retrieval       {features, description, gallery_rule}
  distance, baselines {enabled, k, names}
  walks           {level ('window' | 'walk' | 'both'), aggregations
                  ({'A': [...], 'B': [...]} for the protocols run, the
                  configured one first; {} at window level; files written
                  before 2026-12 hold one list for both), min_walk_windows,
                  num_walks: {split: recordings, null when unknown}}
  entries         {key: entry}, key '<protocol>/<probe split>' ('A/Walking',
                  'B/probe', 'CME/nm.bg'); every entry has protocol, probe,
                  gallery, label, num_sequences (evaluated), num_excluded,
                  excluded_people, num_classes, num_people and, unless it has
                  'skipped': rank1, rank5, rank10 (null when fewer candidates),
                  cmc, baselines {name: same metrics + description, or
                  {skipped: reason}}. A adds nauc, selection, selected_epoch
                  (1-based), by_selection {rule: {label, epoch, rank1, nauc}},
                  and at window level confusion_matrix {classes (the C
                  training person ids, the class order), counts (C lists of C
                  ints: row = true person, column = predicted one)} of the
                  selected rule over the scored sequences; the prediction is
                  the top-scoring class with ties counted against the true
                  one, so the diagonal sums to rank1 x num_scored_sequences;
                  B/CME add map, num_unmatchable, num_gallery, features; CME
                  adds conditions, self_match_skipped.
                  Walk-level entries (sge_jax.evaluate.walk_level; keys
                  '<A|B>/<probe>/walks-<mean|vote>[-vs-windows]') have the same
                  metrics over walks plus level 'walk', aggregation,
                  num_walks, num_sequences (windows of the scored walks),
                  windows_per_walk {min, median, max}, min_walk_windows,
                  num_short_walks, num_short_walk_windows; B adds
                  gallery_level ('walk' | 'window'). Window-level entries
                  have no 'level' field.
  notes           human-readable remarks (exclusions, skipped parts, data
                  kind; plots not written, each starting 'Plot ')
  run             how the run was made: version, config hash, data, encoder
                  training, why it is shortened, stage wall times
                  (``sge_jax.evaluate.run_record``)
  plots           PNG file names written next to results.json
                  (``sge_jax.evaluate.plots`` says what each shows)

The multi-seed aggregate (``AGGREGATE_SCHEMA``) has the same layout, with seeds,
num_seeds, and every metric replaced by {mean, std, values} (values in seed
order, std with ddof = 1, 0 for one seed) and every CMC by {mean, std} lists;
run's config_hash lists every seed's and its timings become {mean, std, values}.
Confusion matrices are summed over the seeds (every seed's scored sequences
counted once; left out when the seeds' classes differ); the seeds' notes on
their own plots are not repeated.
"""

from __future__ import annotations

import pathlib
from typing import Any, Optional, Sequence

import numpy as np

from sge_jax import workdir as workdir_lib
from sge_jax.errors import DataError
from sge_jax.evaluate import plots as plots_lib
from sge_jax.evaluate import report, run_record

RESULTS_SCHEMA = 'sge_jax.results/1'
AGGREGATE_SCHEMA = 'sge_jax.results.multiseed/1'
# Metrics that become {mean, std, values} in the aggregate.
_ENTRY_METRICS = ('rank1', 'rank5', 'rank10', 'nauc', 'map', 'selected_epoch')


def _write_outputs(results: dict[str, Any], workdir: pathlib.Path,
                   rocs, plots: bool) -> None:
  try:
    workdir.mkdir(parents=True, exist_ok=True)
  except OSError as error:
    raise workdir_lib.write_error(workdir, error, 'create', kept=None) from error
  results['plots'] = []
  if plots:
    outcome = plots_lib.write_plots(results, workdir, rocs)
    if outcome is None:
      results['notes'].append(plots_lib.NO_MATPLOTLIB_NOTE)
    else:
      results['plots'] = outcome.files
      results['notes'].extend(note for note in outcome.notes
                              if note not in results['notes'])
  workdir_lib.write_json(results, workdir / workdir_lib.RESULTS_FILE)
  workdir_lib.write_text_atomically(workdir / workdir_lib.REPORT_FILE,
                                    report.render_markdown(results))


def write_run_outputs(results: dict[str, Any], workdir: pathlib.Path, *,
                      rocs: Optional[dict[str, dict[str, tuple]]] = None,
                      plots: bool = True) -> None:
  """Writes plots (if matplotlib is installed), results.json and report.md.

  Adds ``plots`` (file names) to ``results`` and a note when they are skipped.
  """
  _write_outputs(results, workdir, rocs, plots)


def _stat(values: Sequence[Any]) -> Optional[dict[str, Any]]:
  """{mean, std, values}; None entries (metric not applicable) are ignored."""
  present = [float(v) for v in values if v is not None]
  if not present:
    return None
  return {'mean': float(np.mean(present)),
          'std': float(np.std(present, ddof=1)) if len(present) > 1 else 0.0,
          'values': [None if v is None else float(v) for v in values]}


def _curve_stat(curves: Sequence[Sequence[float]]) -> dict[str, list[float]]:
  length = min(len(c) for c in curves)
  stacked = np.asarray([c[:length] for c in curves], float)
  std = (stacked.std(axis=0, ddof=1) if len(curves) > 1
         else np.zeros(length))
  return {'mean': stacked.mean(axis=0).tolist(), 'std': std.tolist()}


def _summed_confusion(records: Sequence[Optional[dict[str, Any]]]
                      ) -> Optional[dict[str, Any]]:
  """The confusion matrices of the seeds summed cell by cell (every seed's
  scored sequences counted once); None unless every seed has one over the
  same classes in the same order."""
  if any(not record for record in records) or any(
      record['classes'] != records[0]['classes'] for record in records):
    return None
  counts = np.sum([np.asarray(record['counts'], np.int64)
                   for record in records], axis=0)
  return {'classes': list(records[0]['classes']), 'counts': counts.tolist()}


def _aggregate_metrics(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
  """Metric fields -> stats, CMC -> curve stats, other fields from the first."""
  first = items[0]
  if any('skipped' in item for item in items):
    return dict(first)
  merged = {}
  for field, value in first.items():
    if field in _ENTRY_METRICS:
      merged[field] = _stat([item.get(field) for item in items])
    elif field == 'cmc':
      merged[field] = _curve_stat([item['cmc'] for item in items])
    elif field == 'by_selection':
      merged[field] = {
          rule: {'label': value[rule]['label'],
                 **{metric: _stat([item[field][rule][metric] for item in items])
                    for metric in ('epoch', 'rank1', 'nauc')}}
          for rule in value}
    elif field == 'baselines':
      merged[field] = {
          name: _aggregate_metrics([item[field][name] for item in items])
          for name in value}
    elif field == 'num_unmatchable':
      merged[field] = [item.get(field) for item in items]
    elif field == 'confusion_matrix':
      summed = _summed_confusion([item.get(field) for item in items])
      if summed is not None:
        merged[field] = summed
    else:
      merged[field] = value
  return merged


def aggregate(per_seed: Sequence[dict[str, Any]]) -> dict[str, Any]:
  """Combines per-seed results (same dataset, protocols, entries) into one."""
  if not per_seed:
    raise DataError('no per-seed results to aggregate')
  first = per_seed[0]
  for results in per_seed[1:]:
    for field in ('dataset', 'selection', 'protocols'):
      if results[field] != first[field]:
        raise DataError(
            f'cannot aggregate seeds with different {field}: '
            f'{first[field]!r} (seed {first["seed"]}) vs {results[field]!r} '
            f'(seed {results["seed"]})')
    if list(results['entries']) != list(first['entries']):
      raise DataError(
          f'cannot aggregate seeds with different result entries: '
          f'{list(first["entries"])} (seed {first["seed"]}) vs '
          f'{list(results["entries"])} (seed {results["seed"]})')
  seeds = [results['seed'] for results in per_seed]
  notes, warnings = [], []
  for results in per_seed:
    for note in results.get('notes', []):
      # Notes on plots describe the seed's own plots, not the aggregate's.
      if (note != plots_lib.NO_MATPLOTLIB_NOTE
          and not plots_lib.is_plot_note(note) and note not in notes):
        notes.append(note)
    for warning in results.get('warnings', []):
      if warning not in warnings:
        warnings.append(warning)
  rn = first.get('rn')
  if rn:
    rn = {key: value for key, value in rn.items() if key != 'history'}
    rn['train_seconds'] = _stat([(r.get('rn') or {}).get('train_seconds')
                                 for r in per_seed])
  merged = {
      'schema': AGGREGATE_SCHEMA,
      'dataset': first['dataset'],
      'synthetic': any(r.get('synthetic') for r in per_seed),
      'seeds': seeds,
      'num_seeds': len(seeds),
      'seed': None,
      'protocols': first['protocols'],
      'selection': first['selection'],
      'selection_label': first['selection_label'],
      'procedure': first.get('procedure'),
      'headline': first['headline'],
      'protocol': first['protocol'],
  }
  head = first['headline']
  head_entries = ([r['entries'][head] for r in per_seed] if head else [])
  for metric in ('rank1', 'nauc', 'map'):
    merged[metric] = (_stat([e.get(metric) for e in head_entries])
                      if head_entries else None)
  merged['cmc'] = (_curve_stat([e['cmc'] for e in head_entries])
                   if head_entries and 'cmc' in head_entries[0] else None)
  encodings = dict(first['encodings'])
  encodings['encoder_seed'] = [r['encodings']['encoder_seed'] for r in per_seed]
  merged.update({
      'encodings': encodings,
      'rn': rn,
      'retrieval': first['retrieval'],
      'distance': first['distance'],
      'baselines': first['baselines'],
      'walks': first.get('walks'),
      'entries': {key: _aggregate_metrics([r['entries'][key] for r in per_seed])
                  for key in first['entries']},
      'warnings': warnings,
      'notes': notes,
  })
  run = run_record.aggregate_run([r.get('run') for r in per_seed], _stat)
  if run is not None:
    merged['run'] = run
  return merged


def write_aggregate_outputs(aggregate_results: dict[str, Any],
                            workdir: pathlib.Path, plots: bool = True) -> None:
  """results.json, report.md and mean ± std CMC plots of a multi-seed run."""
  _write_outputs(aggregate_results, workdir, None, plots)
