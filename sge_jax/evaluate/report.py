"""``report.md`` and the console summary, from a results dict (one run or the
multi-seed aggregate; schema in ``sge_jax.evaluate.results``)."""

from __future__ import annotations

from typing import Any, Optional

from sge_jax.evaluate import run_record

_BASELINE_TITLES = {
    'raw_coordinates': 'raw coordinates',
    'bone_length': 'bone lengths',
    'gait_descriptor': 'gait descriptor (D-13 style)',
}
# Section titles of report.md; a protocol without one is 'Protocol <name>'.
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


def headline(results: dict[str, Any]) -> str:
  """'A/test Rank-1 89.4%, nAUC 97.6%': the headline entry's numbers."""
  parts = [f'Rank-1 {percent(results.get("rank1"))}%']
  for name, field in (('nAUC', 'nauc'), ('mAP', 'map')):
    if results.get(field) is not None:
      parts.append(f'{name} {percent(results[field])}%')
  return f'{results.get("headline")} ' + ', '.join(parts)


def summary_lines(results: dict[str, Any]) -> list[str]:
  """Short console summary: one line per entry, CAGEs then baselines."""
  seeds = results.get('seeds')
  procedure = (results.get('procedure') or {}).get('name', 'clean')
  lines = [f'{results["dataset"]}: procedure {procedure}, '
           f'selection {results["selection_label"]}, '
           + (f'seeds {seeds} (mean ± std)' if seeds
              else f'seed {results["seed"]}')]
  shortened = (results.get('run') or {}).get('shortened')
  if shortened:
    lines.append('shortened run, not comparable with the paper: '
                 + '; '.join(shortened))
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
    if is_walk_entry(entry):
      size = (f'{entry["num_walks"]} walks of {entry["num_sequences"]} '
              f'windows, {entry["aggregation"]}')
    else:
      size = f'{entry["num_sequences"]} sequences'
    line = (f'{key} ({entry["label"]}): {", ".join(parts)} '
            f'[{size}, {entry["num_classes"]} classes]')
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
    not_applicable = procedure.get('quirks_not_applicable')
    if not_applicable:
      rows.append(('released quirks that cannot act here', '; '.join(
          f'{quirk} ({why})' for quirk, why in not_applicable.items())))
    rows.append(('normalization', procedure['normalization']))
  if 'seeds' in results:
    rows.append(('seeds', ', '.join(str(s) for s in results['seeds'])))
  else:
    rows.append(('seed', results['seed']))
  if rn:
    steps = rn.get('batches_per_epoch')
    rows.append(('RN', f'{rn["manner"]}, {rn["epochs"]} epochs'
                 + (f' of {steps} step{"" if steps == 1 else "s"}'
                    if steps is not None else '')
                 + f', batch {rn["batch_size"]}, lr {rn["learning_rate"]:g}, '
                 f'hidden {rn["hidden"]}'))
  rows.append(('distance', results['distance']))
  rows.append(('retrieval features', f'{results["retrieval"]["features"]} '
               f'({results["retrieval"]["description"]})'))
  walks = results.get('walks')
  if walks:
    per_split = ', '.join(f'{name} {count if count is not None else "unknown"}'
                          for name, count in walks['num_walks'].items())
    rows.append(('level (eval.level)', walks['level'] + (
        f'; walk aggregations {_aggregations_text(walks["aggregations"])}, '
        f'test walks of at least {walks["min_walk_windows"]} windows'
        if walks['aggregations'] else '')))
    rows.append(('walks (recordings) per split', per_split))
  rows.append(('sequences per split', ', '.join(
      f'{name} {count}'
      for name, count in encodings['num_sequences'].items())))
  lines = ['| setting | value |', '|---|---|']
  lines += [f'| {name} | {value} |' for name, value in rows]
  per_person = rn.get('train_sequences_per_person')
  if per_person:     # one row per person: folded
    lines += ['', f'<details><summary>RN training sequences per person '
              f'({len(per_person)} people)</summary>', '',
              '| person | sequences |', '|---|---|']
    lines += [f'| {person} | {count} |' for person, count in per_person.items()]
    lines += ['', '</details>']
  return lines


RANKS = (1, 5, 10)


def shown_ranks(entries: list[dict[str, Any]]) -> tuple[int, ...]:
  """The k of the Rank-k columns of a table: 1, and 5 and 10 where some
  scored entry has more than k classes (Rank-k is 100% at k >= classes)."""
  def classes(entry):
    value = entry.get('num_classes')
    value = value.get('mean') if isinstance(value, dict) else value
    return value if isinstance(value, (int, float)) else 0
  most = max((classes(e) for e in entries if 'skipped' not in e), default=0)
  return tuple(k for k in RANKS if k == 1 or k < most)


def is_walk_entry(entry: dict[str, Any]) -> bool:
  """A walk-level entry (sge_jax.evaluate.walk_level); others are windows."""
  return entry.get('level') == 'walk'


def _aggregations_text(aggregations) -> str:
  """'A: mean, vote; B: vote, mean' (configured first), or 'vote, mean' for a
  list that applies to every protocol."""
  if isinstance(aggregations, dict):
    return '; '.join(f'{protocol}: {", ".join(names)}'
                     for protocol, names in aggregations.items())
  return ', '.join(aggregations)


