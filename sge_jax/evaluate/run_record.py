"""How a run was made: the ``run`` section of results.json and the "How this
run was made" section of report.md.

results.json ``run``::

  sge_jax_version   the version that wrote these results
  config_hash       the run's config hash (config.json; the encoders' own is
                    ``encodings.config_hash``)
  reevaluation      True for ``python -m sge_jax.evaluate`` results
  data              format, dataset, source, split rule, normalisation,
                    sequence cap, and per split the sequences and people
  encoder           where the encoders were trained, the epoch and step its
                    training reached, the model; for encoders trained here
                    also the configured epochs, batch, learning rate,
                    temperature and early stopping
  shortened         why the run is shorter than the paper's (empty when it is
                    not): the ``smoke`` variant, fewer encoder or RN epochs
                    than the paper gives the dataset, a sequence cap
  stage_seconds     wall seconds of the run's data and encode stages from
                    the latest command that ran them, and of train summed
                    over the commands that trained (train_commands: how many,
                    when more than one; an interrupted command is not
                    counted); recorded in the run's metrics.jsonl as 'timing'
                    records, so a re-evaluation reports the original run's
                    timings; absent for a stage no command timed
  evaluate_seconds  wall seconds of the evaluation that wrote these results
                    (scoring; the plots and files not included)
  stored_results    the baselines' computations this evaluation read back
                    from the run's ``eval_cache/`` (``reused``) and ran
                    (``computed``), and that directory
                    (``sge_jax.evaluate.result_cache``); summed over seeds

Encoder steps and the epoch reached are read from the last 'train' record of
the metrics.jsonl of the run that trained the encoders.
"""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any, Optional

import numpy as np

from sge_jax import __version__
from sge_jax import workdir as workdir_lib
from sge_jax.config.settings import RunSettings
from sge_jax.config.variants import VARIANTS
from sge_jax.data import input_files
from sge_jax.encode.encodings import EncodingSet
from sge_jax.progress import format_duration

TIMING_STAGE = 'timing'
# A metrics.jsonl far larger is not a log of this package (as in plots.py).
MAX_METRICS_BYTES = 256 * 2**20
TIMED_STAGES = ('data', 'train', 'encode')
# The paper's epochs (docs/method.md §5 and §7; SPEC): encoder, RN.
PAPER_ENCODER_EPOCHS = {'KGBD': 150, 'CASIA_B': 100, 'CASIA_B_match': 100,
                        'BIWI': 400, 'IAS': 400, 'KS20': 400}
PAPER_RN_EPOCHS = {'KGBD': 200, 'KS20': 800, 'CASIA_B': 1000,
                   'CASIA_B_match': 1000, 'BIWI': 300, 'IAS': 300}


# ----------------------------------------------------------------- timings


def log_stage_time(run_dir: pathlib.Path, stage: str, seconds: float,
                   enabled: bool = True) -> None:
  """Records that ``stage`` took ``seconds`` in ``run_dir``'s metrics.jsonl
  (``enabled`` False: nothing, as on the processes other than 0)."""
  workdir_lib.MetricsLog(run_dir / workdir_lib.METRICS_FILE,
                         enabled=enabled).write(
      {'stage': TIMING_STAGE, 'step': 0, 'timed_stage': stage,
       'seconds': round(float(seconds), 3)})


def _records(path: pathlib.Path):
  """The JSON objects of a metrics.jsonl, line by line; unreadable lines, and
  a missing, unreadable, far too large file or one that is not a regular file
  (a FIFO would block) give nothing."""
  try:
    if (input_files.not_regular(path)
        or path.stat().st_size > MAX_METRICS_BYTES):
      return
    with open(path, encoding='utf-8', errors='replace') as lines:
      for line in lines:
        try:
          record = json.loads(line)
        except ValueError:
          continue
        if isinstance(record, dict):
          yield record
  except OSError:
    return


def recorded_stage_times(run_dir: pathlib.Path) -> dict[str, float]:
  """Stage -> wall seconds from ``run_dir``'s metrics.jsonl: data and encode
  of the latest command that ran them, train summed over the commands that
  trained (a resumed training; ``train_commands`` says how many)."""
  times, train_commands = {}, 0
  for record in _records(run_dir / workdir_lib.METRICS_FILE):
    stage, seconds = record.get('timed_stage'), record.get('seconds')
    if not (record.get('stage') == TIMING_STAGE and stage in TIMED_STAGES
            and isinstance(seconds, (int, float))
            and not isinstance(seconds, bool)
            and math.isfinite(seconds) and seconds >= 0):
      continue
    if stage == 'train':
      times[stage] = times.get(stage, 0.0) + float(seconds)
      train_commands += 1
    else:
      times[stage] = float(seconds)
  ordered = {stage: times[stage] for stage in TIMED_STAGES if stage in times}
  if train_commands > 1:
    ordered['train_commands'] = train_commands
  return ordered


def last_train_step(run_dir: pathlib.Path) -> Optional[int]:
  """The step of the last 'train' record of ``run_dir``'s metrics.jsonl
  (None: none), to tell whether a command trained at all."""
  return _last_train_record(run_dir).get('step')


