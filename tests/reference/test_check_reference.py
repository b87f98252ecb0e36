"""python -m sge_jax.reference on the shared file and on other shapes."""

import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from sge_jax.errors import DataError
from sge_jax.reference import check_reference
from sge_jax.reference import interop
from sge_jax.train.losses import locality_mask
from sge_jax.models import GaitEncodingModel
from sge_jax.train.pretext import PretextTask
from sge_jax.train.step import LossSettings, StepDefinition, model_loss_terms

SHARED_REFERENCE = (pathlib.Path(__file__).resolve().parents[2] / 'shared'
                    / 'reference' / 'step_f6_j20_h64_b16.npz')


@pytest.mark.skipif(not SHARED_REFERENCE.exists(),
                    reason='../shared/reference is not beside the checkout')
def test_shared_reference_passes(capsys):
  assert check_reference.main([str(SHARED_REFERENCE)]) == 0
  out = capsys.readouterr().out
  assert 'B=16 f=6 J=20 k=64 T=0.1' in out
  assert 'PASS' in out and 'FAIL' not in out


def _reference_file(path, batch, length, joints, hidden, num_layers, temperature):
  """Writes a file in the reference format with sge-jax's own first-step values.

  Circular on purpose: it exercises shape inference and the CLI for shapes other
  than the shared file's, which covers fidelity.
  """
  model = GaitEncodingModel(hidden=hidden, num_joints=joints, num_layers=num_layers)
  definition = StepDefinition(model, (PretextTask('rev_rec', 'LA'),),
                              LossSettings(temperature))
  x = np.random.default_rng(0).normal(size=(batch, length, joints)).astype(np.float32)
  target = x[:, ::-1].copy()
  mask = locality_mask(length, reversed_target=True)

  def objective(params):
    terms = model_loss_terms(params, x, target, mask, np.float32(1.0),
                             jax.random.key(0), definition=definition,
                             axis_name=None)
    return sum(terms.values()), terms

  params = jax.jit(model.init)(jax.random.key(3), x)['params']
  grads, terms = jax.jit(jax.grad(objective, has_aux=True))(params)
  arrays = {'x': x, 'target': target, 'locality_mask': mask}
  names = {'rec': 'reconstruction', 'att_loss': 'locality_attention',
           'C_loss': 'contrastive', 'l2': 'weight_decay'}
  for name, term in names.items():
    arrays[f'loss/{name}'] = np.float32(terms[term])
  arrays['loss/cost'] = np.float32(sum(terms.values()))
  for prefix, tree in (('param', params), ('grad', grads)):
    for name, value in interop.params_to_tf(tree).items():
      arrays[f'{prefix}/{name}'] = value
  np.savez(path, **arrays)
  return arrays


@pytest.mark.slow
def test_other_shapes_are_inferred_and_a_wrong_gradient_fails(tmp_path, capsys):
  path = tmp_path / 'ref.npz'
  arrays = _reference_file(path, batch=5, length=4, joints=18, hidden=8,
                           num_layers=3, temperature=0.5)
  assert check_reference.main([str(path), '--temperature', '0.5']) == 0
  assert 'B=5 f=4 J=18 k=8' in capsys.readouterr().out
  # The wrong temperature changes the contrastive loss: must fail.
  assert check_reference.main([str(path)]) == 1
  assert 'FAIL' in capsys.readouterr().out
  # A gradient off by 1% must fail too.
  arrays['grad/dec1_k'] = arrays['grad/dec1_k'] * 1.01
  np.savez(path, **arrays)
  assert check_reference.main([str(path), '--temperature', '0.5']) == 1
  assert 'dec1_k' in capsys.readouterr().out


@pytest.mark.parametrize('content, message', [
    (None, 'no reference file'),
    (b'PK\x03\x04 cut short', 'not a readable .npz'),
    (b'', 'not a readable .npz')])
def test_unreadable_files_are_one_line_errors(tmp_path, content, message):
  path = tmp_path / 'reference.npz'
  if content is not None:
    path.write_bytes(content)
  with pytest.raises(DataError, match=message):
    check_reference.main([str(path)])


def test_truncated_reference_is_refused_by_the_command(tmp_path):
  path = tmp_path / 'reference.npz'
  np.savez(path, x=np.zeros((4, 6, 20), np.float32))
  path.write_bytes(path.read_bytes()[:-40])
  completed = subprocess.run(
      [sys.executable, '-m', 'sge_jax.reference', str(path)],
      capture_output=True, text=True, timeout=120, check=False)
  assert completed.returncode == 2, completed.stderr
  assert completed.stderr.startswith('error: ') and 'Traceback' not in completed.stderr


def test_interop_round_trip_and_unknown_names():
  model = GaitEncodingModel(hidden=4, num_joints=3)
  params = jax.jit(model.init)(jax.random.key(0), np.zeros((2, 5, 3), np.float32))
  tf_arrays = interop.params_to_tf(params['params'])
  assert sorted(tf_arrays) == sorted(
      ['enc0_k', 'enc0_b', 'enc1_k', 'enc1_b', 'dec0_k', 'dec0_b', 'dec1_k',
       'dec1_b', 'mem_k', 'att_k', 'out_k', 'out_b', 'W1', 'b1', 'W', 'b'])
  back = interop.params_from_tf(tf_arrays)
  for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(params['params'])):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(KeyError, match='lstm_weights_layer_1'):
    interop.params_from_tf({'lstm_weights_layer_1': np.zeros(1)})
