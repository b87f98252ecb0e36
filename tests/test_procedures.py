"""The two procedures end to end: config resolution, clean bit-identity,
released outputs, counts, and the ablation table."""

import json
import logging
import re
import pathlib
import types

import numpy as np
import pytest

from sge_jax import ablate, pipeline
from sge_jax import config as config_lib
from sge_jax.encode.encodings import load_encodings
from sge_jax.errors import ConfigError, DataError
from tests.fixtures.clean_reference import (REFERENCE, REFERENCE_OVERRIDES,
                                            outputs)
from tests.fixtures.pipeline import resolved_run, tiny_config

# config_hash of configs/demo.py computed by the code before config.procedure,
# config.quirks and data.normalization existed (commit f389663).
DEMO_CONFIG_HASH_BEFORE = 'db9ee1b176587615'


def _demo_config(arg=None):
  from configs import demo
  return demo.get_config(arg)


# ----------------------------------------------------------------- config


def test_procedure_sets_quirk_defaults_and_a_single_override_wins():
  clean = config_lib.resolve_config(config_lib.get_config())
  assert clean.procedure == 'clean'
  assert not any(clean.quirks[f] for f in config_lib.QUIRKS.values())
  config = config_lib.get_config('released')
  config.quirks.full_test_batches = False
  released = config_lib.resolve_config(config)
  assert released.procedure == 'released'
  assert not released.quirks.full_test_batches
  assert all(released.quirks[f] for f in config_lib.QUIRKS.values()
             if f != 'full_test_batches')
  one = config_lib.get_config()
  one.quirks.fixed_rn_shuffle = True
  assert config_lib.quirks_on(resolved_run(one), 'KGBD') == [
      'R4 fixed_rn_shuffle']


def test_released_and_smoke_variants_combine():
  config = config_lib.resolve_config(_demo_config('released,smoke'))
  assert config.procedure == 'released' and config.model.hidden == 32
  assert config.data.normalization == 'center'


def _applicability(dataset='KGBD', **fields):
  config = config_lib.get_config('released')
  config.update_from_flattened_dict(fields)
  return config_lib.quirk_applicability(resolved_run(config), dataset)


def test_quirks_that_cannot_act_are_named_not_applicable():
  plus = {'model.pretext': 'rev_rec_plus'}
  assert _applicability()['plus_test_copies'] == (
      'needs model.pretext=rev_rec_plus')
  assert _applicability(**plus)['plus_test_copies'] == ''
  assert _applicability(**plus, **{'quirks.extraction_batches': False})[
      'plus_test_copies'] == 'acts only with R1 extraction_batches on'
  assert _applicability()['biwi_two_thirds'] == 'BIWI only'
  assert _applicability('BIWI')['biwi_two_thirds'] == ''
  assert 'encoder_workdir' in _applicability(
      'BIWI', encoder_workdir='runs/x')['biwi_two_thirds']
  assert _applicability()['second_nearest'] == 'CME only'
  assert _applicability('CASIA_B_match')['second_nearest'] == ''
  assert _applicability(**{'eval.protocols': 'CME'})['second_nearest'] == ''
  # R10 needs a sorting task whose CAGEs are used (R2 uses none of them).
  assert _applicability(**plus)['redrawn_sorting'] == (
      "with R2 plus_from_rev_rec the sorting models' CAGEs are not used")
  assert _applicability(**plus, **{'quirks.plus_from_rev_rec': False})[
      'redrawn_sorting'] == ''
  assert _applicability(**{'model.pretext': 'prediction'})[
      'reversed_la_mask'] == ''
  for field in ('extraction_batches', 'fixed_rn_shuffle', 'full_test_batches',
                'select_on_test'):
    assert 'protocol A' in _applicability(**{'eval.protocols': 'B'})[field]
  run = resolved_run(config_lib.get_config('released'))
  assert 'R11 second_nearest' in config_lib.quirks_not_applicable(run, 'KGBD')
  assert 'R11 second_nearest' not in config_lib.quirks_on(run, 'KGBD')