def _last_train_record(run_dir: pathlib.Path) -> dict[str, Any]:
  last = {}
  for record in _records(run_dir / workdir_lib.METRICS_FILE):
    if record.get('stage') == 'train' and isinstance(record.get('step'), int):
      last = record
  return last


# ----------------------------------------------------------------- the record


def _split_rule(run: RunSettings) -> str:
  data = run.data
  if data.format == 'synthetic':
    synthetic = data.synthetic
    return (f'procedural walkers: {synthetic.num_people} people, '
            f'{synthetic.recordings_per_person} recordings each, of which '
            f'{synthetic.test_recordings_per_person} per person are test')
  if data.format == 'npz':
    return (f'{data.split_field} in {data.train_values} -> train, the other '
            'values -> test')
  rule = "the authors' train / test files"
  if data.view:
    rule += f', view {data.view}'
  if data.probe:
    rule += f', test splits {", ".join(data.probe)}'
  return rule


def is_smoke(run: RunSettings) -> bool:
  """True when every field the ``smoke`` config variant sets has its value."""
  record = json.loads(run.record)
  for field, value in VARIANTS['smoke'].items():
    section = record
    for part in field.split('.'):
      section = section.get(part) if isinstance(section, dict) else None
    if section != value:
      return False
  return True


def shortened_reasons(run: RunSettings, dataset: str) -> list[str]:
  """Why the run is shorter than the paper's, one text each ([] if it is
  not): the smoke variant, fewer epochs than the paper's for ``dataset``,
  a sequence cap."""
  reasons = []
  if is_smoke(run):
    reasons.append('the smoke variant (tiny model, a few epochs)')
  paper = PAPER_ENCODER_EPOCHS.get(dataset)
  # Encoders from another run: that run's report says how they were trained.
  if paper and not run.encoder_workdir and run.train.epochs < paper:
    reasons.append(f'encoder epochs {run.train.epochs} (the paper: {paper})')
  paper = PAPER_RN_EPOCHS.get(dataset)
  if paper and run.rn.epochs < paper:
    reasons.append(f'RN epochs {run.rn.epochs} (the paper: {paper})')
  if run.data.max_sequences:
    reasons.append(f'at most {run.data.max_sequences} sequences per split '
                   '(data.max_sequences)')
  return reasons


def run_section(run: RunSettings, encoding_set: EncodingSet,
                run_dir: pathlib.Path, reevaluation: bool,
                evaluate_seconds: float,
                stored_results: Optional[dict[str, Any]] = None
                ) -> dict[str, Any]:
  """results.json's ``run`` section (module docstring).

  Args:
    run: the evaluated run's settings.
    encoding_set: the encodings scored.
    run_dir: the run's directory (its metrics.jsonl holds the timings).
    reevaluation: these results come from ``python -m sge_jax.evaluate``.
    evaluate_seconds: wall seconds of this evaluation.
    stored_results: ``ResultCache.record()`` of this evaluation.
  """
  meta = encoding_set.metadata
  encoder_dir = (pathlib.Path(run.encoder_workdir) if run.encoder_workdir
                 else run_dir)
  last = _last_train_record(encoder_dir)
  splits = {}
  for name in encoding_set.split_names:
    labels = encoding_set.select(name).labels
    splits[name] = {'sequences': int(labels.size),
                    'people': int(np.unique(labels).size)}
  return {
      'sge_jax_version': __version__,
      'config_hash': run.config_hash,
      'reevaluation': bool(reevaluation),
      'data': {
          'format': run.data.format, 'dataset': meta.dataset,
          'source': meta.data_source or None,
          'split_rule': _split_rule(run), 'length': meta.length,
          'normalization': run.data.normalization,
          'max_sequences': run.data.max_sequences, 'splits': splits,
      },
      'encoder': {
          'trained_in': run.encoder_workdir or 'this run',
          'epoch_reached': last.get('epoch'), 'steps': last.get('step'),
          'hidden': meta.hidden, 'pretext': meta.pretext,
          'attention': meta.attention, 'procedure': meta.procedure,
          # Encoders from another run were trained with its train.* settings.
          **({} if run.encoder_workdir else {
              'epochs': run.train.epochs,
              'batch_size': run.train.batch_size,
              'learning_rate': run.train.learning_rate,
              'temperature': run.train.temperature,
              'early_stopping': run.train.early_stopping}),
      },
      'shortened': shortened_reasons(run, meta.dataset),
      'stage_seconds': recorded_stage_times(run_dir),
      'evaluate_seconds': round(float(evaluate_seconds), 3),
      **({} if stored_results is None else {'stored_results': stored_results}),
  }


