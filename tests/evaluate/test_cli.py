"""Tests of ``python -m sge_jax.evaluate`` on fabricated workdirs."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from sge_jax.config import get_config
from sge_jax import reevaluation
from sge_jax import workdir as workdir_lib
from sge_jax.encode import encodings as encodings_lib
from sge_jax.evaluate import stage
from sge_jax.data import joints
from sge_jax.errors import ConfigError, DataError, WorkdirError
from tests.fixtures.pipeline import resolved_run

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAYOUT = joints.KINECT_V1


def _encoding_set(seed=0):
  """train + test of three people with separable CAGEs [n, 3, 6]."""
  rng = np.random.default_rng(seed)
  centres = 3.0 * rng.normal(size=(3, 6))

  def split(per_person):
    labels = np.repeat([11, 22, 33], per_person)
    encodings = (np.repeat(centres, per_person, axis=0)[:, None]
                 + 0.2 * rng.normal(size=(labels.size, 3, 6)))
    sequences = rng.normal(size=(labels.size, 3, LAYOUT.num_joints, 3))
    return encodings_lib.SplitEncodings(
        encodings.astype(np.float32), labels, sequences.astype(np.float32),
        np.full(labels.size, -1))

  metadata = encodings_lib.EncodingMetadata(
      dataset='KS20', length=3, attention='LA', pretext='rev_rec', hidden=2,
      seed=seed, config_hash='cli', model_names=('rev_rec/x',),
      joint_names=LAYOUT.joint_names, bones=LAYOUT.bones)
  return encodings_lib.combine_splits([('train', split(5)), ('test', split(2))],
                                      metadata)


def _write_run(run_dir, seed=0, encodings=True):
  run_dir.mkdir(parents=True, exist_ok=True)
  config = get_config()
  config.seed = seed
  config.rn.epochs = 4
  config.rn.hidden = 8
  config.rn.batch_size = 16
  # No test here looks at the PNGs (tests/evaluate/test_plots.py does), and
  # they took most of an evaluation's time (about 0.2 s each, 6 per run).
  config.eval.plots = False
  (run_dir / 'config.json').write_text(config.to_json())
  if encodings:
    encodings_lib.save_encodings(run_dir / 'encodings.npz',
                                 _encoding_set(seed))
  return config


def _run_cli(*arguments):
  return subprocess.run(
      [sys.executable, '-m', 'sge_jax.evaluate', *arguments],
      capture_output=True, text=True, cwd=REPO, timeout=300, check=False)


@pytest.mark.slow
def test_cli_reevaluates_with_overrides(tmp_path):
  _write_run(tmp_path)
  saved_config = (tmp_path / 'config.json').read_text()
  completed = _run_cli(f'--workdir={tmp_path}', '--config.rn.selection=fixed',
                       '--config.rn.epochs=3', '--config.eval.baselines=false')
  assert completed.returncode == 0, completed.stderr
  assert 'A/test' in completed.stdout and 'Rank-1' in completed.stdout
  out_dir = tmp_path / 'evaluations' / 'eval.baselines-False_rn.epochs-3_rn.selection-fixed'
  assert str(out_dir) in completed.stdout
  results = json.loads((out_dir / 'results.json').read_text())
  assert results['selection'] == 'fixed'
  assert results['rn']['epochs'] == 3
  assert 'baselines' not in results['entries']['A/test']
  assert (out_dir / 'report.md').exists() and (out_dir / 'rn.npz').exists()
  # The saved config is the run's record; re-evaluation does not rewrite it,
  # and writes nothing over the run's own files.
  assert (tmp_path / 'config.json').read_text() == saved_config
  assert not (tmp_path / 'results.json').exists()


def _numbers(results):
  """What a re-evaluation must reproduce: every entry and the RN summary,
  without where the RN came from and how long it took."""
  rn = {key: value for key, value in results['rn'].items()
        if key not in ('source', 'train_seconds')}
  return results['entries'], rn


@pytest.mark.slow
def test_reevaluation_with_an_override_equals_a_fresh_run_with_it(tmp_path):
  config = _write_run(tmp_path)
  encoding_set = encodings_lib.load_encodings(tmp_path / 'encodings.npz')
  original = stage.evaluate_run(resolved_run(config), encoding_set, tmp_path)
  assert original['rn']['source'] == 'trained in this evaluation'
  original_bytes = (tmp_path / 'results.json').read_bytes()
  for selection in ('val', 'fixed', 'paper'):
    results, out_dir = reevaluation.reevaluate(
        tmp_path, {'rn.selection': selection})
    fresh_config = get_config()
    fresh_config.update_from_flattened_dict(
        {'seed': 0, 'rn.epochs': 4, 'rn.hidden': 8, 'rn.batch_size': 16,
         'eval.plots': False, 'rn.selection': selection})
    fresh = stage.evaluate_run(resolved_run(fresh_config), encoding_set,
                               tmp_path / f'fresh_{selection}')
    assert _numbers(results) == _numbers(fresh), selection
    assert out_dir.name == f'rn.selection-{selection}'
    if selection == 'val':   # the run's own RN, re-scored
      assert results['rn']['source'].startswith('re-scored from the saved RN')
      assert _numbers(results) == _numbers(original)
    else:                    # the saved RN held rows out; a fresh one does not
      assert results['rn']['source'] == 'trained in this evaluation'
      assert any('validation hold-out differs' in note
                 for note in results['notes'])
  assert (tmp_path / 'results.json').read_bytes() == original_bytes
  # A field that changes what the RN learns trains it again, saying why.
  results, _ = reevaluation.reevaluate(tmp_path, {'rn.epochs': 2}, name='short')
  assert results['rn']['source'] == 'trained in this evaluation'
  assert any('rn.epochs differ from the saved RN' in note
             for note in results['notes'])


@pytest.mark.slow
def test_an_rn_trained_on_every_row_is_rescored_for_fixed_and_paper(tmp_path):
  config = _write_run(tmp_path)
  config.rn.selection = 'fixed'
  (tmp_path / 'config.json').write_text(config.to_json())
  original = stage.evaluate_run(resolved_run(config),
                                encodings_lib.load_encodings(
                                    tmp_path / 'encodings.npz'), tmp_path)
  assert original['rn']['num_val_sequences'] == 0
  paper, _ = reevaluation.reevaluate(tmp_path, {'rn.selection': 'paper'})
  assert paper['rn']['source'].startswith('re-scored from the saved RN')
  assert (paper['entries']['A/test']['by_selection']
          == original['entries']['A/test']['by_selection'])
  assert (paper['entries']['A/test']['rank1']
          == original['entries']['A/test']['by_selection']['paper']['rank1'])
  # Without the test splits tracked a fresh run reports no 'paper' rule and
  # no test curves; the re-scored one drops them as well.
  untracked, _ = reevaluation.reevaluate(tmp_path, {'rn.track_test': False})
  assert untracked['rn']['source'].startswith('re-scored from the saved RN')
  assert list(untracked['entries']['A/test']['by_selection']) == ['fixed']
  assert untracked['rn']['history']['test_accuracy'] == {}


@pytest.mark.slow
def test_cli_missing_files_are_named(tmp_path):
  completed = _run_cli(f'--workdir={tmp_path}')
  assert completed.returncode == 2
  assert 'config.json' in completed.stderr
  assert 'Traceback' not in completed.stderr
  _write_run(tmp_path, encodings=False)
  completed = _run_cli(f'--workdir={tmp_path}')
  assert completed.returncode == 2
  assert 'encodings.npz' in completed.stderr
  assert 'encode stage' in completed.stderr


def test_missing_encodings_error_in_process(tmp_path):
  _write_run(tmp_path, encodings=False)
  with pytest.raises(DataError, match='encode stage'):
    reevaluation.reevaluate(tmp_path)


def test_an_encodings_file_without_its_metadata_is_named(tmp_path):
  encodings_lib.save_encodings(tmp_path / 'encodings.npz', _encoding_set())
  with np.load(tmp_path / 'encodings.npz') as data:
    arrays = {name: data[name] for name in data.files if name != 'pretext'}
  np.savez(tmp_path / 'other.npz', **arrays)
  with pytest.raises(DataError, match='other.npz is not an sge-jax encodings '
                     'file: it lacks pretext'):
    encodings_lib.load_encodings(tmp_path / 'other.npz')


@pytest.mark.slow
def test_multi_seed_workdir_is_aggregated(tmp_path):
  for seed in (0, 1):
    _write_run(tmp_path / f'seed_{seed}', seed=seed)
  aggregate, out_dir = reevaluation.reevaluate(
      tmp_path, {'rn.epochs': 3, 'eval.protocols': 'A'}, name='three')
  assert out_dir == tmp_path / 'evaluations' / 'three'
  per_seed = [json.loads((tmp_path / f'seed_{s}' / 'evaluations' / 'three'
                          / 'results.json').read_text()) for s in (0, 1)]
  assert [r['seed'] for r in per_seed] == [0, 1]
  assert all(r['rn']['epochs'] == 3 for r in per_seed)
  saved = json.loads((out_dir / 'results.json').read_text())
  assert saved == json.loads(json.dumps(saved))  # plain JSON
  assert saved['seeds'] == [0, 1]
  values = [r['entries']['A/test']['rank1'] for r in per_seed]
  stat = saved['entries']['A/test']['rank1']
  assert stat['values'] == pytest.approx(values)
  assert stat['mean'] == pytest.approx(np.mean(values))
  assert stat['std'] == pytest.approx(np.std(values, ddof=1))
  assert aggregate['rank1']['mean'] == pytest.approx(np.mean(values))
  assert '±' in (out_dir / 'report.md').read_text()


class TestOverrides:

  def test_applied_to_a_copy_of_the_saved_config(self):
    config = get_config()
    updated = reevaluation.apply_overrides(config, {
        'rn.epochs': 5, 'rn.learning_rate': 1e-3, 'eval.baselines': False,
        'rn.selection': 'paper'})
    assert updated.rn.epochs == 5
    assert updated.rn.learning_rate == 1e-3
    assert updated.eval.baselines is False
    assert updated.rn.selection == 'paper'
    assert config.rn.epochs == 300  # the input is not modified

  def test_fields_that_made_the_encodings_are_refused_by_name(self):
    with pytest.raises(ConfigError, match=r'--config\.data\.length, '
                       r'--config\.model\.hidden'):
      reevaluation.apply_overrides(get_config(), {'model.hidden': 64,
                                              'data.length': 4,
                                              'rn.epochs': 3})

  @pytest.mark.parametrize('argument, message', [
      ('--config.rn.epoch=5', 'epochs'),          # did you mean
      ('--config.nope.epochs=5', 'nope'),
      ('--config.rn.epochs=many', 'many'),
      ('--config.rn.epochs=1.5',
       "config.rn.epochs='1.5' is invalid: expected an integer"),
      ('--config.seed=abc', "config.seed='abc' is invalid: expected an integer"),
      ('--config.model.hidden=64', 'model.hidden')])
  @pytest.mark.slow
  def test_command_line_errors_are_one_line_with_status_2(
      self, tmp_path, argument, message):
    _write_run(tmp_path)
    completed = _run_cli(f'--workdir={tmp_path}', argument)
    assert completed.returncode == 2, completed.stderr
    assert message in completed.stderr
    assert 'Traceback' not in completed.stderr
    assert not (tmp_path / 'results.json').exists()


class TestEvaluationName:

  @pytest.mark.parametrize('name', [
      '..', '.', '../x', 'a/b', '.hidden', 'a\\b', 'a b', 'x' * 121,
      'évaluation', 'a\nb', '{outside}'])
  def test_is_one_folder_under_evaluations(self, tmp_path, name):
    run_dir = tmp_path / 'run'
    _write_run(run_dir)
    (run_dir / 'results.json').write_text('{"the run": 1}')
    name = name.format(outside=tmp_path / 'outside')   # an absolute path
    with pytest.raises(ConfigError, match='is not a folder name'):
      reevaluation.reevaluate(run_dir, {'rn.epochs': 3}, name=name)
    assert (run_dir / 'results.json').read_text() == '{"the run": 1}'
    assert sorted(path.name for path in tmp_path.iterdir()) == ['run']
    assert not (run_dir / 'evaluations').exists()

  def test_dot_dot_on_the_command_line_is_one_line(self, tmp_path):
    _write_run(tmp_path)
    (tmp_path / 'results.json').write_text('{"the run": 1}')
    completed = _run_cli(f'--workdir={tmp_path}', '--name=..',
                         '--config.rn.epochs=3')
    assert completed.returncode == 2, completed.stderr
    errors = [line for line in completed.stderr.splitlines() if 'error' in line]
    assert len(errors) == 1 and "--name='..' is not a folder name" in errors[0]
    assert 'unchanged' not in completed.stdout
    assert (tmp_path / 'results.json').read_text() == '{"the run": 1}'
    assert not (tmp_path / 'rn.npz').exists()

  @pytest.mark.parametrize('overrides', [
      {}, {'rn.selection': 'fixed', 'rn.epochs': 3},
      {'eval.protocols': 'A,B', 'eval.baselines': False},
      {'rn.learning_rate': 1e-05}, {'rn.selection': '../../x'},
      {'eval.protocols': '/abs/' * 40}])
  def test_default_names_are_valid(self, overrides):
    name = reevaluation.evaluation_name(overrides)
    workdir_lib.check_evaluation_name(name)

  def test_a_name_taken_by_a_file_is_one_line(self, tmp_path):
    _write_run(tmp_path)
    (tmp_path / 'evaluations').mkdir()
    (tmp_path / 'evaluations' / 'taken').write_text('mine')
    completed = _run_cli(f'--workdir={tmp_path}', '--name=taken')
    assert completed.returncode == 2, completed.stderr
    assert 'taken exists and is not a directory' in completed.stderr
    assert 'Traceback' not in completed.stderr
    assert (tmp_path / 'evaluations' / 'taken').read_text() == 'mine'
    (tmp_path / 'evaluations' / 'taken').unlink()
    (tmp_path / 'evaluations').rmdir()
    (tmp_path / 'evaluations').write_text('mine')
    with pytest.raises(WorkdirError, match='evaluations exists and is not a'):
      reevaluation.reevaluate(tmp_path, name='taken')

  def test_a_link_out_of_evaluations_is_refused(self, tmp_path):
    run_dir = tmp_path / 'run'
    _write_run(run_dir)
    (run_dir / 'evaluations').mkdir()
    (run_dir / 'evaluations' / 'back').symlink_to(run_dir)
    with pytest.raises(WorkdirError, match='outside'):
      reevaluation.reevaluate(run_dir, name='back')
    assert not (run_dir / 'results.json').exists()
    (run_dir / 'evaluations' / 'dangling').symlink_to(tmp_path / 'nowhere')
    with pytest.raises(WorkdirError, match='dangling'):
      reevaluation.reevaluate(run_dir, name='dangling')
    assert not (tmp_path / 'nowhere').exists()

  def test_every_seed_is_checked_before_any_evaluation(self, tmp_path):
    for seed in (0, 1):
      _write_run(tmp_path / f'seed_{seed}', seed=seed)
    (tmp_path / 'seed_1' / 'evaluations').mkdir()
    (tmp_path / 'seed_1' / 'evaluations' / 'three').write_text('mine')
    with pytest.raises(WorkdirError, match='seed_1/evaluations/three exists'):
      reevaluation.reevaluate(tmp_path, {'rn.epochs': 3}, name='three')
    assert not (tmp_path / 'seed_0' / 'evaluations').exists()