def test_unknown_procedure_is_one_clear_error():
  config = config_lib.get_config()
  config.procedure = 'authors'
  with pytest.raises(ConfigError, match=r'config.procedure=.*clean, released'):
    config_lib.validate_config(config, 1)


def test_deprecated_center_sequences_becomes_normalization(caplog):
  config = config_lib.get_config()
  config.data.center_sequences = True
  with caplog.at_level(logging.WARNING):
    resolved = config_lib.resolve_config(config)
  assert resolved.data.normalization == 'center'
  assert resolved.data.center_sequences is None
  assert 'deprecated' in caplog.text and 'normalization=center' in caplog.text
  config.data.center_sequences = False
  demo = _demo_config()
  demo.data.center_sequences = False
  assert config_lib.resolve_config(demo).data.normalization == 'none'


def test_casia_b_configs_default_to_root_joint_in_both_procedures():
  from configs import casia_b_cme, casia_b_cve
  for module in (casia_b_cve, casia_b_cme):
    for arg in (None, 'released'):
      assert config_lib.resolve_config(
          module.get_config(arg)).data.normalization == 'root_joint'


def test_clean_demo_keeps_its_config_hash_and_encoder_quirks_change_it():
  demo = config_lib.resolve_config(_demo_config())
  assert config_lib.config_hash(demo) == DEMO_CONFIG_HASH_BEFORE
  # RN-side quirks share the encoders; encoder quirks do not.
  released_rn = _demo_config()
  released_rn.quirks.extraction_batches = True
  assert config_lib.config_hash(
      config_lib.resolve_config(released_rn)) == DEMO_CONFIG_HASH_BEFORE
  masked = _demo_config()
  masked.quirks.reversed_la_mask = True
  masked = config_lib.resolve_config(masked)
  assert config_lib.config_hash(masked) != DEMO_CONFIG_HASH_BEFORE
  assert config_lib.encoder_differences(demo, masked) == [
      'quirks.reversed_la_mask']


# ----------------------------------------------------------------- clean = before


# Float outputs may differ from the stored reference by rounding only when the
# platform (CPU, XLA) differs from the one that wrote it; a few float32 ulps
# per value, relative to the array's scale. On the reference machine they are
# bit-identical (checked by hand on the full demo, see docs/testing.md).
FLOAT_TOLERANCE = 64 * float(np.finfo(np.float32).eps)


# encodings.npz fields added after the reference was made (metadata that
# describes the file; every array the reference has must stay as it was).
ADDED_FIELDS = {'encodings/data_source', 'encodings/procedure',
                'encodings/quirks', 'encodings/normalization',
                'encodings/sequence_units'}


def _assert_same_outputs(actual, expected):
  assert sorted(set(actual) - ADDED_FIELDS) == sorted(expected)
  for name, want in expected.items():
    got = actual[name]
    assert got.shape == want.shape, name
    if np.issubdtype(want.dtype, np.floating):
      scale = float(np.max(np.abs(want))) if want.size else 0.0
      np.testing.assert_allclose(got, want, rtol=0,
                                 atol=FLOAT_TOLERANCE * max(scale, 1e-30),
                                 err_msg=name)
    else:
      np.testing.assert_array_equal(got, want, err_msg=name)


