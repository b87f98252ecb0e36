"""Checks sge-jax against first-step values of an independent implementation.

Usage:
  python -m sge_jax.reference PATH.npz [--temperature T] [--weight-decay L]

The file holds one training step of ONE axis model, in float32, every weight in
TF layout (y = x @ W + b):

  x, target            [B, f, J]  input and reconstruction target (rows are
                                  consecutive sequences for the contrastive loss)
  locality_mask        [f, f]     rows = decoder step, columns = encoder step
  param/enc<l>_k, _b   encoder layer l: kernel [in + k, 4k] over [input; h],
                                  bias [4k]; gates (i, j, f, o), forget bias +1
  param/dec<l>_k, _b   decoder layer l; layer 0 reads [x_t; previous attention; h]
  param/mem_k          [k, k]     attention memory layer (no bias)
  param/att_k          [2k, k]    attention layer on [top cell output; context]
  param/out_k, out_b   [k, J], [J] output projection
  param/W1, b1, W, b   the contrastive projector ([f*k, k], [k], [k, k], [k])
  grad/<name>          d(total)/d(param) before clipping, weight decay included
  loss/rec, loss/att_loss, loss/C_loss, loss/l2, loss/cost (the sum)

B, f, J, k and the number of LSTM layers are read off the arrays. The model is
run with LA attention and zero decoder inputs; the command prints each loss
with its relative error and the largest relative gradient error per array
(max-norm), and exits with status 1 if a loss is off by more than 1e-4 or a
gradient by more than 1e-3, with status 2 if the file cannot be read.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import zipfile
from typing import Mapping, Optional, Sequence

import jax
import numpy as np

from sge_jax import cli
from sge_jax.data import input_files
from sge_jax.data import memory
from sge_jax.errors import DataError
from sge_jax.reference import interop
from sge_jax.train.losses import locality_mask
from sge_jax.models import GaitEncodingModel
from sge_jax.train.pretext import PretextTask
from sge_jax.train.step import LossSettings, StepDefinition, global_loss_estimate

LOSS_TOLERANCE = 1e-4
GRADIENT_TOLERANCE = 1e-3
# Reference loss name -> sge-jax term.
_LOSS_NAMES = {'rec': 'reconstruction', 'att_loss': 'locality_attention',
               'C_loss': 'contrastive', 'l2': 'weight_decay', 'cost': 'total'}


@dataclasses.dataclass(frozen=True)
class Comparison:
  """Relative errors of one reference check."""
  losses: dict[str, tuple[float, float, float]]  # name -> (ours, reference, rel)
  gradients: dict[str, float]                     # TF name -> max-norm rel error
  mask_error: float

  @property
  def passed(self) -> bool:
    return (all(rel <= LOSS_TOLERANCE for _, _, rel in self.losses.values())
            and all(rel <= GRADIENT_TOLERANCE
                    for rel in self.gradients.values())
            and self.mask_error <= LOSS_TOLERANCE)


def _prefixed(arrays: Mapping[str, np.ndarray], prefix: str) -> dict:
  return {name[len(prefix):]: np.asarray(value)
          for name, value in arrays.items() if name.startswith(prefix)}


def _relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
  scale = float(np.max(np.abs(reference)))
  difference = float(np.max(np.abs(np.asarray(ours, np.float64) - reference)))
  return difference / scale if scale > 0 else difference


def compare_with_reference(arrays: Mapping[str, np.ndarray],
                           temperature: float = 0.1,
                           weight_decay: float = 0.02) -> Comparison:
  """Runs one forward/backward pass on the reference inputs and compares.

  Args:
    arrays: the reference file's arrays.
    temperature: contrastive temperature used to make the reference.
    weight_decay: L2 weight used to make the reference.
  """
  tf_params = _prefixed(arrays, 'param/')
  inputs, targets = np.asarray(arrays['x']), np.asarray(arrays['target'])
  _, length, num_joints = inputs.shape
  hidden = tf_params['mem_k'].shape[0]
  model = GaitEncodingModel(hidden=hidden, num_joints=num_joints,
                            num_layers=interop.count_lstm_layers(tf_params))
  definition = StepDefinition(model, (PretextTask('rev_rec', 'LA'),),
                              LossSettings(temperature, weight_decay))
  mask = locality_mask(length, reversed_target=True)

  objective = functools.partial(global_loss_estimate, inputs=inputs,
                                targets=targets, mask=mask,
                                locality_weight=np.float32(1.0),
                                rng=jax.random.key(0), definition=definition,
                                axis_name=None)
  grads, terms = jax.jit(jax.grad(objective, has_aux=True))(
      interop.params_from_tf(tf_params))
  loss_errors = {}
  for reference_name, ours_name in _LOSS_NAMES.items():
    reference = float(arrays[f'loss/{reference_name}'])
    ours = float(terms[ours_name])
    loss_errors[reference_name] = (ours, reference,
                                   _relative_error(np.float64(ours),
                                                   np.float64(reference)))
  reference_grads = _prefixed(arrays, 'grad/')
  our_grads = interop.params_to_tf(jax.device_get(grads))
  gradient_errors = {name: _relative_error(our_grads[name], reference)
                     for name, reference in reference_grads.items()}
  mask_error = (_relative_error(mask, arrays['locality_mask'])
                if 'locality_mask' in arrays else 0.0)
  return Comparison(loss_errors, gradient_errors, mask_error)


def format_report(comparison: Comparison, shape_line: str) -> str:
  lines = [shape_line, f'{"loss":<10} {"sge-jax":>14} {"reference":>14} '
           f'{"rel. error":>11}']
  for name, (ours, reference, rel) in comparison.losses.items():
    flag = '' if rel <= LOSS_TOLERANCE else '  FAIL'
    lines.append(f'{name:<10} {ours:>14.7g} {reference:>14.7g} {rel:>11.2e}{flag}')
  lines.append(f'{"gradient":<10} {"max rel. error":>14}')
  for name, rel in comparison.gradients.items():
    flag = '' if rel <= GRADIENT_TOLERANCE else '  FAIL'
    lines.append(f'{name:<10} {rel:>14.2e}{flag}')
  lines.append(f'locality mask max rel. error {comparison.mask_error:.2e}')
  lines.append('PASS' if comparison.passed else
               f'FAIL (tolerances: loss {LOSS_TOLERANCE:g}, '
               f'gradient {GRADIENT_TOLERANCE:g})')
  return '\n'.join(lines)


def _read_reference(path: str) -> dict[str, np.ndarray]:
  """The arrays of the reference file (its .npy members), checked to be a
  regular file that fits in memory before anything is read."""
  input_files.require_regular_file(path, 'reference file',
                                   'Pass the reference .npz file.')
  try:
    headers = input_files.array_headers(path)
    memory.require_fits(input_files.array_bytes(headers), f'Reading {path}',
                        'Use a machine with more memory.')
    with np.load(path, allow_pickle=False) as data:
      return {name: data[name] for name in headers}
  except FileNotFoundError:
    raise DataError(f'no reference file at {path}') from None
  except DataError:
    raise
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
    raise DataError(f'{path} is not a readable .npz reference file '
                    f'(truncated or corrupt?): {error}') from None


def layout_problem(arrays: Mapping[str, np.ndarray]) -> Optional[str]:
  """What keeps ``arrays`` from being a reference file (module docstring),
  or None: missing arrays, other dtypes or shapes than the model that x and
  param/mem_k describe has, or non-finite values."""
  required = ('x', 'target', 'param/mem_k') + tuple(
      f'loss/{name}' for name in _LOSS_NAMES)
  missing = [name for name in required if name not in arrays]
  if missing:
    return f'lacks {", ".join(missing)}'
  for name, array in arrays.items():
    if array.dtype.kind not in 'fiu' or not np.isfinite(array).all():
      return f'{name} is not a finite numeric array ({array.dtype})'
  x, mem_k = arrays['x'], arrays['param/mem_k']
  if x.ndim != 3 or mem_k.ndim != 2 or 0 in x.shape + mem_k.shape:
    return (f'x must be [B, f, J] and param/mem_k [k, k], not {x.shape} and '
            f'{mem_k.shape}')
  _, length, num_joints = x.shape
  tf_params = _prefixed(arrays, 'param/')
  try:
    model = GaitEncodingModel(hidden=mem_k.shape[0], num_joints=num_joints,
                              num_layers=max(
                                  interop.count_lstm_layers(tf_params), 1))
    abstract = jax.eval_shape(model.init, jax.random.key(0),
                              jax.ShapeDtypeStruct(x.shape, np.float32))
    # Zero-stride stand-ins: the shapes, without allocating the arrays.
    expected = interop.params_to_tf(jax.tree.map(
        lambda leaf: np.broadcast_to(np.float32(0), leaf.shape),
        abstract['params']))
  except Exception as error:  # pylint: disable=broad-except
    return f'holds no model of its shapes ({type(error).__name__}: {error})'
  shapes = {'target': x.shape, 'locality_mask': (length, length),
            **{f'loss/{name}': () for name in _LOSS_NAMES},
            **{f'{kind}/{name}': value.shape for name, value in expected.items()
               for kind in ('param', 'grad')}}
  for name, array in arrays.items():
    wanted = shapes.get(name, x.shape if name == 'x' else None)
    if wanted is None or array.shape != tuple(wanted):
      return (f'{name} has shape {array.shape}, expected '
              f'{"no such array" if wanted is None else tuple(wanted)} for '
              f'B, f, J = {x.shape} and k = {mem_k.shape[0]}')
  unset = [f'param/{name}' for name in expected if f'param/{name}' not in arrays]
  return f'lacks {", ".join(unset)}' if unset else None


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog='python -m sge_jax.reference',
      description=__doc__.split('\n\n', 1)[1],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('path', help='reference .npz file')
  parser.add_argument('--temperature', type=float, default=0.1,
                      help='contrastive temperature of the reference (0.1)')
  parser.add_argument('--weight-decay', type=float, default=0.02,
                      help='L2 weight of the reference (0.02)')
  args = parser.parse_args(argv)
  arrays = _read_reference(args.path)
  problem = layout_problem(arrays)
  if problem:
    raise DataError(f'{args.path}: {problem}; the format is described in '
                    'python -m sge_jax.reference --help')
  comparison = compare_with_reference(arrays, args.temperature,
                                      args.weight_decay)
  batch, length, num_joints = arrays['x'].shape
  hidden = arrays['param/mem_k'].shape[0]
  print(format_report(comparison, f'{args.path}: B={batch} f={length} '
                      f'J={num_joints} k={hidden} T={args.temperature}'))
  return 0 if comparison.passed else 1


if __name__ == '__main__':
  cli.exit_on_user_error(main)