def aggregate_run(per_seed: list[Optional[dict[str, Any]]],
                  stat) -> Optional[dict[str, Any]]:
  """The ``run`` section of a multi-seed aggregate: the first seed's, with
  every seed's config hash and each timing as ``stat`` ({mean, std,
  values}) over the seeds; None when a seed has none (older results)."""
  if not per_seed or any(not run for run in per_seed):
    return None
  merged = dict(per_seed[0])
  merged['config_hash'] = [run.get('config_hash') for run in per_seed]
  stages = [stage for stage in (*TIMED_STAGES, 'train_commands')
            if any(stage in run.get('stage_seconds', {}) for run in per_seed)]
  merged['stage_seconds'] = {
      stage: stat([run.get('stage_seconds', {}).get(stage)
                   for run in per_seed]) for stage in stages}
  merged['evaluate_seconds'] = stat([run.get('evaluate_seconds')
                                     for run in per_seed])
  if all('stored_results' in run for run in per_seed):
    merged['stored_results'] = {
        count: sum(run['stored_results'][count] for run in per_seed)
        for count in ('reused', 'computed')}
  return merged


# ----------------------------------------------------------------- report.md


def _duration(value) -> str:
  """Seconds, or {mean, std} of seconds, as 'm:ss' ('m:ss ± m:ss')."""
  if isinstance(value, dict):
    if value.get('mean') is None:
      return '–'
    return (f'{format_duration(value["mean"])} ± '
            f'{format_duration(value["std"])}')
  return '–' if value is None else format_duration(value)


def _count(value) -> str:
  if isinstance(value, dict):
    return '/'.join(str(v) for v in value.get('values', [])) or '–'
  return str(value)


def shortened_banner(results: dict[str, Any]) -> list[str]:
  """The warning at the top of report.md of a shortened run ([] if none)."""
  reasons = (results.get('run') or {}).get('shortened')
  if not reasons:
    return []
  return ['> **Shortened run: not comparable with the paper\'s numbers.** '
          + '; '.join(reasons) + '.', '']


def _encoder_text(encoder: dict[str, Any]) -> str:
  reached = []
  if encoder.get('epoch_reached') is not None:
    reached.append(f'epoch {encoder["epoch_reached"]} reached')
  if encoder.get('steps') is not None:
    reached.append(f'{encoder["steps"]} steps')
  model = (f'{encoder["pretext"]} / {encoder["attention"]}, k = '
           f'{encoder["hidden"]}, procedure {encoder["procedure"]}')
  if encoder['trained_in'] != 'this run':
    return (f'trained in {encoder["trained_in"]} (see its report.md); {model}'
            + (f'; {", ".join(reached)}' if reached else ''))
  return (f'{encoder["epochs"]} epochs'
          + (f' ({", ".join(reached)})' if reached else '')
          + f', batch {encoder["batch_size"]}, lr '
          f'{encoder["learning_rate"]:g}, temperature '
          f'{encoder["temperature"]:g}, early stopping '
          f'{encoder["early_stopping"]}; {model}')


def how_made_lines(results: dict[str, Any]) -> list[str]:
  """report.md's "How this run was made" section ([] without a ``run``
  section: results written before it existed)."""
  run = results.get('run')
  if not run:
    return []
  data = run['data']
  hashes = run['config_hash']
  rows = [
      ('sge-jax', f'{run["sge_jax_version"]} (these results); encodings by '
       f'{results.get("encodings", {}).get("sge_jax_version") or "unknown"}'),
      ('config hash', ', '.join(hashes) if isinstance(hashes, list)
       else hashes),
      ('data', f'{data["dataset"]} ({data["format"]} format'
       + (f', {data["source"]}' if data.get('source') else '') + ')'),
      ('split rule', data['split_rule']),
      ('sequences / people per split', ', '.join(
          f'{name} {split["sequences"]} / {split["people"]}'
          for name, split in data['splits'].items())),
      ('normalisation', data['normalization']),
      ('encoder training', _encoder_text(run['encoder'])),
  ]
  if data.get('max_sequences'):
    rows.append(('sequence cap', f'at most {data["max_sequences"]} per split '
                 '(data.max_sequences)'))
  stages = dict(run.get('stage_seconds') or {})
  commands = stages.pop('train_commands', None)
  timed = ', '.join(f'{stage} {_duration(seconds)}'
                    for stage, seconds in stages.items())
  if commands is not None:
    timed += f' (train summed over {_count(commands)} commands)'
  per_seed = ' per seed (mean ± std)' if results.get('seeds') else ''
  rows.append((f'wall time of the run{per_seed}',
               (timed + ' (the latest command that ran each stage)') if timed
               else 'not recorded'))
  rows.append((f'wall time of this evaluation{per_seed}',
               _duration(run.get('evaluate_seconds'))
               + (' (a re-evaluation: the times above are the original '
                  "run's)" if run.get('reevaluation') else '')))
  stored = run.get('stored_results') or {}
  if stored.get('reused'):
    rows.append(('baselines', f'{stored["reused"]} of '
                 f'{stored["reused"] + stored["computed"]} computations read '
                 'back from eval_cache/ (the same data, settings and code '
                 'computed them before)'))
  lines = ['## How this run was made', '', '| | |', '|---|---|']
  # A '|' in a path would end the cell.
  lines += [f'| {name} | {str(value).replace("|", chr(92) + "|")} |'
            for name, value in rows]
  return lines + ['']
