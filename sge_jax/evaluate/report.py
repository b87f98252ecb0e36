"""``report.md`` and the console summary, from a results dict (one run or the
multi-seed aggregate; schema in ``sge_jax.evaluate.results``)."""

from __future__ import annotations

from typing import Any

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


def is_stat(value) -> bool:
  return isinstance(value, dict) and 'mean' in value


def percent(value) -> str:
  """0.629 -> '62.9'; {mean, std} -> '62.9 ± 1.2'; None -> '–'."""
  if is_stat(value):
    if value['mean'] is None:
      return '–'
    return f'{100 * value["mean"]:.1f} ± {100 * value["std"]:.1f}'
  if value is None:
    return '–'
  return f'{100 * value:.1f}'


def format_epoch(value) -> str:
  if is_stat(value):
    return f'{value["mean"]:.0f} ± {value["std"]:.0f}'
  return '–' if value is None else str(value)


def baseline_title(name: str) -> str:
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
  procedure = (results.get('procedure') or {}).get('name', 'clean')
  lines = [f'{results["dataset"]}: procedure {procedure}, '
           f'selection {results["selection_label"]}, '
           + (f'seeds {seeds} (mean ± std)' if seeds
              else f'seed {results["seed"]}')]
  lines += [f'warning: {warning}' for warning in results.get('warnings', [])]
  for key, entry in results['entries'].items():
    if 'skipped' in entry:
      lines.append(f'{key} ({entry["label"]}): skipped, {entry["skipped"]}')
      continue
    parts = [f'Rank-1 {percent(entry["rank1"])}%']
    if entry.get('nauc') is not None:
      parts.append(f'nAUC {percent(entry["nauc"])}%')
    if entry.get('map') is not None:
      parts.append(f'mAP {percent(entry["map"])}%')
    line = (f'{key} ({entry["label"]}): {", ".join(parts)} '
            f'[{entry["num_sequences"]} sequences, {entry["num_classes"]} '
            'classes]')
    scored = {name: b for name, b in entry.get('baselines', {}).items()
              if 'rank1' in b}
    if scored:
      line += '; baselines Rank-1: ' + ', '.join(
          f'{name} {percent(b["rank1"])}%' for name, b in scored.items())
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
      ('encoders', f'k = {encodings["hidden"]}, trained '
       + (f'in {encodings["encoder_workdir"]} (transfer)'
          if encodings.get('encoder_workdir') else 'in this run')),
      ('CAGE dimension per frame', encodings['feature_dim']),
      ('protocols', ', '.join(results['protocols'])),
      ('model selection', results['selection_label']),
  ]
  procedure = results.get('procedure')
  if procedure:
    rows.append(('procedure', procedure['name']
                 + (' (docs/released_procedure.md)'
                    if procedure['name'] == 'released' else '')))
    rows.append(('released quirks on',
                 ', '.join(procedure['quirks_on']) or 'none'))
    rows.append(('normalization', procedure['normalization']))
  if 'seeds' in results:
    rows.append(('seeds', ', '.join(str(s) for s in results['seeds'])))
  else:
    rows.append(('seed', results['seed']))
  if rn:
    rows.append(('RN', f'{rn["manner"]}, {rn["epochs"]} epochs, batch '
                 f'{rn["batch_size"]}, lr {rn["learning_rate"]:g}, hidden '
                 f'{rn["hidden"]}'))
    per_person = rn.get('train_sequences_per_person')
    if per_person:
      rows.append(('RN training sequences per person', ', '.join(
          f'{person}: {count}' for person, count in per_person.items())))
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
      method += f', epoch {format_epoch(entry.get("selected_epoch"))}'
    rows = [(method, entry)]
    for name, baseline in entry.get('baselines', {}).items():
      rows.append((f'{baseline_title(name)} {_k_title(results, entry)}',
                   baseline))
    for method, values in rows:
      if 'skipped' in values:
        lines.append(f'| {entry["label"]} | {method} (skipped) | – | – | – | '
                     f'– | {entry["num_sequences"]} | {size} |')
        continue
      count = entry['num_sequences']
      scored = entry.get('num_scored_sequences')
      if values is entry and scored is not None and scored != count:
        count = f'{scored} scored of {count}'    # released rows (R1, R3, R5)
      lines.append(
          f'| {entry["label"]} | {method} | {percent(values["rank1"])} | '
          f'{percent(values["rank5"])} | {percent(values["rank10"])} | '
          f'{percent(values.get(last))} | {count} | {size} |')
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
    cells = [f'{percent(entry["by_selection"][rule]["rank1"])} '
             f'[{format_epoch(entry["by_selection"][rule]["epoch"])}]'
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
