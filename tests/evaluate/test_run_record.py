"""How a run was made: results.json's 'run' section and report.md
(sge_jax.evaluate.run_record, sge_jax.evaluate.report)."""

import json
import os

import pytest

from sge_jax import pipeline, reevaluation
from sge_jax import workdir as workdir_lib
from sge_jax.config import get_config
from sge_jax.evaluate import report, run_record
from tests.fixtures.pipeline import resolved_run, tiny_config


def _config(**overrides):
  return tiny_config(**{'eval.baselines': False, 'eval.protocols': 'A',
                        **overrides})


@pytest.fixture(scope='module')
def finished_run(tmp_path_factory):
  """A finished tiny run: (workdir, its results)."""
  workdir = tmp_path_factory.mktemp('run')
  results = pipeline.run(_config(), workdir)
  return workdir, results


@pytest.mark.slow
def test_results_say_how_the_run_was_made_and_how_long_each_stage_took(
    finished_run):
  workdir, results = finished_run
  run = json.loads((workdir / 'results.json').read_text())['run']
  assert run == json.loads(json.dumps(results['run']))
  assert run['config_hash'] == resolved_run(_config()).config_hash
  assert run['sge_jax_version'] and run['reevaluation'] is False
  # 4 synthetic people, 2 training recordings of 6 windows each, 1 test one.
  assert run['data']['splits'] == {'train': {'sequences': 48, 'people': 4},
                                   'test': {'sequences': 24, 'people': 4}}
  assert run['data']['split_rule'].startswith('procedural walkers: 4 people')
  assert run['data']['normalization'] == 'none'
  encoder = run['encoder']
  assert encoder['trained_in'] == 'this run'
  assert (encoder['epochs'], encoder['batch_size']) == (2, 8)
  # 48 sequences in batches of 8: 6 steps an epoch, 2 epochs.
  assert (encoder['epoch_reached'], encoder['steps']) == (2, 12)
  assert set(run['stage_seconds']) == {'data', 'train', 'encode'}
  assert all(seconds >= 0 for seconds in run['stage_seconds'].values())
  assert run['evaluate_seconds'] >= 0
  assert run['shortened'] == []       # demo data: no paper epochs to compare
  text = (workdir / 'report.md').read_text()
  assert '## How this run was made' in text
  assert f'| config hash | {run["config_hash"]} |' in text
  assert '| wall time of the run | data ' in text
  assert 'Shortened run' not in text


def test_reevaluation_keeps_the_runs_timings_and_says_so(finished_run):
  workdir, original = finished_run
  results, out_dir = reevaluation.reevaluate(workdir)
  assert results['entries'] == original['entries']
  run = results['run']
  assert run['reevaluation'] is True
  assert run['stage_seconds'] == original['run']['stage_seconds']
  text = (out_dir / 'report.md').read_text()
  assert "a re-evaluation: the times above are the original run's" in text


def test_a_rerun_of_a_finished_training_keeps_its_train_time(finished_run):
  workdir, original = finished_run
  again = pipeline.run(_config(), workdir)       # training already finished
  assert again['run']['stage_seconds']['train'] == (
      original['run']['stage_seconds']['train'])
  timings = [json.loads(line) for line in
             (workdir / workdir_lib.METRICS_FILE).read_text().splitlines()
             if '"timing"' in line]
  assert [t['timed_stage'] for t in timings].count('train') == 1


def test_train_time_sums_the_commands_that_trained(tmp_path):
  for seconds in (10.0, 20.5):
    run_record.log_stage_time(tmp_path, 'train', seconds)
  run_record.log_stage_time(tmp_path, 'encode', 3.0)
  run_record.log_stage_time(tmp_path, 'encode', 4.0)   # the latest counts
  with open(tmp_path / workdir_lib.METRICS_FILE, 'a') as log:
    log.write('{"stage": "timing", "timed_stage": "train", "seconds": -1}\n'
              '{"stage": "timing", "timed_stage": "train", "seconds": '
              'Infinity}\n'
              '{"stage": "timing", "timed_stage": "train", "seconds": true}\n'
              'not json\n')
  assert run_record.recorded_stage_times(tmp_path) == {
      'train': 30.5, 'encode': 4.0, 'train_commands': 2}
  assert run_record.recorded_stage_times(tmp_path / 'missing') == {}
  fifo = tmp_path / 'fifo'
  fifo.mkdir()
  os.mkfifo(fifo / workdir_lib.METRICS_FILE)      # never opened: no hang
  assert run_record.recorded_stage_times(fifo) == {}
  assert run_record.last_train_step(fifo) is None