def configured_aggregation(results: dict[str, Any],
                           protocol: str) -> Optional[str]:
  """The walk aggregation configured for ``protocol`` (the one plotted and
  marked '(default)'), read from ``results['walks']['aggregations']``: a list
  whose first name applies to every protocol, or a dict protocol -> name (or
  list, first name); None without walk level."""
  aggregations = (results.get('walks') or {}).get('aggregations') or []
  if isinstance(aggregations, dict):
    aggregations = aggregations.get(protocol) or []
  if isinstance(aggregations, str):
    return aggregations
  return aggregations[0] if aggregations else None


def _method_rows(results: dict[str, Any], entry: dict[str, Any]
                 ) -> list[tuple[str, dict[str, Any]]]:
  """(method title, values): CAGEs, then each baseline."""
  method = _method_title(results, entry)
  if entry['protocol'] == 'A':
    method += f', epoch {format_epoch(entry.get("selected_epoch"))}'
  rows = [(method, entry)]
  for name, baseline in entry.get('baselines', {}).items():
    rows.append((f'{baseline_title(name)} {_k_title(results, entry)}',
                 baseline))
  return rows


def _protocol_table(results: dict[str, Any], protocol: str) -> list[str]:
  entries = [e for e in results['entries'].values()
             if e['protocol'] == protocol and not is_walk_entry(e)]
  if not entries:
    return []
  if protocol == 'A':
    first, last, counts = 'probe set', 'nauc', 'test sequences | classes'
  else:
    first, last, counts = 'probe -> gallery', 'map', 'queries | gallery'
  ranks = shown_ranks(entries)
  rank_titles = ''.join(f'Rank-{k} (%) | ' for k in ranks)
  dashes = '– | ' * len(ranks)
  lines = [f'| {first} | method | {rank_titles}'
           f'{"nAUC" if last == "nauc" else "mAP"} (%) | {counts} |',
           '|' + '---|' * (5 + len(ranks))]
  for entry in entries:
    size = (entry['num_classes'] if protocol == 'A'
            else entry.get('num_gallery', '–'))
    if 'skipped' in entry:
      lines.append(f'| {entry["label"]} | skipped: {entry["skipped"]} | '
                   f'{dashes}– | {entry["num_sequences"]} | {size} |')
      continue
    for method, values in _method_rows(results, entry):
      if 'skipped' in values:
        lines.append(f'| {entry["label"]} | {method} (skipped) | {dashes}'
                     f'– | {entry["num_sequences"]} | {size} |')
        continue
      count = entry['num_sequences']
      scored = entry.get('num_scored_sequences')
      if values is entry and scored is not None and scored != count:
        count = f'{scored} scored of {count}'    # released rows (R1, R3, R5)
      rank_cells = ''.join(f'{percent(values[f"rank{k}"])} | '
                           for k in ranks)
      lines.append(
          f'| {entry["label"]} | {method} | {rank_cells}'
          f'{percent(values.get(last))} | {count} | {size} |')
  return lines


def _windows_per_walk(entry: dict[str, Any]) -> str:
  counts = entry['windows_per_walk']
  return f'{counts["min"]} / {counts["median"]:g} / {counts["max"]}'


def _walk_table(results: dict[str, Any], protocol: str,
                gallery_level: str = 'walk') -> list[str]:
  """Walk-level entries of one protocol (for B: against gallery walks or
  gallery windows): CAGEs and baselines per aggregation."""
  entries = [e for e in results['entries'].values()
             if e['protocol'] == protocol and is_walk_entry(e)
             and e.get('gallery_level', 'walk') == gallery_level]
  if not entries:
    return []
  last, size_title = (('nauc', 'classes') if protocol == 'A'
                      else ('map', 'gallery'))
  default = configured_aggregation(results, protocol)
  ranks = shown_ranks(entries)
  dashes = '– | ' * len(ranks)
  lines = [f'| probe walks | method | aggregation | '
           + ''.join(f'Rank-{k} (%) | ' for k in ranks)
           + f'{"nAUC" if protocol == "A" else "mAP"} (%) | walks '
           f'| windows per walk (min / median / max) | short walks left out | '
           f'{size_title} |', '|' + '---|' * (8 + len(ranks))]
  for entry in entries:
    aggregation = entry['aggregation'] + (' (default)'
                                          if entry['aggregation'] == default
                                          else '')
    size = (entry['num_classes'] if protocol == 'A'
            else entry.get('num_gallery', '–'))
    short = (f'{entry["num_short_walks"]} ({entry["num_short_walk_windows"]} '
             f'windows; < {entry["min_walk_windows"]})')
    if 'skipped' in entry:
      lines.append(f'| {entry["label"]} | skipped: {entry["skipped"]} | '
                   f'{aggregation} | {dashes}– | 0 | – | {short} | {size} |')
      continue
    for method, values in _method_rows(results, entry):
      if 'skipped' in values:
        lines.append(f'| {entry["label"]} | {method} (skipped) | {aggregation} '
                     f'| {dashes}– | – | – | {short} | {size} |')
        continue
      lines.append(
          f'| {entry["label"]} | {method} | {aggregation} | '
          + ''.join(f'{percent(values[f"rank{k}"])} | ' for k in ranks)
          + f'{percent(values.get(last))} | '
          f'{entry["num_walks"]} | {_windows_per_walk(entry)} | {short} | '
          f'{size} |')
  return lines