def test_clean_procedure_reproduces_the_code_before_it(tmp_path):
  """Every encodings.npz array (no new ones but ADDED_FIELDS), the config hash, the metrics,
  the RN loss curve and the selected epochs equal what the pre-change code
  produced (tests/fixtures/clean_reference.py); the deprecated field gives the
  same resolved config."""
  with np.load(REFERENCE) as data:
    reference = dict(data)
  overrides = dict(REFERENCE_OVERRIDES)
  del overrides['data.center_sequences']
  config = tiny_config(**overrides, **{'data.normalization': 'center',
                                       'procedure': 'clean'})
  pipeline.run(config, tmp_path / 'new_field')
  _assert_same_outputs(outputs(tmp_path / 'new_field'), reference)
  # The new records: the procedure and the counts (4 people, 12 training
  # sequences each of which 'val' holds out 2, 24 test sequences, all scored).
  results = json.loads((tmp_path / 'new_field' / 'results.json').read_text())
  assert results['procedure'] == {'name': 'clean', 'quirks_on': [],
                                  'quirks_not_applicable': {},
                                  'normalization': 'center'}
  assert results['rn']['train_sequences_per_person'] == {
      str(p): 10 for p in range(4)}
  assert results['entries']['A/test']['num_scored_sequences'] == 24
  # The encodings say how they were made, also when clean.
  meta = load_encodings(tmp_path / 'new_field' / 'encodings.npz').metadata
  assert (meta.procedure, meta.quirks, meta.normalization) == ('clean', (),
                                                               'center')
  assert meta.sequence_units == ('metres, each sequence centred on its mean '
                                 'position')
  assert (meta.source_run, meta.source_config_hash) == ('', '')
  # The deprecated field resolves to the very same config.
  old_field = config_lib.resolve_config(tiny_config(**REFERENCE_OVERRIDES))
  assert old_field.to_dict() == config_lib.resolve_config(config).to_dict()


# ----------------------------------------------------------------- released


@pytest.mark.slow
def test_released_run_names_procedure_and_quirks_everywhere(tmp_path):
  config = tiny_config(**{'procedure': 'released', 'eval.plots': False,
                          'quirks.second_nearest': False})
  pipeline.run(config, tmp_path)
  results = json.loads((tmp_path / 'results.json').read_text())
  # rev_rec with LA on the demo, protocols A and B: R2/R3 need rev_rec_plus,
  # R7 BIWI, R9 a forward LA task, R10 a sorting task; R11 was switched off.
  on = ['R1 extraction_batches', 'R4 fixed_rn_shuffle', 'R5 full_test_batches',
        'R6 select_on_test', 'R12 equal_id_counts']
  assert results['procedure']['name'] == 'released'
  assert results['procedure']['quirks_on'] == on
  assert list(results['procedure']['quirks_not_applicable']) == [
      'R2 plus_from_rev_rec', 'R3 plus_test_copies', 'R7 biwi_two_thirds',
      'R9 reversed_la_mask', 'R10 redrawn_sorting']
  assert results['encodings']['procedure'] == 'released'
  meta = load_encodings(tmp_path / 'encodings.npz').metadata
  assert (meta.procedure, list(meta.quirks)) == ('released', on)
  report = (tmp_path / 'report.md').read_text()
  assert '| procedure | released' in report and 'R5 full_test_batches' in report
  assert 'R7 biwi_two_thirds (BIWI only)' in report
  assert '| 21 scored of 24 |' in report
  # Tiny demo: 4 people, 12 training and 6 test sequences each, f = 6.
  rn = results['rn']
  assert rn['train_sequences_per_person'] == {str(p): 128 for p in range(4)}
  assert rn['train_frames_per_person'] == {str(p): 128 * 6 for p in range(4)}
  # 24 test sequences = 144 frames: one full batch of 128 frames = 21 windows.
  assert results['entries']['A/test']['num_scored_sequences'] == 21


def test_released_mode_refuses_different_person_sets(tmp_path):
  from sge_jax.data import write_authors_split
  rng = np.random.default_rng(0)
  root = tmp_path / 'Datasets'
  for train, people in ((True, [1, 2, 3]), (False, [1, 2, 4])):
    labels = np.repeat(people, 8)
    write_authors_split(root / 'SET' / '6', 'SET', 6,
                        rng.normal(size=(labels.size, 6, 20, 3)).astype(
                            np.float32), labels, train=train,
                        dataset_name='SET')
  config = tiny_config(**{'procedure': 'released'})
  config.data.format = 'authors'
  config.data.root = str(root)
  config.data.name = 'SET'
  with pytest.raises(DataError, match=r"R12.*only in test: \[4\].*only in "
                     r"train: \[3\].*equal_id_counts=False"):
    pipeline.run(config, tmp_path / 'run')
  assert not (tmp_path / 'run' / 'checkpoints').exists()   # before any work


