"""Result files: ``results.json``, ``report.md`` and PNG plots.

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
  entries         {key: entry}, key '<protocol>/<probe split>' ('A/Walking',
                  'B/probe', 'CME/nm.bg'); every entry has protocol, probe,
                  gallery, label, num_sequences (evaluated), num_excluded,
                  excluded_people, num_classes, num_people and, unless it has
                  'skipped': rank1, rank5, rank10 (null when fewer candidates),
                  cmc, baselines {name: same metrics + description, or
                  {skipped: reason}}. A adds nauc, selection, selected_epoch
                  (1-based), by_selection {rule: {label, epoch, rank1, nauc}};
                  B/CME add map, num_unmatchable, num_gallery, features; CME
                  adds conditions, self_match_skipped.
  notes           human-readable remarks (exclusions, skipped parts, data kind)
  plots           PNG file names written next to results.json

The multi-seed aggregate (``AGGREGATE_SCHEMA``) has the same layout, with seeds,
num_seeds, and every metric replaced by {mean, std, values} (values in seed
order, std with ddof = 1, 0 for one seed) and every CMC by {mean, std} lists.

matplotlib is optional: without it the plots are skipped with a note.
"""

from __future__ import annotations

import json
import logging
import pathlib
import re
from typing import Any, Optional, Sequence

import numpy as np

from sge_jax import files
from sge_jax.errors import DataError

RESULTS_SCHEMA = 'sge_jax.results/1'
AGGREGATE_SCHEMA = 'sge_jax.results.multiseed/1'
RESULTS_FILE = 'results.json'
REPORT_FILE = 'report.md'

# Metrics that become {mean, std, values} in the aggregate.
_ENTRY_METRICS = ('rank1', 'rank5', 'rank10', 'nauc', 'map', 'selected_epoch')
_BASELINE_TITLES = {
    'raw_coordinates': 'raw coordinates',
    'bone_length': 'bone lengths',
    'gait_descriptor': 'gait descriptor (D-13 style)',
}
_PROTOCOL_TITLES = {
    'A': 'Protocol A: recognition network (classification)',
    'B': 'Protocol B: retrieval (probe -> gallery)',
    'CME': 'CASIA-B CME: cross-condition nearest-neighbour matching',
}
_NO_MATPLOTLIB_NOTE = ('matplotlib is not installed: plots skipped '
                       '(pip install matplotlib to get them).')

_log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------
# JSON.


def write_json(data: dict[str, Any], path: pathlib.Path) -> None:
  """Writes ``data`` as indented JSON atomically (temporary file, rename)."""
  files.write_text_atomically(path, json.dumps(files.json_safe(data), indent=1) + '\n')


# ----------------------------------------------------------------------------
# Formatting (shared by single runs and aggregates).


def _is_stat(value) -> bool:
  return isinstance(value, dict) and 'mean' in value


def _percent(value) -> str:
  """0.629 -> '62.9'; {mean, std} -> '62.9 ± 1.2'; None -> '–'."""
  if _is_stat(value):
    if value['mean'] is None:
      return '–'
    return f'{100 * value["mean"]:.1f} ± {100 * value["std"]:.1f}'
  if value is None:
    return '–'
  return f'{100 * value:.1f}'


def _epoch(value) -> str:
  if _is_stat(value):
    return f'{value["mean"]:.0f} ± {value["std"]:.0f}'
  return '–' if value is None else str(value)


def _baseline_title(name: str) -> str:
  return _BASELINE_TITLES.get(name, name)


def _method_title(results: dict[str, Any], entry: dict[str, Any]) -> str:
  if entry['protocol'] == 'A':
    manner = (results.get('rn') or {}).get('manner', '')
    return f'CAGEs + RN ({manner})'
  return f'CAGEs NN ({entry.get("features", "")})'


def _k_title(results: dict[str, Any], entry: dict[str, Any]) -> str:
  k = results.get('baselines', {}).get('k', 1)
  return '1-NN' if entry['protocol'] != 'A' or k == 1 else f'{k}-NN'


