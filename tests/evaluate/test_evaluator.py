"""The evaluator interface and the protocol registry: every configurable
protocol is registered from its own module, and a protocol in the registry is
run, reported and ranked by the stage like the others."""

import dataclasses

import numpy as np
import pytest

from sge_jax.config import PROTOCOLS, get_config
from sge_jax.encode import encodings as encodings_lib
from sge_jax.evaluate import protocol_b, protocols, stage
from sge_jax.evaluate.evaluator import EvaluationInputs, Evaluator, Outcome
from tests.fixtures.pipeline import resolved_run


def _line_set():
  """CAGEs with f = 1, D = 1 (a sequence is a point on a line): train people
  1 and 2 at 0 and 1, test sequences of them at 0.1 and 0.9."""
  def split(values, labels):
    labels = np.asarray(labels, np.int64)
    return encodings_lib.SplitEncodings(
        np.asarray(values, np.float32).reshape(-1, 1, 1), labels,
        np.zeros((labels.size, 1, 3, 3), np.float32),
        np.full(labels.size, -1, np.int64))
  metadata = encodings_lib.EncodingMetadata(
      dataset='KS20', length=1, attention='LA', pretext='rev_rec', hidden=4,
      seed=0, config_hash='test', model_names=('rev_rec/x',))
  return encodings_lib.combine_splits(
      [('train', split([0.0, 1.0], [1, 2])),
       ('test', split([0.1, 0.9], [1, 2]))], metadata)


def _run_with(protocol_names):
  """The settings of a run of ``protocol_names``, without baselines; the
  names need not be in PROTOCOLS (the registry decides what runs)."""
  config = get_config()
  config.eval.protocols = 'B'
  config.eval.baselines = False
  run = resolved_run(config)
  return dataclasses.replace(
      run, eval=dataclasses.replace(run.eval, protocols=protocol_names))


def _toy_evaluator(seen, rank1=0.5, headline_rank=3):
  """Protocol 'X': one entry 'X/test' with the given Rank-1; records the
  inputs it was given in ``seen``."""
  def evaluate(inputs):
    seen.append(inputs)
    outcome = Outcome()
    outcome.entries['X/test'] = {
        'protocol': 'X', 'probe': 'test', 'gallery': 'train', 'label': 'toy',
        'num_sequences': 2, 'num_excluded': 0, 'excluded_people': [],
        'num_classes': 2, 'num_people': 2, 'rank1': rank1, 'rank5': None,
        'rank10': None, 'map': rank1, 'cmc': [rank1, 1.0]}
    outcome.note('toy protocol ran', warn=True)
    return outcome
  return Evaluator('X', evaluate, headline_rank=headline_rank)


def test_every_configurable_protocol_is_registered_in_config_order():
  assert tuple(protocols.EVALUATORS) == PROTOCOLS
  for name, evaluator in protocols.EVALUATORS.items():
    assert evaluator.name == name
    assert protocols.evaluator_module(name) == (
        f'sge_jax.evaluate.protocol_{name.lower()}')


def test_a_module_whose_evaluator_has_another_name_is_refused(monkeypatch):
  # A protocol module copied from another one without renaming its EVALUATOR
  # would silently run the other protocol under the new name.
  monkeypatch.setattr(protocols.importlib, 'import_module',
                      lambda module: protocol_b)
  with pytest.raises(ImportError, match="named 'B', not 'X'"):
    protocols._load_evaluator('X')


def test_a_registered_protocol_runs_and_is_reported(tmp_path, monkeypatch):
  seen = []
  monkeypatch.setitem(protocols.EVALUATORS, 'X', _toy_evaluator(seen))
  run = _run_with(('B', 'X'))
  encoding_set = _line_set()
  results = stage.evaluate_run(run, encoding_set, tmp_path)

  [inputs] = seen
  assert isinstance(inputs, EvaluationInputs)
  assert inputs.settings is run.eval and inputs.encoding_set is encoding_set
  assert inputs.saved_rn_path == tmp_path / 'rn.npz'
  assert results['protocols'] == ['B', 'X']
  assert results['entries']['X/test']['rank1'] == 0.5
  assert 'toy protocol ran' in results['warnings']
  assert 'X is scored at window level only.' in results['notes']
  # B ranks before the toy for the headline; the toy's walks are not asked.
  assert results['headline'] == 'B/test'
  assert list(results['walks']['aggregations']) == ['B']
  report = (tmp_path / 'report.md').read_text()
  assert '## Protocol X' in report and '| toy |' in report


@pytest.mark.parametrize('headline_rank, headline', [(-1, 'X/test'),
                                                     (3, 'B/test')])
def test_the_headline_goes_to_the_lowest_rank_that_scored(
    tmp_path, monkeypatch, headline_rank, headline):
  monkeypatch.setitem(protocols.EVALUATORS, 'X',
                      _toy_evaluator([], headline_rank=headline_rank))
  results = stage.evaluate_run(_run_with(('B', 'X')), _line_set(), tmp_path)
  assert results['headline'] == headline


def test_a_note_is_a_warning_only_when_asked():
  outcome = Outcome()
  outcome.note('remark')
  outcome.note('problem', warn=True)
  assert outcome.notes == ['remark', 'problem']
  assert outcome.warnings == ['problem']
