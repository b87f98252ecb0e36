"""Mapping between the authors' TF variables and sge-jax parameter trees.

TF-layout arrays are named as in the reference files that
``python -m sge_jax.reference`` reads (after the authors' TF1 graph), all
with ``y = x @ W + b``:

  enc{l}_k [in + k, 4k], enc{l}_b [4k]   encoder LSTM layer l (gates i, j, f, o)
  dec{l}_k, dec{l}_b                     decoder LSTM layer l; layer 0's input is
                                         [x_t; previous attention]
  mem_k [k, k]                           attention memory layer (no bias)
  att_k [2k, k]                          attention layer on [output; context]
  out_k [k, J], out_b [J]                output projection
  W1 [f k, k], b1, W [k, k], b           contrastive projector

sge-jax keeps the same kernel layouts, so the mapping only renames.
"""

from __future__ import annotations

import re
from typing import Mapping

import numpy as np

_FIXED_NAMES = {
    'mem_k': ('decoder', 'memory'),
    'att_k': ('decoder', 'attention'),
    'out_k': ('decoder', 'output', 'kernel'),
    'out_b': ('decoder', 'output', 'bias'),
    'W1': ('projector', 'hidden', 'kernel'),
    'b1': ('projector', 'hidden', 'bias'),
    'W': ('projector', 'output', 'kernel'),
    'b': ('projector', 'output', 'bias'),
}
_LSTM_NAME = re.compile(r'^(enc|dec)(\d+)_([kb])$')
_LSTM_PARTS = {'enc': 'encoder', 'dec': 'decoder', 'k': 'kernel', 'b': 'bias'}


def tf_name_to_path(name: str) -> tuple[str, ...]:
  """The parameter-tree path of one TF-layout array name, e.g. enc0_k."""
  if name in _FIXED_NAMES:
    return _FIXED_NAMES[name]
  match = _LSTM_NAME.match(name)
  if match is None:
    raise KeyError(f'{name!r} is not a known TF-layout parameter name; '
                   f'expected enc<l>_k/b, dec<l>_k/b or one of '
                   f'{sorted(_FIXED_NAMES)}')
  part, layer, kind = match.groups()
  return (_LSTM_PARTS[part], f'layer_{layer}', _LSTM_PARTS[kind])


def params_from_tf(arrays: Mapping[str, np.ndarray]) -> dict:
  """Builds a GaitEncodingModel parameter tree from TF-layout arrays.

  Args:
    arrays: TF-layout name -> array (names without any ``param/`` prefix).

  Returns:
    A nested dict in the layout of ``GaitEncodingModel.init(...)['params']``.
  """
  params: dict = {}
  for name, array in arrays.items():
    *parents, leaf = tf_name_to_path(name)
    node = params
    for parent in parents:
      node = node.setdefault(parent, {})
    node[leaf] = np.asarray(array)
  return params


def params_to_tf(params: Mapping) -> dict[str, np.ndarray]:
  """The inverse of ``params_from_tf``: TF-layout name -> array."""
  by_path = {}
  for name in _FIXED_NAMES:
    by_path[_FIXED_NAMES[name]] = name
  flat = {}
  for path, array in _flatten(params):
    if path in by_path:
      flat[by_path[path]] = np.asarray(array)
      continue
    part, layer, kind = path
    short = {'encoder': 'enc', 'decoder': 'dec'}[part]
    flat[f'{short}{layer.removeprefix("layer_")}_{kind[0]}'] = np.asarray(array)
  return flat


def _flatten(tree: Mapping, prefix: tuple[str, ...] = ()):
  for key, value in tree.items():
    if isinstance(value, Mapping):
      yield from _flatten(value, prefix + (key,))
    else:
      yield prefix + (key,), value


def count_lstm_layers(arrays: Mapping[str, np.ndarray]) -> int:
  """Number of encoder layers present among TF-layout names."""
  return sum(1 for name in arrays if re.fullmatch(r'enc\d+_k', name))