def summary_lines(results: dict[str, Any]) -> list[str]:
  """Short console summary: one line per entry, CAGEs then baselines."""
  seeds = results.get('seeds')
  lines = [f'{results["dataset"]}: selection {results["selection_label"]}, '
           + (f'seeds {seeds} (mean ± std)' if seeds
              else f'seed {results["seed"]}')]
  for key, entry in results['entries'].items():
    if 'skipped' in entry:
      lines.append(f'{key} ({entry["label"]}): skipped, {entry["skipped"]}')
      continue
    parts = [f'Rank-1 {_percent(entry["rank1"])}%']
    if entry.get('nauc') is not None:
      parts.append(f'nAUC {_percent(entry["nauc"])}%')
    if entry.get('map') is not None:
      parts.append(f'mAP {_percent(entry["map"])}%')
    line = (f'{key} ({entry["label"]}): {", ".join(parts)} '
            f'[{entry["num_sequences"]} sequences, {entry["num_classes"]} '
            'classes]')
    scored = {name: b for name, b in entry.get('baselines', {}).items()
              if 'rank1' in b}
    if scored:
      line += '; baselines Rank-1: ' + ', '.join(
          f'{name} {_percent(b["rank1"])}%' for name, b in scored.items())
    lines.append(line)
  return lines


def _settings_table(results: dict[str, Any]) -> list[str]:
  encodings = results['encodings']
  rn = results.get('rn') or {}
  rows = [
      ('dataset', results['dataset']),
      ('sequence length f', encodings['length']),
      ('pretext / attention',
       f'{encodings["pretext"]} / {encodings["attention"]}'),
      ('CAGE dimension per frame', encodings['feature_dim']),
      ('protocols', ', '.join(results['protocols'])),
      ('model selection', results['selection_label']),
  ]
  if 'seeds' in results:
    rows.append(('seeds', ', '.join(str(s) for s in results['seeds'])))
  else:
    rows.append(('seed', results['seed']))
  if rn:
    rows.append(('RN', f'{rn["manner"]}, {rn["epochs"]} epochs, batch '
                 f'{rn["batch_size"]}, lr {rn["learning_rate"]:g}, hidden '
                 f'{rn["hidden"]}'))
  rows.append(('distance', results['distance']))
  rows.append(('retrieval features', f'{results["retrieval"]["features"]} '
               f'({results["retrieval"]["description"]})'))
  rows.append(('sequences per split', ', '.join(
      f'{name} {count}'
      for name, count in encodings['num_sequences'].items())))
  lines = ['| setting | value |', '|---|---|']
  lines += [f'| {name} | {value} |' for name, value in rows]
  return lines


def _protocol_table(results: dict[str, Any], protocol: str) -> list[str]:
  entries = [e for e in results['entries'].values()
             if e['protocol'] == protocol]
  if protocol == 'A':
    header = ('| probe set | method | Rank-1 (%) | Rank-5 (%) | Rank-10 (%) | '
              'nAUC (%) | test sequences | classes |')
    last = 'nauc'
  else:
    header = ('| probe -> gallery | method | Rank-1 (%) | Rank-5 (%) | '
              'Rank-10 (%) | mAP (%) | queries | gallery |')
    last = 'map'
  lines = [header, '|' + '---|' * 8]
  for entry in entries:
    size = (entry['num_classes'] if protocol == 'A'
            else entry.get('num_gallery', '–'))
    if 'skipped' in entry:
      lines.append(f'| {entry["label"]} | skipped: {entry["skipped"]} | – | – '
                   f'| – | – | {entry["num_sequences"]} | {size} |')
      continue
    method = _method_title(results, entry)
    if protocol == 'A':
      method += f', epoch {_epoch(entry.get("selected_epoch"))}'
    rows = [(method, entry)]
    for name, baseline in entry.get('baselines', {}).items():
      rows.append((f'{_baseline_title(name)} {_k_title(results, entry)}',
                   baseline))
    for method, values in rows:
      if 'skipped' in values:
        lines.append(f'| {entry["label"]} | {method} (skipped) | – | – | – | '
                     f'– | {entry["num_sequences"]} | {size} |')
        continue
      lines.append(
          f'| {entry["label"]} | {method} | {_percent(values["rank1"])} | '
          f'{_percent(values["rank5"])} | {_percent(values["rank10"])} | '
          f'{_percent(values.get(last))} | {entry["num_sequences"]} | '
          f'{size} |')
  return lines


def _selection_table(results: dict[str, Any]) -> list[str]:
  entries = [e for e in results['entries'].values()
             if e['protocol'] == 'A' and 'by_selection' in e]
  if not entries:
    return []
  rules = list(entries[0]['by_selection'])
  labels = [entries[0]['by_selection'][rule]['label'] for rule in rules]
  lines = ['| probe set | ' + ' | '.join(
      f'{label}: Rank-1 (%) [epoch]' for label in labels) + ' |',
           '|---|' + '---|' * len(rules)]
  for entry in entries:
    cells = [f'{_percent(entry["by_selection"][rule]["rank1"])} '
             f'[{_epoch(entry["by_selection"][rule]["epoch"])}]'
             for rule in rules]
    lines.append(f'| {entry["label"]} | ' + ' | '.join(cells) + ' |')
  return lines


