"""The trained recognition network on disk, ``rn.npz``, and re-scoring from it.

The evaluate stage saves the RN it trained next to its results: the parameters
every selection rule keeps ('fixed': the last epoch; 'val': the best validation
epoch; 'paper': per test split, its best test epoch), the epochs they are from,
the training curves and counts, and a fingerprint of what defined the training
(the RN fields that change it, the validation hold-out actually used -- its
fraction and a digest of the held-out rows -- and a hash of the encodings).

Principle: re-evaluating with an override gives exactly what a fresh run with
that override would give on the same encodings. Re-evaluation (``python -m
sge_jax.evaluate``) therefore re-scores the test splits from these parameters
only when the fingerprint a fresh run would have (``expected_fingerprint``)
matches the saved one and the saved RN has every rule that run reports (as the
authors' ``evaluate.py --RN_dir`` reuses their saved RN); otherwise it trains
again and says why. E.g. ``rn.selection=fixed`` on a run trained with the 'val'
hold-out trains again: a fresh 'fixed' run trains on every row.

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


def holdout_digest(val_rows: np.ndarray) -> Optional[str]:
  """SHA-256 (16 hex digits) of the held-out training rows, None without any."""
  val_rows = np.asarray(val_rows, dtype=np.int64)
  if not val_rows.size:
    return None
  return hashlib.sha256(np.ascontiguousarray(val_rows).tobytes()).hexdigest()[:16]


def fingerprint(settings: RNSettings, digest: str,
                val_rows: np.ndarray) -> dict[str, Any]:
  """What defines a trained RN: the defining fields, the validation hold-out
  (the fraction and a digest of the rows held out; None for both when the RN
  trained on every row) and the encodings' digest."""
  holdout = holdout_digest(val_rows)
  return {**{field: getattr(settings, field) for field in DEFINING_FIELDS},
          'val_fraction': settings.val_fraction if holdout else None,
          'holdout': holdout,
          'encodings': digest}


def expected_fingerprint(settings: RNSettings, digest: str,
                         train_labels: np.ndarray) -> dict[str, Any]:
  """The fingerprint a fresh RN run with ``settings`` would have on these
  encodings (``train_labels``: [N] the RN's training rows' people)."""
  return fingerprint(settings, digest,
                     recognition.holdout_rows(train_labels, settings))


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

  def mismatch(self, settings: RNSettings,
               wanted: Mapping[str, Any]) -> Optional[str]:
    """Why this RN cannot give what a fresh run with ``settings`` and the
    fingerprint ``wanted`` (``expected_fingerprint``) would give, or None."""
    saved = self.meta['fingerprint']
    if saved.get('encodings') != wanted['encodings']:
      return 'the encodings changed since it was trained'
    changed = [f'rn.{field}' if field != 'seed' else 'seed'
               for field in DEFINING_FIELDS if saved.get(field) != wanted[field]]
    if changed:
      return f'{", ".join(changed)} differ from the saved RN'
    if (saved.get('holdout'), saved.get('val_fraction')) != (
        wanted['holdout'], wanted['val_fraction']):
      return ('its validation hold-out differs from the one this evaluation '
              'trains with (rn.selection, rn.val_fraction)')
    needed = recognition.reported_rules(settings, wanted['holdout'] is not None)
    missing = [rule for rule in needed if rule not in self.params]
    if missing:
      return (f"it has no '{missing[0]}' rule (its rules: "
              f'{", ".join(self.params)})')
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
      'fingerprint': fingerprint(settings, digest, result.val_rows),
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
  with ``settings.selection`` as the chosen rule; nothing is trained. Only the
  rules (and test-accuracy curves) a fresh run with ``settings`` reports are
  kept, so the result is that run's (``SavedRN.mismatch`` must be None)."""
  classes = np.asarray(saved.meta['classes'])
  model = RecognitionNetwork(hidden=int(saved.meta['hidden']),
                             num_classes=int(classes.size))
  samples = {name: recognition.rn_samples(encodings, settings.manner)
             for name, (encodings, _) in test_sets.items()}
  missing = [name for name in samples if name not in saved.meta['epochs']['fixed']]
  if missing:
    raise DataError(f'The saved RN {saved.path} was not scored on the test '
                    f'split(s) {", ".join(missing)}; delete it to train again.')
  summary = saved.meta['summary']
  wanted = recognition.reported_rules(settings,
                                      summary['num_val_sequences'] > 0)
  params = {rule: saved.params[rule] for rule in wanted}
  rules = recognition.rule_selections(params, saved.meta['epochs'],
                                      samples, model)
  history = summary['history']
  chosen = rules[settings.selection]
  tracked = 'paper' in params
  return recognition.RNResult(
      classes=classes, selection=settings.selection, scores=chosen.scores,
      selected_epochs=chosen.epochs, rules=rules,
      history=recognition.RNHistory(
          train_loss=np.asarray(history['train_loss'], np.float64),
          val_accuracy=(None if history['val_accuracy'] is None
                        else np.asarray(history['val_accuracy'], np.float64)),
          val_loss=None,
          test_accuracy=({name: np.asarray(curve, np.float64) for name, curve
                          in history['test_accuracy'].items()}
                         if tracked else {})),
      num_train_sequences=summary['num_train_sequences'],
      train_sequences_per_person=summary['train_sequences_per_person'],
      num_val_sequences=summary['num_val_sequences'],
      samples_per_epoch=summary['samples_per_epoch'],
      batch_size=summary['batch_size'],
      batches_per_epoch=summary['batches_per_epoch'],
      train_seconds=0.0, params=params)
