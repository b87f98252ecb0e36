"""Which released-code behaviours move the numbers: one table.

    python -m sge_jax.ablate --config=configs/demo.py --workdir=DIR [--config.x=...]

runs the configuration under ``procedure='clean'``, under ``'released'``, and
with each released quirk (``config.QUIRKS``) on top of clean, each in
``DIR/<variant>/``, and writes ``DIR/ablation.md`` and ``DIR/ablation.json``:
Rank-1, nAUC and mAP per variant with the RN's sample counts, and how the table
was made (command, resolved config, seed, data, sge-jax version).

Variants: R3 acts only together with R1, so it runs as ``R1+R3``; R12 is a
check (the training and test person sets are equal), not a variant: its row
says whether the check passes on the clean run's encodings. A quirk that cannot
act on this configuration (``config.quirk_applicability``: R2/R3 without
rev_rec_plus, R7 off BIWI, R9 when every LA task already reconstructs in
reverse, R10 without a sorting task, R11 without CME) is listed as not
applicable and not run. A variant that fails is written in its row with the
error, and the table completes.

Cost: the clean run trains the encoders; every variant whose quirks do not
change the encoders (all but R7, R9, R10 where they apply) reuses them
(``encoder_workdir``) and only re-encodes and re-evaluates; the baselines,
which do not depend on the encoders, are computed once for every variant that
scores the same data (``DIR/eval_cache/``, ``result_cache.shared_by_runs``).
Running the command
again resumes: finished encoders are not retrained. While it runs, the table
so far is written to ``ablation.md``, or, when that already holds a complete
table from an earlier run, to ``ablation.partial.md`` (and ``.json``), so a
complete table is only ever replaced by another complete one. Each variant
is announced with its place and the ETA of those left (``remaining_seconds``:
a variant that trains encoders as long as the clean run, the others as long
as the mean of those done so far).
"""

from __future__ import annotations

import json
import pathlib
import shlex
import sys
import time
import traceback
from typing import Any, Optional

from absl import app, flags, logging
import jax
import ml_collections
from ml_collections import config_flags

from sge_jax import __version__, cli, pipeline
from sge_jax import workdir as workdir_lib
from sge_jax.config.checks import invalid, is_multi_seed, parse_stages
from sge_jax.config.fields import ENCODER_QUIRKS, QUIRKS
from sge_jax.config.quirks import quirk_applicability, quirk_label, quirks_on
from sge_jax.config.resolution import resolve, resolve_config, validate_config
from sge_jax.config.settings import RunSettings
from sge_jax.encode import load_encodings
from sge_jax.errors import USER_ERRORS, ConfigError
from sge_jax.evaluate import result_cache
from sge_jax.evaluate.report import percent
from sge_jax.progress import format_duration
from sge_jax.released import require_equal_person_sets

ABLATION_MARKDOWN = 'ablation.md'
ABLATION_JSON = 'ablation.json'
PARTIAL_MARKDOWN = 'ablation.partial.md'
PARTIAL_JSON = 'ablation.partial.json'
# A quirk that acts only together with another: it runs with both on.
COMPANIONS = {'plus_test_copies': ('extraction_batches',)}
# Quirks that are checks, not variants.
CHECKS = ('equal_id_counts',)
CLEAN = 'clean'


def check_ablation_config(config: ml_collections.ConfigDict) -> None:
  """Refuses, before any work, what the ablation cannot honour.

  Raises:
    ConfigError: several seeds, a procedure or quirk fields set by the user
      (the ablation sets them itself), stages without evaluate, or
      eval.level='walk' (the table compares window-level entries).
  """
  if is_multi_seed(config):
    raise ConfigError('config.seeds: the ablation runs one seed; use '
                      "--config.seeds='' --config.seed=N")
  if config.get('procedure', 'clean') != 'clean':
    raise ConfigError(
        f'config.procedure={config.procedure!r}: the ablation runs the clean '
        'and the released procedures itself; drop --config.procedure (and the '
        ':released variant).')
  given = [field for field in QUIRKS.values()
           if (config.get('quirks') or {}).get(field) is not None]
  if given:
    raise ConfigError(
        f'config.quirks.{given[0]}={config.quirks[given[0]]!r}: the ablation '
        'switches every quirk itself (clean, released, each on its own); drop '
        f'--config.quirks.{", --config.quirks.".join(given)}.')
  if 'evaluate' not in parse_stages(config.stages):
    raise invalid('stages', config.stages,
                  'stages that include evaluate: the ablation compares '
                  'evaluations')
  if str(config.eval.level) == 'walk':
    raise invalid('eval.level', config.eval.level,
                  "'window' or 'both': the ablation compares the "
                  'window-level entries')