_WALK_EXPLANATIONS = {
    'A': ('A walk is one recording. vote: each window votes for its top class '
          'under the RN; a walk scores each class by the share of its windows '
          'voting for it (nAUC pools these shares), and classes of equal share '
          'rank by the mean score; mean: the mean of the windows\' scores. '
          'Same RN and epoch as the window table; the baselines\' window '
          'scores are aggregated the same way.'),
    'B': ('A walk is one recording. vote: each probe window votes for the '
          'person of its nearest gallery window (its window-level match), and '
          'the gallery is ranked person by person (most votes first), then by '
          'distance to the walk\'s mean feature, so under vote mAP mostly '
          'measures where the true person\'s votes rank. mean: the walk\'s '
          'feature is the mean of its windows\' features, ranked against '
          'gallery walks (each the mean of its windows) or gallery windows.'),
}


def _window_section(results: dict[str, Any], protocol: str) -> list[str]:
  """The window-level table of one protocol with its explanation (and, for A,
  the selection rules); [] when there are no window entries (eval.level=walk)."""
  table = _protocol_table(results, protocol)
  if not table:
    return []
  lines = table + ['']
  if protocol != 'A':
    return lines + [f'Gallery rule: {results["retrieval"]["gallery_rule"]}. '
                    'Baselines rank the same gallery with z-scored hand-crafted '
                    'features.', '']
  lines += ['Rank-k and nAUC from the RN\'s sequence scores (mean of the '
            'frame logits for ap). Baselines: k-NN over the train split on '
            'hand-crafted features of the raw sequences.', '']
  selection = _selection_table(results)
  if selection:
    lines += ['### Model selection rules (same RN run)', '',
              f'Reported above: **{results["selection_label"]}**. The paper '
              'rule picks the epoch with the best *test* accuracy and is '
              'optimistic.', ''] + selection + ['']
  return lines


def _walk_section(results: dict[str, Any], protocol: str) -> list[str]:
  """The walk-level tables of one protocol with their explanation ([] if none)."""
  if protocol == 'A':
    tables = [('', _walk_table(results, 'A'))]
  else:
    tables = [(f'#### Against gallery {level}s', _walk_table(results, protocol,
                                                             level))
              for level in ('walk', 'window')]
  tables = [(title, table) for title, table in tables if table]
  if not tables:
    return []
  lines = ['### Walk level (a whole recording, every window as evidence)', '',
           _WALK_EXPLANATIONS[protocol], '']
  for title, table in tables:
    lines += ([title, ''] if title else []) + table + ['']
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


def _seed_spread(results: dict[str, Any]) -> list[str]:
  """The headline's Rank-1 of every seed, with its range ([] if unknown)."""
  rank1 = results.get('rank1')
  if not is_stat(rank1) or not rank1.get('values'):
    return []
  values = [v for v in rank1['values'] if v is not None]
  if not values:
    return []
  per_seed = ', '.join(f'seed {seed}: {percent(value)}'
                       for seed, value in zip(results['seeds'],
                                              rank1['values']))
  return [f'Spread over the seeds, {results["headline"]} Rank-1 (%): '
          f'{per_seed}; range {percent(min(values))} to '
          f'{percent(max(values))}.', '']


def render_markdown(results: dict[str, Any]) -> str:
  """report.md: settings, one table per protocol, selection rules, notes."""
  seeds = results.get('seeds')
  title = f'# sge-jax re-identification results: {results["dataset"]}'
  lines = [title, '']
  if results.get('synthetic'):
    lines += ['> **Synthetic data.** These encodings come from the procedural '
              'demo walkers, not from a published benchmark; the numbers only '
              'show that the pipeline runs.', '']
  lines += run_record.shortened_banner(results)
  if seeds:
    lines += [f'Mean ± standard deviation over {len(seeds)} seeds (sample '
              'std, ddof = 1); each seed has its own encoders and RN. '
              'Per-seed results are in `seed_<s>/`.', '']
    lines += _seed_spread(results)
  lines += _settings_table(results) + ['']
  lines += run_record.how_made_lines(results)
  for protocol in results['protocols']:
    if not any(e['protocol'] == protocol
               for e in results['entries'].values()):
      continue
    lines += [f'## {_PROTOCOL_TITLES.get(protocol, f"Protocol {protocol}")}',
              '']
    lines += _window_section(results, protocol)
    lines += _walk_section(results, protocol)
  if results.get('notes'):
    lines += ['## Notes', ''] + [f'- {note}' for note in results['notes']]
    lines += ['']
  if results.get('plots'):
    lines += ['## Plots', '']
    lines += [f'![{name}]({name})' for name in results['plots']] + ['']
  return '\n'.join(lines)