# ----------------------------------------------------------------- ablation


@pytest.mark.slow
def test_ablation_shares_encoders_and_lists_every_quirk(tmp_path, monkeypatch):
  config = tiny_config(**{'eval.plots': False, 'eval.baselines': True,
                          'eval.protocols': 'A', 'rn.epochs': 2})
  lines = []
  monkeypatch.setattr(ablate.logging, 'info',
                      lambda message, *args: lines.append(
                          str(message) % args if args else str(message)))
  rows = ablate.run_ablation(config, tmp_path, command='python -m x')
  # Every variant run is announced with its place and an ETA.
  announced = [line for line in lines if line.startswith('[ablate] variant')]
  ran = [row['name'] for row in rows if row['kind'] == 'variant']
  assert len(announced) == len(ran)
  assert announced[0].startswith('[ablate] variant clean (trains the encoders')
  assert announced[1] == f'[ablate] variant released (2 of {len(ran)}), ETA ?'
  assert re.fullmatch(rf'\[ablate\] variant \S+ \(3 of {len(ran)}\), ETA '
                      r'\d+:\d\d', announced[2])
  names = [row['name'] for row in rows]
  assert names[:2] == ['clean', 'released']
  assert len(rows) == 2 + len(config_lib.QUIRKS)
  by_name = {row['name']: row for row in rows}
  assert by_name['clean']['encoders'] == 'trained'
  assert by_name['R1_extraction_batches']['encoders'] == 'shared (clean)'
  assert by_name['R7_biwi_two_thirds']['not_applicable'] == 'BIWI only'
  # R3 acts only with R1, so it runs (and is named) as R1+R3; on rev_rec it
  # cannot act at all.
  assert by_name['R1+R3_plus_test_copies']['not_applicable'] == (
      'needs model.pretext=rev_rec_plus')
  # R12 is a check on the clean run's data, not a variant.
  assert by_name['R12_equal_id_counts']['kind'] == 'check'
  assert by_name['R12_equal_id_counts']['check'].startswith('passes')
  assert 'rank1_a' not in by_name['R12_equal_id_counts']
  assert not (tmp_path / 'R1_extraction_batches' / 'checkpoints').exists()
  assert not (tmp_path / 'R12_equal_id_counts').exists()
  table = (tmp_path / 'ablation.md').read_text()
  assert table.count('\n| ') == 1 + len(rows)    # header and one line a row
  assert '| R12_equal_id_counts | check, not a variant: passes' in table
  assert '`python -m x`' in table and 'seed 0' in table
  record = json.loads((tmp_path / 'ablation.json').read_text())
  assert record['complete'] and record['command'] == 'python -m x'
  assert record['config']['rn']['epochs'] == 2
  assert record['dataset'] == 'demo' and record['sge_jax_version']
  assert not (tmp_path / ablate.PARTIAL_MARKDOWN).exists()
  # R1 alone keeps clean's 'val' rule: 13 of each person's 128 rows held out.
  assert by_name['R1_extraction_batches']['rn_train_sequences'] == 4 * (128 - 13)
  assert by_name['released']['rn_train_sequences'] == 4 * 128
  # The baselines score the data, not the encoders: computed by clean, read
  # back by a variant of the same data, all in the ablation's eval_cache/.
  assert list((tmp_path / 'eval_cache').glob('protocol_a_baselines-*.npz'))
  assert not list(tmp_path.glob('*/eval_cache'))
  stored = [json.loads((tmp_path / name / 'results.json').read_text())
            ['run']['stored_results'] for name in ('clean', 'R6_select_on_test')]
  assert (stored[0]['reused'], stored[0]['computed']) == (0, 1)
  assert (stored[1]['reused'], stored[1]['computed']) == (1, 0)