def render_markdown(results: dict[str, Any]) -> str:
  """report.md: settings, one table per protocol, selection rules, notes."""
  seeds = results.get('seeds')
  title = f'# sge-jax re-identification results: {results["dataset"]}'
  lines = [title, '']
  if results.get('synthetic'):
    lines += ['> **Synthetic data.** These encodings come from the procedural '
              'demo walkers, not from a published benchmark; the numbers only '
              'show that the pipeline runs.', '']
  if seeds:
    lines += [f'Mean ± standard deviation over {len(seeds)} seeds (sample '
              'std, ddof = 1); each seed has its own encoders and RN. '
              'Per-seed results are in `seed_<s>/`.', '']
  lines += _settings_table(results) + ['']
  for protocol in results['protocols']:
    if not any(e['protocol'] == protocol
               for e in results['entries'].values()):
      continue
    lines += [f'## {_PROTOCOL_TITLES[protocol]}', '']
    lines += _protocol_table(results, protocol) + ['']
    if protocol == 'A':
      lines += ['Rank-k and nAUC from the RN\'s sequence scores (mean of the '
                'frame logits for ap). Baselines: k-NN over the train split '
                'on hand-crafted features of the raw sequences.', '']
      selection = _selection_table(results)
      if selection:
        lines += ['### Model selection rules (same RN run)', '',
                  f'Reported above: **{results["selection_label"]}**. The '
                  'paper rule picks the epoch with the best *test* accuracy '
                  'and is optimistic.', ''] + selection + ['']
    else:
      lines += [f'Gallery rule: {results["retrieval"]["gallery_rule"]}. '
                'Baselines rank the same gallery with z-scored hand-crafted '
                'features.', '']
  if results.get('notes'):
    lines += ['## Notes', ''] + [f'- {note}' for note in results['notes']]
    lines += ['']
  if results.get('plots'):
    lines += ['## Plots', '']
    lines += [f'![{name}]({name})' for name in results['plots']] + ['']
  return '\n'.join(lines)


# ----------------------------------------------------------------------------
# Plots (optional matplotlib).


def _load_matplotlib():
  """(Figure, FigureCanvasAgg) or None when matplotlib is not installed.

  The object-oriented API with the Agg canvas: no pyplot state, no display.
  """
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top,unused-import
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
    from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return Figure, FigureCanvasAgg


def _file_stem(key: str) -> str:
  return re.sub(r'[^A-Za-z0-9_.-]+', '_', key)


def _save(figure, canvas_class, path: pathlib.Path) -> None:
  canvas_class(figure)
  figure.tight_layout()
  figure.savefig(path, dpi=110)


def _cmc_curves(entry: dict[str, Any]) -> dict[str, tuple]:
  """Method title -> (mean curve, std curve or None)."""
  def curve(values):
    if _is_stat(values):
      return np.asarray(values['mean'], float), np.asarray(values['std'], float)
    return np.asarray(values, float), None

  curves = {'CAGEs': curve(entry['cmc'])}
  for name, baseline in entry.get('baselines', {}).items():
    if 'cmc' in baseline:
      curves[_baseline_title(name)] = curve(baseline['cmc'])
  return curves


def _plot_cmc(matplotlib_api, key: str, entry: dict[str, Any],
              workdir: pathlib.Path) -> str:
  figure_class, canvas_class = matplotlib_api
  figure = figure_class(figsize=(5.5, 4))
  axes = figure.add_subplot()
  for title, (mean, std) in _cmc_curves(entry).items():
    ranks = np.arange(1, mean.size + 1)
    axes.plot(ranks, 100 * mean, marker='.' if mean.size <= 30 else None,
              label=title)
    if std is not None:
      axes.fill_between(ranks, 100 * (mean - std), 100 * (mean + std),
                        alpha=0.2)
  axes.set_xlabel('rank k')
  axes.set_ylabel('recognition rate (%)')
  axes.set_ylim(0, 101)
  axes.set_title(f'CMC, {entry["label"]}')
  axes.grid(alpha=0.3)
  axes.legend(loc='lower right', fontsize='small')
  name = f'cmc_{_file_stem(key)}.png'
  _save(figure, canvas_class, workdir / name)
  return name