def variant_plan(config: ml_collections.ConfigDict,
                 dataset: str) -> list[dict[str, Any]]:
  """Every row after 'clean': name, the quirk fields on, the kind ('variant',
  'check' or 'not applicable') and why a quirk cannot act."""
  plan = [{'name': 'released', 'fields': list(QUIRKS.values()),
           'kind': 'variant'}]
  for code, field in QUIRKS.items():
    fields = [*COMPANIONS.get(field, ()), field]
    codes = [quirk_label(f).split()[0] for f in fields]
    with_fields = _settings(_with_quirks(config, 'clean', fields))
    reason = quirk_applicability(with_fields, dataset)[field]
    plan.append({
        'name': '+'.join(codes) + f'_{field}', 'fields': fields,
        'kind': ('not applicable' if reason else
                 'check' if field in CHECKS else 'variant'),
        'not_applicable': reason})
  return plan


def _with_quirks(config: ml_collections.ConfigDict, procedure: str,
                 fields: list[str]) -> ml_collections.ConfigDict:
  """A resolved copy with ``procedure`` and exactly ``fields`` on (all for
  'released')."""
  variant = ml_collections.ConfigDict(config.to_dict())
  with variant.unlocked():
    variant.procedure = procedure
    for field in QUIRKS.values():
      variant.quirks[field] = None if procedure == 'released' else (
          field in fields)
  return resolve_config(variant)


def _settings(config: ml_collections.ConfigDict) -> RunSettings:
  """The settings of a variant's config (which quirks can act in it)."""
  return resolve(config, jax.device_count()).runs[0]


def variant_config(config: ml_collections.ConfigDict, row: dict[str, Any],
                   clean_dir: pathlib.Path, dataset: str
                   ) -> ml_collections.ConfigDict:
  """The config of one variant: it reuses the clean run's encoders unless one
  of its quirks changes what the encoders learn here."""
  procedure = 'released' if row['name'] == 'released' else 'clean'
  variant = _with_quirks(config, procedure, row['fields'])
  acting = quirks_on(_settings(variant), dataset)
  trains = any(quirk_label(field) in acting
               for field in ENCODER_QUIRKS)
  if not trains:
    with variant.unlocked():
      variant.encoder_workdir = str(clean_dir)
      variant.stages = 'encode,evaluate'
  return variant


def _entry(results: dict[str, Any], protocol: str) -> dict[str, Any]:
  """The first scored window-level entry of ``protocol`` (the ablation
  compares the released behaviours on windows, as the paper scores them)."""
  for entry in results['entries'].values():
    if (entry['protocol'] == protocol and 'rank1' in entry
        and entry.get('level') != 'walk'):
      return entry
  return {}


def summarize(results: dict[str, Any]) -> dict[str, Any]:
  """The table row of one variant's results.json."""
  a, retrieval = _entry(results, 'A'), (_entry(results, 'B')
                                        or _entry(results, 'CME'))
  rn = results.get('rn') or {}
  per_person = rn.get('train_sequences_per_person') or {}
  frames = rn.get('train_frames_per_person') or {}
  return {
      'rank1_a': a.get('rank1'), 'nauc_a': a.get('nauc'),
      'rank1_b': retrieval.get('rank1'), 'map_b': retrieval.get('map'),
      'rn_train_sequences': sum(per_person.values()) if per_person else None,
      'rn_train_frames': sum(frames.values()) if frames else None,
      'test_sequences': a.get('num_sequences'),
      'scored_test_sequences': a.get('num_scored_sequences'),
      'selection': results.get('selection_label'),
  }


def _count(value: Optional[int]) -> str:
  return '–' if value is None else str(value)


def _one_line(text: str) -> str:
  return ' '.join(str(text).split()).replace('|', '/')


def render_table(rows: list[dict[str, Any]]) -> str:
  """Markdown: one line per row."""
  lines = ['| variant | encoders | A Rank-1 (%) | A nAUC (%) | B Rank-1 (%) | '
           'B mAP (%) | RN train sequences | RN train frames | test sequences '
           'scored / kept |',
           '|---|---|---|---|---|---|---|---|---|']
  for row in rows:
    if row.get('kind') in ('not applicable', 'check') or 'error' in row:
      text = (f'not applicable: {row["not_applicable"]}'
              if row.get('kind') == 'not applicable'
              else f'check, not a variant: {row["check"]}'
              if row.get('kind') == 'check' else f'failed: {row["error"]}')
      lines.append(f'| {row["name"]} | {_one_line(text)} | | | | | | | |')
      continue
    lines.append(
        f'| {row["name"]} | {row["encoders"]} | {percent(row["rank1_a"])} | '
        f'{percent(row["nauc_a"])} | {percent(row["rank1_b"])} | '
        f'{percent(row["map_b"])} | {_count(row["rn_train_sequences"])} | '
        f'{_count(row["rn_train_frames"])} | '
        f'{_count(row["scored_test_sequences"])} / '
        f'{_count(row["test_sequences"])} |')
  return '\n'.join(lines) + '\n'