def test_ablation_eta_counts_encoder_training_as_long_as_the_clean_run():
  # Two variants left, one trains encoders (clean took 100 s), one reuses
  # them (those so far took 10 s and 20 s).
  assert ablate.remaining_seconds([True, False], 100.0, [10.0, 20.0]) == 115.0
  assert ablate.remaining_seconds([True], 100.0, []) == 100.0
  assert ablate.remaining_seconds([False], 100.0, []) is None     # unknown yet
  assert ablate.variant_line('R1_x', 3, 9, 75.0) == (
      '[ablate] variant R1_x (3 of 9), ETA 1:15')


def test_ablation_rows_of_plus_name_r1_and_r3_together():
  config = config_lib.resolve_config(tiny_config(
      **{'model.pretext': 'rev_rec_plus'}))
  plan = {row['name']: row for row in ablate.variant_plan(config, 'demo')}
  row = plan['R1+R3_plus_test_copies']
  assert row['kind'] == 'variant'
  assert row['fields'] == ['extraction_batches', 'plus_test_copies']
  variant = ablate.variant_config(config, row, pathlib.Path('clean'), 'demo')
  assert variant.quirks.extraction_batches and variant.quirks.plus_test_copies
  assert config_lib.quirks_on(resolved_run(variant), 'demo') == [
      'R1 extraction_batches', 'R3 plus_test_copies']


@pytest.mark.parametrize('fields,message', [
    ({'quirks.full_test_batches': True}, 'config.quirks.full_test_batches'),
    ({'procedure': 'released'}, 'config.procedure'),
    ({'stages': 'train,encode'}, 'include evaluate'),
    ({'eval.level': 'walk'}, 'window-level entries'),
    ({'seeds': '0,1'}, 'one seed'),
    ({'rn.epochs': 0}, 'config.rn.epochs'),
])
def test_ablation_refuses_what_it_cannot_honour_before_any_work(
    tmp_path, fields, message):
  config = tiny_config(**fields)
  with pytest.raises(ConfigError, match=message):
    ablate.run_ablation(config, tmp_path / 'ablation')
  assert not (tmp_path / 'ablation').exists()


def test_a_failing_variant_is_written_in_its_row_and_a_complete_table_stays(
    tmp_path, monkeypatch):
  """With pipeline.run replaced: the released variant fails, the table still
  completes; a second, interrupted run writes its progress to the partial
  table and leaves the complete one as it was."""
  results = {'entries': {'A/test': {'protocol': 'A', 'rank1': 0.5,
                                    'nauc': 0.75, 'num_sequences': 24,
                                    'num_scored_sequences': 24}},
             'rn': {}, 'selection_label': 'val'}

  def fake_run(config, workdir):
    if config.procedure == 'released':
      raise DataError('released went wrong')
    if workdir.name == 'R4_fixed_rn_shuffle' and interrupt:
      raise KeyboardInterrupt
    workdir.mkdir(parents=True, exist_ok=True)
    if workdir.name == 'clean':
      (workdir / 'encodings.npz').write_bytes(b'')
    return results

  monkeypatch.setattr(ablate.pipeline, 'run', fake_run)
  monkeypatch.setattr(ablate, 'load_encodings', lambda path: types.SimpleNamespace(
      metadata=types.SimpleNamespace(dataset='demo'),
      split_names=['train', 'test'],
      select=lambda name: types.SimpleNamespace(labels=np.arange(3))))
  interrupt = False
  rows = ablate.run_ablation(tiny_config(), tmp_path)
  by_name = {row['name']: row for row in rows}
  assert by_name['released']['error'] == 'released went wrong'
  assert by_name['R1_extraction_batches']['rank1_a'] == 0.5
  complete = (tmp_path / 'ablation.md').read_text()
  assert '| released | failed: released went wrong |' in complete
  interrupt = True
  with pytest.raises(KeyboardInterrupt):
    ablate.run_ablation(tiny_config(), tmp_path)
  assert (tmp_path / 'ablation.md').read_text() == complete
  partial = json.loads((tmp_path / ablate.PARTIAL_JSON).read_text())
  assert not partial['complete'] and len(partial['rows']) >= 2