def _plot_roc(matplotlib_api, key: str, entry: dict[str, Any],
              rocs: dict[str, tuple], workdir: pathlib.Path) -> str:
  figure_class, canvas_class = matplotlib_api
  figure = figure_class(figsize=(5, 4.5))
  axes = figure.add_subplot()
  for name, (fpr, tpr) in rocs.items():
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    axes.plot(fpr, tpr, label=f'{_baseline_title(name)} (nAUC {100 * area:.1f})')
  axes.plot([0, 1], [0, 1], color='grey', linestyle='--', linewidth=0.8)
  axes.set_xlabel('false positive rate')
  axes.set_ylabel('true positive rate')
  axes.set_title(f'micro-averaged ROC (nAUC), {entry["label"]}')
  axes.legend(loc='lower right', fontsize='small')
  name = f'roc_{_file_stem(key)}.png'
  _save(figure, canvas_class, workdir / name)
  return name


def _plot_rn_history(matplotlib_api, results: dict[str, Any],
                     workdir: pathlib.Path) -> Optional[str]:
  rn = results.get('rn')
  history = (rn or {}).get('history')
  if not history or (history.get('val_accuracy') is None
                     and not history.get('test_accuracy')):
    return None
  figure_class, canvas_class = matplotlib_api
  figure = figure_class(figsize=(6, 4))
  axes = figure.add_subplot()
  epochs = np.arange(1, len(history['train_loss']) + 1)
  if history.get('val_accuracy') is not None:
    axes.plot(epochs, 100 * np.asarray(history['val_accuracy'], float),
              label='validation', color='black')
  for split, curve in history['test_accuracy'].items():
    axes.plot(epochs, 100 * np.asarray(curve, float), label=f'test {split}',
              alpha=0.8)
  for entry in results['entries'].values():
    if entry['protocol'] == 'A' and 'selected_epoch' in entry:
      axes.axvline(entry['selected_epoch'], color='grey', linestyle=':',
                   linewidth=0.8)
  axes.set_xlabel('RN epoch')
  axes.set_ylabel('sequence accuracy (%)')
  axes.set_title(f'RN accuracy per epoch (dotted: {results["selection"]} '
                 'selection)')
  axes.legend(fontsize='small')
  name = 'rn_accuracy.png'
  _save(figure, canvas_class, workdir / name)
  return name


def write_plots(results: dict[str, Any], workdir: pathlib.Path,
                rocs: Optional[dict[str, dict[str, tuple]]] = None
                ) -> Optional[list[str]]:
  """CMC (CAGEs vs baselines), micro ROC and RN accuracy PNGs.

  Returns:
    The file names written, or None when matplotlib is not installed.
  """
  matplotlib_api = _load_matplotlib()
  if matplotlib_api is None:
    _log.info('[eval] %s', _NO_MATPLOTLIB_NOTE)
    return None
  written = []
  for key, entry in results['entries'].items():
    if 'cmc' in entry:
      written.append(_plot_cmc(matplotlib_api, key, entry, workdir))
    if rocs and rocs.get(key):
      written.append(_plot_roc(matplotlib_api, key, entry, rocs[key], workdir))
  history_plot = _plot_rn_history(matplotlib_api, results, workdir)
  if history_plot:
    written.append(history_plot)
  return written


def _write_outputs(results: dict[str, Any], workdir: pathlib.Path,
                   rocs, plots: bool) -> None:
  workdir.mkdir(parents=True, exist_ok=True)
  results['plots'] = []
  if plots:
    written = write_plots(results, workdir, rocs)
    if written is None:
      results['notes'].append(_NO_MATPLOTLIB_NOTE)
    else:
      results['plots'] = written
  write_json(results, workdir / RESULTS_FILE)
  files.write_text_atomically(workdir / REPORT_FILE, render_markdown(results))


def write_run_outputs(results: dict[str, Any], workdir: pathlib.Path, *,
                      rocs: Optional[dict[str, dict[str, tuple]]] = None,
                      plots: bool = True) -> None:
  """Writes plots (if matplotlib is installed), results.json and report.md.

  Adds ``plots`` (file names) to ``results`` and a note when they are skipped.
  """
  _write_outputs(results, workdir, rocs, plots)


# ----------------------------------------------------------------------------
# Multi-seed aggregation.


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
  notes = []
  for results in per_seed:
    for note in results.get('notes', []):
      if note != _NO_MATPLOTLIB_NOTE and note not in notes:
        notes.append(note)
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
      'entries': {key: _aggregate_metrics([r['entries'][key] for r in per_seed])
                  for key in first['entries']},
      'notes': notes,
  })
  return merged


def write_aggregate_outputs(aggregate_results: dict[str, Any],
                            workdir: pathlib.Path, plots: bool = True) -> None:
  """results.json, report.md and mean ± std CMC plots of a multi-seed run."""
  _write_outputs(aggregate_results, workdir, None, plots)