def render_markdown(record: dict[str, Any]) -> str:
  """ablation.md: how it was made, then the table."""
  state = '' if record['complete'] else ' (incomplete: still running or stopped)'
  lines = [f'# Released-code ablation: {record["dataset"]}{state}', '',
           f'- command: `{record["command"]}`',
           f'- seed {record["seed"]}, data: {record["data"]}',
           f'- sge-jax {record["sge_jax_version"]}; the resolved config is in '
           f'{ABLATION_JSON}', '',
           render_table(record['rows'])]
  return '\n'.join(lines)


def _data_description(config: ml_collections.ConfigDict) -> str:
  data = config.data
  where = {'authors': f'{data.root}/{data.name}', 'npz': data.path,
           'synthetic': 'built-in synthetic walkers'}.get(data.format, '')
  return (f'{data.format} ({where}), f = {data.length}, normalization '
          f'{data.normalization}')


def _write_table(workdir: pathlib.Path, record: dict[str, Any],
                 partial: bool) -> None:
  """The table so far: to the partial files while an earlier complete table
  stands, else to ablation.md/json (the partial files go once complete)."""
  markdown, json_name = ((PARTIAL_MARKDOWN, PARTIAL_JSON) if partial
                         else (ABLATION_MARKDOWN, ABLATION_JSON))
  workdir_lib.write_json(record, workdir / json_name)
  workdir_lib.write_text_atomically(workdir / markdown, render_markdown(record))
  if not partial and record['complete']:
    for name in (PARTIAL_MARKDOWN, PARTIAL_JSON):
      (workdir / name).unlink(missing_ok=True)


def _has_complete_table(workdir: pathlib.Path) -> bool:
  try:
    record = json.loads((workdir / ABLATION_JSON).read_text())
  except (OSError, ValueError):      # absent or unreadable
    return False
  return isinstance(record, dict) and record.get('complete') is True


def _run_variant(config: ml_collections.ConfigDict, workdir: pathlib.Path,
                 row: dict[str, Any]) -> None:
  """Runs one variant into ``row``; a failure is written in the row."""
  try:
    results = pipeline.run(config, workdir / row['name'])
  except USER_ERRORS as error:
    row['error'] = str(error)
  except Exception as error:  # pylint: disable=broad-except
    # A bug, not a user mistake: the table still completes; the traceback is
    # kept next to the variant's outputs.
    trace = workdir / row['name'] / 'ablation_error.txt'
    trace.parent.mkdir(parents=True, exist_ok=True)
    trace.write_text(traceback.format_exc())
    row['error'] = f'{type(error).__name__}: {error} (traceback in {trace})'
  else:
    row['encoders'] = ('shared (clean)' if config.encoder_workdir
                       else 'trained')
    row.update(summarize(results))
  if 'error' in row:
    logging.warning('[ablate] %s failed: %s', row['name'], row['error'])
  else:
    logging.info('[ablate] %s: A Rank-1 %s%%, B Rank-1 %s%%', row['name'],
                 percent(row['rank1_a']), percent(row['rank1_b']))


def _person_sets_check(clean_dir: pathlib.Path) -> str:
  """R12's check on the clean run's encodings, as a row text."""
  try:
    encoding_set = load_encodings(clean_dir / workdir_lib.ENCODINGS_FILE)
    require_equal_person_sets({name: encoding_set.select(name).labels
                               for name in encoding_set.split_names})
  except USER_ERRORS as error:
    return f'fails: {error}'
  return 'passes: the training and test splits hold the same people'


def remaining_seconds(trains_encoders: list[bool], clean_seconds: float,
                      shared_seconds: list[float]) -> Optional[float]:
  """The ETA of the variants still to run: each that trains encoders as long
  as the clean run, each that reuses them as long as the mean of those that
  did so far (None while none has: its cost is not known yet)."""
  shared = sum(1 for trains in trains_encoders if not trains)
  if shared and not shared_seconds:
    return None
  mean_shared = sum(shared_seconds) / max(len(shared_seconds), 1)
  return ((len(trains_encoders) - shared) * clean_seconds
          + shared * mean_shared)


