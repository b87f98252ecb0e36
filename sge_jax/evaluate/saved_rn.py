"""The trained recognition network on disk, ``rn.npz``, and re-scoring from it.

The evaluate stage saves the RN it trained next to its results: the parameters
every selection rule keeps ('fixed': the last epoch; 'val': the best validation
epoch; 'paper': per test split, its best test epoch), the epochs they are from,
the training curves and counts, and a fingerprint of what defined the training
(the RN fields that change it and a hash of the encodings). Re-evaluation
(``python -m sge_jax.evaluate``) re-scores the test splits from these parameters
instead of training again whenever the fingerprint matches and the saved RN has
the requested rule, so its numbers are exactly those of the original run, as the
authors' ``evaluate.py --RN_dir`` reuses their saved RN.

File layout (plain arrays, no pickles): ``meta`` is a JSON string (fingerprint,
classes, epochs per rule, history, counts); ``params/<rule>/<layer>/<name>`` and
``params/paper/<split>/<layer>/<name>`` are the parameter arrays.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
from typing import Any, Mapping, Optional

import numpy as np

from sge_jax import workdir as workdir_lib
from sge_jax.config import RNSettings
from sge_jax.encode.encodings import EncodingSet
from sge_jax.errors import DataError
from sge_jax.evaluate import recognition
from sge_jax.models.recognition import RecognitionNetwork

RN_FILE = workdir_lib.RN_FILE
# RN fields that change what the network learns ('selection' only chooses among
# the rules of one run, except that 'val' holds out a validation split).
DEFINING_FIELDS = ('seed', 'manner', 'epochs', 'batch_size', 'learning_rate',
                   'hidden', 'fixed_shuffle', 'test_ties')


def encodings_digest(encoding_set: EncodingSet, rows: Any = None) -> str:
  """SHA-256 (16 hex digits) of the CAGEs, labels and split names, and of the
  released row rules ``rows`` (which pick the RN's training rows)."""
  digest = hashlib.sha256(repr(rows).encode())
  for array in (encoding_set.encodings, encoding_set.labels,
                encoding_set.split.astype(str)):
    digest.update(np.ascontiguousarray(array).tobytes())
  return digest.hexdigest()[:16]


def fingerprint(settings: RNSettings, digest: str) -> dict[str, Any]:
  """What defines a trained RN: the defining fields, the validation hold-out
  (a fraction, or None), and the encodings' digest."""
  return {**{field: getattr(settings, field) for field in DEFINING_FIELDS},
          'val_fraction': (settings.val_fraction if settings.selection == 'val'
                           else None),
          'encodings': digest}


@dataclasses.dataclass(frozen=True)
class SavedRN:
  """A loaded ``rn.npz``.

  Attributes:
    path: where it was read from.
    meta: fingerprint, classes, rules, epochs, history and counts.
    params: rule -> parameters ('paper': test split -> parameters).
  """
  path: pathlib.Path
  meta: dict[str, Any]
  params: dict[str, Any]

  def mismatch(self, settings: RNSettings, digest: str) -> Optional[str]:
    """Why this RN cannot serve ``settings`` on these encodings, or None."""
    saved, wanted = self.meta['fingerprint'], fingerprint(settings, digest)
    if saved['encodings'] != wanted['encodings']:
      return 'the encodings changed since it was trained'
    changed = [f'rn.{field}' if field != 'seed' else 'seed'
               for field in DEFINING_FIELDS if saved.get(field) != wanted[field]]
    if changed:
      return f'{", ".join(changed)} differ from the saved RN'
    if settings.selection not in self.params:
      return (f"it has no '{settings.selection}' rule (its rules: "
              f'{", ".join(self.params)})')
    if (settings.selection == 'val'
        and saved['val_fraction'] != wanted['val_fraction']):
      return 'rn.val_fraction differs from the saved RN'
    return None


def save_rn(path: pathlib.Path, result: recognition.RNResult,
            settings: RNSettings, digest: str, summary: Mapping[str, Any]) -> None:
  """Writes ``rn.npz`` atomically (a temporary file, then a rename)."""
  arrays = {}
  for rule, params in result.params.items():
    trees = params.items() if rule == 'paper' else [(None, params)]
    for split, tree in trees:
      prefix = f'params/{rule}' + (f'/{split}' if split else '')
      for layer, leaves in tree.items():
        for name, value in leaves.items():
          arrays[f'{prefix}/{layer}/{name}'] = np.asarray(value)
  meta = {
      'fingerprint': fingerprint(settings, digest),
      'classes': result.classes.tolist(),
      'hidden': settings.hidden,
      'epochs': {rule: selection.epochs for rule, selection
                 in result.rules.items()},
      'summary': dict(summary),
  }
  arrays['meta'] = np.asarray(json.dumps(workdir_lib.json_safe(meta)))
  workdir_lib.write_atomically(path, lambda file: np.savez(file, **arrays))


def load_rn(path: pathlib.Path) -> Optional[SavedRN]:
  """The saved RN at ``path``, or None when there is none.

  Raises:
    DataError: the file exists but cannot be read.
  """
  if not path.exists():
    return None
  try:
    with np.load(path, allow_pickle=False) as data:
      meta = json.loads(str(data['meta']))
      params: dict[str, Any] = {}
      for key in data.files:
        if not key.startswith('params/'):
          continue
        *route, layer, name = key.split('/')[1:]
        node = params
        for part in route:
          node = node.setdefault(part, {})
        node.setdefault(layer, {})[name] = data[key]
  except Exception as error:  # zipfile/numpy/json raise many types
    raise DataError(f'Cannot read the saved RN {path} ({type(error).__name__}: '
                    f'{error}); delete it to train the RN again.') from None
  return SavedRN(path=path, meta=meta, params=params)


def rescore(saved: SavedRN, test_sets: Mapping[str, tuple[np.ndarray, np.ndarray]],
            settings: RNSettings) -> recognition.RNResult:
  """The RNResult of ``saved`` on ``test_sets`` (split -> (encodings, labels)),
  with ``settings.selection`` as the chosen rule; nothing is trained."""
  classes = np.asarray(saved.meta['classes'])
  model = RecognitionNetwork(hidden=int(saved.meta['hidden']),
                             num_classes=int(classes.size))
  samples = {name: recognition.rn_samples(encodings, settings.manner)
             for name, (encodings, _) in test_sets.items()}
  missing = [name for name in samples if name not in saved.meta['epochs']['fixed']]
  if missing:
    raise DataError(f'The saved RN {saved.path} was not scored on the test '
                    f'split(s) {", ".join(missing)}; delete it to train again.')
  rules = recognition.rule_selections(saved.params, saved.meta['epochs'],
                                      samples, model)
  summary = saved.meta['summary']
  history = summary['history']
  chosen = rules[settings.selection]
  return recognition.RNResult(
      classes=classes, selection=settings.selection, scores=chosen.scores,
      selected_epochs=chosen.epochs, rules=rules,
      history=recognition.RNHistory(
          train_loss=np.asarray(history['train_loss'], np.float64),
          val_accuracy=(None if history['val_accuracy'] is None
                        else np.asarray(history['val_accuracy'], np.float64)),
          val_loss=None,
          test_accuracy={name: np.asarray(curve, np.float64) for name, curve
                         in history['test_accuracy'].items()}),
      num_train_sequences=summary['num_train_sequences'],
      train_sequences_per_person=summary['train_sequences_per_person'],
      num_val_sequences=summary['num_val_sequences'],
      samples_per_epoch=summary['samples_per_epoch'],
      batch_size=summary['batch_size'],
      batches_per_epoch=summary['batches_per_epoch'],
      train_seconds=0.0, params=saved.params)