@pytest.mark.parametrize('overrides,reasons', [
    ({'data.name': 'KGBD', 'train.epochs': 149, 'rn.epochs': 200}, [
        'encoder epochs 149 (the paper: 150)']),
    ({'data.name': 'KS20', 'train.epochs': 400, 'rn.epochs': 5,
      'data.max_sequences': 64}, [
          'RN epochs 5 (the paper: 800)',
          'at most 64 sequences per split (data.max_sequences)']),
    ({'data.name': 'KGBD', 'train.epochs': 150, 'rn.epochs': 200}, []),
])
def test_runs_shorter_than_the_papers_are_named(overrides, reasons):
  config = get_config()
  config.update_from_flattened_dict(overrides)
  run = resolved_run(config)
  assert run_record.shortened_reasons(run, run.data.name) == reasons


def test_the_smoke_variant_is_a_shortened_run_and_report_md_warns():
  run = resolved_run(get_config('smoke'))
  reasons = run_record.shortened_reasons(run, 'demo')
  assert reasons[0] == 'the smoke variant (tiny model, a few epochs)'
  banner = run_record.shortened_banner({'run': {'shortened': reasons}})
  assert banner[0].startswith('> **Shortened run: not comparable')
  assert run_record.shortened_banner({'run': {'shortened': []}}) == []
  summary = report.summary_lines({
      'dataset': 'demo', 'selection_label': 'val', 'seed': 0, 'entries': {},
      'run': {'shortened': reasons}})
  assert summary[1] == (
      'shortened run, not comparable with the paper: the smoke variant (tiny '
      'model, a few epochs); at most 256 sequences per split '
      '(data.max_sequences)')
  assert run_record.shortened_banner({}) == []     # results of older versions


def _entry(classes, **extra):
  return {'protocol': 'A', 'label': 'test', 'num_sequences': 10,
          'num_classes': classes, 'rank1': 0.5, 'rank5': 1.0, 'rank10': None,
          'nauc': 0.9, **extra}


def test_rank_k_columns_only_where_k_is_below_the_number_of_classes():
  assert report.shown_ranks([_entry(4)]) == (1,)
  assert report.shown_ranks([_entry(5)]) == (1,)
  assert report.shown_ranks([_entry(6)]) == (1, 5)
  assert report.shown_ranks([_entry(4), _entry(11)]) == (1, 5, 10)
  assert report.shown_ranks([_entry({'mean': 8, 'std': 0})]) == (1, 5)
  assert report.shown_ranks([_entry(20, skipped='no people')]) == (1,)
  table = report._protocol_table({'entries': {'A/test': _entry(4)}}, 'A')
  assert table[0] == ('| probe set | method | Rank-1 (%) | nAUC (%) | test '
                      'sequences | classes |')
  assert all(line.count('|') == 7 for line in table)


def test_per_person_counts_are_folded(finished_run):
  _, results = finished_run
  lines = report._settings_table(results)
  start = lines.index('<details><summary>RN training sequences per person '
                      '(4 people)</summary>')
  assert lines[-1] == '</details>'
  assert '| person | sequences |' in lines[start:]
  assert not any(line.startswith('| RN training sequences per person')
                 for line in lines)


def test_a_multi_seed_report_shows_the_spread_and_the_timings(tmp_path):
  per_seed = []
  for seed, rank1, train in ((0, 0.5, 10.0), (1, 0.75, 14.0)):
    run_dir = tmp_path / f'seed_{seed}'
    run_dir.mkdir()
    run_record.log_stage_time(run_dir, 'train', train)
    per_seed.append({'run': {'config_hash': f'h{seed}',
                             'stage_seconds': run_record.recorded_stage_times(
                                 run_dir),
                             'evaluate_seconds': 1.0}, 'rank1': rank1})
  merged = run_record.aggregate_run(
      [r['run'] for r in per_seed],
      lambda values: {'mean': sum(values) / len(values), 'std': 2.0,
                      'values': values})
  assert merged['config_hash'] == ['h0', 'h1']
  assert merged['stage_seconds']['train']['mean'] == 12.0
  assert run_record.aggregate_run([per_seed[0]['run'], None], None) is None
  spread = report._seed_spread({
      'seeds': [0, 1], 'headline': 'A/test',
      'rank1': {'mean': 0.625, 'std': 0.18, 'values': [0.5, 0.75]}})
  assert spread[0] == ('Spread over the seeds, A/test Rank-1 (%): seed 0: '
                       '50.0, seed 1: 75.0; range 50.0 to 75.0.')


def test_a_bar_in_a_path_does_not_break_the_table(finished_run):
  _, results = finished_run
  results = json.loads(json.dumps(results))
  results['run']['data']['source'] = '/data/a|b.npz'
  lines = run_record.how_made_lines(results)
  row = next(line for line in lines if line.startswith('| data |'))
  assert row.endswith('(synthetic format, /data/a\\|b.npz) |')
  assert all(line.replace('\\|', '').count('|') == 3 for line in lines[2:-1])
