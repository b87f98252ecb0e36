"""Which released-code behaviours move the numbers: one table.

    python -m sge_jax.ablate --config=configs/demo.py --workdir=DIR [--config.x=...]

runs the configuration under ``procedure='clean'``, under ``'released'``, and
with each released quirk (``config.QUIRKS``) alone on top of clean, each in
``DIR/<variant>/``, and writes ``DIR/ablation.md`` and ``DIR/ablation.json``:
Rank-1, nAUC and mAP per variant with the RN's sample counts.

Cost: the clean run trains the encoders; every variant whose quirks do not
change the encoders (all but R7, R9, R10 where they apply) reuses them
(``encoder_workdir``) and only re-encodes and re-evaluates. A quirk that cannot
act on this configuration (R2/R3 without rev_rec_plus, R7 off BIWI, R9 when
every LA task already reconstructs in reverse, R10 without sorting, R11 without
CME) is listed as not applicable and not run. Running the command again
resumes: finished encoders are not retrained.
"""

from __future__ import annotations

import pathlib
from typing import Any, Optional

from absl import app, flags, logging
import ml_collections
from ml_collections import config_flags

from sge_jax import cli, pipeline
from sge_jax import config as config_lib
from sge_jax import workdir as workdir_lib
from sge_jax.errors import ConfigError
from sge_jax.evaluate.report import percent
from sge_jax.train import pretext

ABLATION_MARKDOWN = 'ablation.md'
ABLATION_JSON = 'ablation.json'


def applicable_quirks(config: ml_collections.ConfigDict) -> dict[str, str]:
  """Quirk field -> '' if it can act on this configuration, else why not."""
  model, data = config.model, config.data
  tasks = pretext.pretext_tasks(model.pretext, model.attention)
  is_plus = model.pretext == 'rev_rec_plus'
  is_cme = 'CME' in config.eval.protocols.upper() or data.name == 'CASIA_B_match'
  reasons = {
      'plus_from_rev_rec': '' if is_plus else 'needs model.pretext=rev_rec_plus',
      'plus_test_copies': '' if is_plus else 'needs model.pretext=rev_rec_plus',
      'biwi_two_thirds': '' if data.name == 'BIWI' else 'BIWI only',
      'reversed_la_mask': ('' if any(t.attention == 'LA' and not t.reversed_target
                                     for t in tasks)
                           else 'every LA task already reconstructs in reverse'),
      'redrawn_sorting': ('' if any(t.name == 'sorting' for t in tasks)
                          else 'no sorting pretext task'),
      'second_nearest': '' if is_cme else 'CME only',
  }
  return {field: reasons.get(field, '') for field in config_lib.QUIRKS.values()}


def variant_configs(config: ml_collections.ConfigDict, workdir: pathlib.Path
                    ) -> list[dict[str, Any]]:
  """The variants to run: name, quirks, config (or None), and why not run."""
  applicable = applicable_quirks(config)
  clean_dir = workdir / 'clean'

  def build(procedure: str, quirks: dict[str, bool],
            baseline: bool = False) -> ml_collections.ConfigDict:
    variant = ml_collections.ConfigDict(config.to_dict())
    with variant.unlocked():
      variant.procedure = procedure
      for field in config_lib.QUIRKS.values():
        variant.quirks[field] = quirks.get(field)
    variant = config_lib.resolve_config(variant)
    trains = any(variant.quirks[field] and not applicable[field]
                 for field in config_lib.ENCODER_QUIRKS)
    if not baseline and not trains:
      with variant.unlocked():
        variant.encoder_workdir = str(clean_dir)
        variant.stages = 'encode,evaluate'
    return variant

  variants = [{'name': 'clean', 'quirks': [],
               'config': build('clean', {}, baseline=True)},
              {'name': 'released', 'quirks': ['all'],
               'config': build('released', {})}]
  for code, field in config_lib.QUIRKS.items():
    entry = {'name': f'{code}_{field}', 'quirks': [f'{code} {field}'],
             'config': None, 'not_applicable': applicable[field]}
    if not applicable[field]:
      entry['config'] = build('clean', {field: True})
    variants.append(entry)
  return variants


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


def render_table(rows: list[dict[str, Any]]) -> str:
  """Markdown: one line per variant."""
  lines = ['| variant | encoders | A Rank-1 (%) | A nAUC (%) | B Rank-1 (%) | '
           'B mAP (%) | RN train sequences | RN train frames | test sequences '
           'scored / kept |',
           '|---|---|---|---|---|---|---|---|---|']
  for row in rows:
    if row.get('not_applicable'):
      lines.append(f'| {row["name"]} | not applicable: {row["not_applicable"]} '
                   '| | | | | | | |')
      continue
    lines.append(
        f'| {row["name"]} | {row["encoders"]} | {percent(row["rank1_a"])} | '
        f'{percent(row["nauc_a"])} | {percent(row["rank1_b"])} | '
        f'{percent(row["map_b"])} | {_count(row["rn_train_sequences"])} | '
        f'{_count(row["rn_train_frames"])} | '
        f'{_count(row["scored_test_sequences"])} / '
        f'{_count(row["test_sequences"])} |')
  return '\n'.join(lines) + '\n'


def run_ablation(config: ml_collections.ConfigDict,
                 workdir: str | pathlib.Path) -> list[dict[str, Any]]:
  """Runs every variant in ``workdir/<variant>`` and writes the table."""
  if config_lib.is_multi_seed(config):
    raise ConfigError('config.seeds: the ablation runs one seed; use '
                      "--config.seeds='' --config.seed=N")
  workdir = pathlib.Path(workdir)
  rows = []
  for variant in variant_configs(config, workdir):
    row = {'name': variant['name'], 'quirks': variant['quirks'],
           'not_applicable': variant.get('not_applicable', '')}
    if variant['config'] is not None:
      variant_config = variant['config']
      logging.info('[ablate] variant %s', variant['name'])
      results = pipeline.run(variant_config, workdir / variant['name'])
      row['encoders'] = ('shared (clean)' if variant_config.encoder_workdir
                         else 'trained')
      row.update(summarize(results))
    rows.append(row)
    # Rewritten after every variant: an interrupted ablation leaves its table so far.
    workdir_lib.write_json({'rows': rows}, workdir / ABLATION_JSON)
    workdir_lib.write_text_atomically(workdir / ABLATION_MARKDOWN,
                                      render_table(rows))
  return rows


_CONFIG = cli.define_config_flag(
    config_flags.DEFINE_config_file, 'config', None,
    'Config file, e.g. configs/demo.py.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None,
                               'Directory of the ablation (one folder per variant).')


def _main(workdir: pathlib.Path) -> None:
  rows = run_ablation(cli.loaded_config(_CONFIG), workdir)
  print(render_table(rows))
  print(f'table: {workdir / ABLATION_MARKDOWN}')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  cli.quiet_libraries()
  cli.exit_on_user_error(_main, pathlib.Path(_WORKDIR.value),
                         interrupted_hint='finished variants are kept; run the '
                         'same command again to go on')


if __name__ == '__main__':
  flags.mark_flag_as_required('config')
  flags.mark_flag_as_required('workdir')
  app.run(main, flags_parser=cli.parse_flags)