def variant_line(name: str, index: int, total: int,
                 eta: Optional[float]) -> str:
  """'[ablate] variant R1_x (3 of 9), ETA 2:10' (ETA '?' while unknown)."""
  return (f'[ablate] variant {name} ({index} of {total}), ETA '
          + ('?' if eta is None else format_duration(eta)))


def run_ablation(config: ml_collections.ConfigDict,
                 workdir: str | pathlib.Path,
                 command: str = '') -> list[dict[str, Any]]:
  """Runs every variant in ``workdir/<variant>`` and writes the table.

  Raises:
    ConfigError: what ``check_ablation_config`` refuses, or a bad config
      value, before any work.
  """
  check_ablation_config(config)
  resolved = resolve_config(config)
  validate_config(resolved, jax.device_count())
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  partial = _has_complete_table(workdir)
  record = {'complete': False, 'command': command,
            'sge_jax_version': __version__, 'seed': int(resolved.seed),
            'data': _data_description(resolved), 'dataset': resolved.data.name,
            'config': resolved.to_dict(), 'rows': []}

  # The variants evaluate one data set: its baselines are computed once.
  with result_cache.shared_by_runs(workdir / result_cache.CACHE_DIR):
    _run_variants(resolved, workdir, record, partial)
  record['complete'] = True
  _write_table(workdir, record, partial=False)
  return record['rows']


def _run_variants(resolved: ml_collections.ConfigDict, workdir: pathlib.Path,
                  record: dict[str, Any], partial: bool) -> None:
  """Runs clean, then every variant of the plan, into ``record['rows']``,
  writing the table after each."""
  rows = record['rows']
  clean_dir = workdir / CLEAN
  clean = {'name': CLEAN, 'quirks': [], 'kind': 'variant'}
  rows.append(clean)
  logging.info('[ablate] variant %s (trains the encoders; the variants after '
               'it are counted once it is done)', CLEAN)
  started = time.monotonic()
  _run_variant(_with_quirks(resolved, 'clean', []), workdir, clean)
  clean_seconds = time.monotonic() - started
  _write_table(workdir, record, partial)
  if 'error' in clean:
    for planned in variant_plan(resolved, resolved.data.name):
      rows.append({'name': planned['name'], 'kind': 'variant',
                   'error': 'not run: the clean run failed'})
  else:
    dataset = load_encodings(clean_dir / workdir_lib.ENCODINGS_FILE
                             ).metadata.dataset
    record['dataset'] = dataset
    plan = variant_plan(resolved, dataset)
    configs = {planned['name']: variant_config(resolved, planned, clean_dir,
                                               dataset)
               for planned in plan if planned['kind'] == 'variant'}
    trains = [not configs[name].encoder_workdir for name in configs]
    shared_seconds: list[float] = []
    for planned in plan:
      row = {'name': planned['name'],
             'quirks': [quirk_label(f) for f in planned['fields']],
             'kind': planned['kind'],
             'not_applicable': planned.get('not_applicable', '')}
      rows.append(row)
      if planned['kind'] == 'check':
        row['check'] = _person_sets_check(clean_dir)
      elif planned['kind'] == 'variant':
        index = len(configs) - len(trains) + 1
        logging.info('%s', variant_line(
            planned['name'], index + 1, len(configs) + 1,
            remaining_seconds(trains, clean_seconds, shared_seconds)))
        started = time.monotonic()
        _run_variant(configs[planned['name']], workdir, row)
        if not trains.pop(0):
          shared_seconds.append(time.monotonic() - started)
      _write_table(workdir, record, partial)


_CONFIG = cli.define_config_flag(
    config_flags.DEFINE_config_file, 'config', None,
    'Config file, e.g. configs/demo.py.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None,
                               'Directory of the ablation (one folder per variant).')


def _main(workdir: pathlib.Path) -> None:
  rows = run_ablation(cli.loaded_config(_CONFIG), workdir,
                      command=shlex.join(['python', '-m', 'sge_jax.ablate',
                                          *sys.argv[1:]]))
  print(render_table(rows), end='')
  print(f'table: {workdir / ABLATION_MARKDOWN}')


def main(argv):
  if len(argv) > 1:
    cli.exit_with_user_error(f'unexpected arguments: {" ".join(argv[1:])} '
                             '(overrides are written --config.<field>=<value>)',
                             flags_hint=True)
  cli.quiet_libraries()
  cli.exit_on_user_error(_main, pathlib.Path(_WORKDIR.value),
                         interrupted_hint='finished variants are kept; run the '
                         'same command again to go on')


if __name__ == '__main__':
  flags.mark_flag_as_required('config')
  flags.mark_flag_as_required('workdir')
  app.run(main, flags_parser=cli.parse_flags)
