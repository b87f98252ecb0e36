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
``params/paper/<split>/<layer>/<name>`` are the parameter arrays. A file that
does not fit this layout (checked from the headers and the meta before any
parameter is read) never stops an evaluation: it is "unusable", and the RN is
trained again with a warning naming the file and the reason.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import pathlib
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from sge_jax.data import input_files
from sge_jax.data import memory
from sge_jax import workdir as workdir_lib
from sge_jax.config import RNSettings
from sge_jax.encode.encodings import EncodingSet
from sge_jax.errors import DataError
from sge_jax.evaluate import recognition, rn_inputs, rn_result
from sge_jax.models.recognition import RecognitionNetwork

_log = logging.getLogger(__name__)
RN_FILE = workdir_lib.RN_FILE
# A real meta (fingerprint, epochs, curves of a few hundred epochs) is a few
# hundred kB; more is a damaged or foreign file, not read.
MAX_META_BYTES = 64 * 2**20
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
                     rn_inputs.holdout_rows(train_labels, settings))


@dataclasses.dataclass(frozen=True)
class SavedRN:
  """A loaded ``rn.npz``.

  Attributes:
    path: where it was read from.
    meta: fingerprint, classes, rules, epochs, history and counts.
    params: rule -> parameters ('paper': test split -> parameters).
    unusable: why the file cannot be used at all (not a regular file,
      damaged, or arrays that do not fit its meta), None when it can; meta
      and params are then empty.
  """
  path: pathlib.Path
  meta: dict[str, Any]
  params: dict[str, Any]
  unusable: Optional[str] = None

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


def save_rn(path: pathlib.Path, result: rn_result.RNResult,
            settings: RNSettings, digest: str, summary: Mapping[str, Any]) -> None:
  """Writes ``rn.npz`` atomically (a temporary file, then a rename); not
  over a directory of that name (with a warning)."""
  if path.is_dir():
    _log.warning('[eval] The trained RN is not saved: %s is a directory. '
                 'Move it away to keep the RN of the next evaluation.', path)
    return
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

  Never raises for what the file holds: one that is not a regular file, cannot
  be read, or whose arrays do not fit the layout its meta describes (dtype,
  shape, finite values) comes back with ``unusable`` saying why, and the RN is
  trained again. Nothing but the arrays that layout names is read.
  """
  if not path.exists():
    return None
  try:
    meta, params = _read_checked(path)
  except _Unusable as reason:
    return SavedRN(path=path, meta={}, params={}, unusable=str(reason))
  return SavedRN(path=path, meta=meta, params=params)


class _Unusable(Exception):
  """Why a saved RN cannot be used."""


def _read_checked(path: pathlib.Path) -> tuple[dict[str, Any], dict[str, Any]]:
  """(meta, params) of ``path``, each array checked against the layout."""
  kind = input_files.not_regular(path)
  if kind:
    raise _Unusable(f'it is {kind}, not a regular file')
  try:
    headers = input_files.array_headers(path)
    meta_shape, meta_dtype = headers.get('meta', ((), None))
    if meta_dtype is None or meta_dtype.kind != 'U' or meta_shape != ():
      raise _Unusable('it has no meta text')
    if meta_dtype.itemsize > MAX_META_BYTES:
      raise _Unusable(f'its meta text is {meta_dtype.itemsize} bytes')
    with np.load(path, allow_pickle=False) as data:
      meta = json.loads(str(data['meta']))
      routes = _parameter_routes(meta)
      problem = _layout_problem(routes, headers, meta['hidden'],
                                len(meta['classes']))
      if problem:
        raise _Unusable(problem)
      needed = input_files.array_bytes({key: headers[key] for key in routes})
      room, where = memory.available_bytes()
      if needed > room:
        raise _Unusable(f'its parameters need {memory.describe(needed)}, more '
                        f'than the {memory.describe(room)} {where}')
      params: dict[str, Any] = {}
      for key, route in routes.items():
        *parents, leaf = route
        node = params
        for part in parents:
          node = node.setdefault(part, {})
        node[leaf] = data[key]
        if not np.isfinite(node[leaf]).all():
          raise _Unusable(f'{key} holds NaN or Inf values')
  except _Unusable:
    raise
  except Exception as error:  # zipfile/numpy/json raise many types
    reason = f'it cannot be read ({type(error).__name__}: {error})'
    raise _Unusable(reason.replace('\n', ' ')) from None
  return meta, params


def _parameter_routes(meta: Any) -> dict[str, tuple]:
  """Array name -> (rule[, split], layer, name) of every parameter array the
  meta implies, after checking the meta fields the re-scoring reads.

  Raises:
    _Unusable: a meta field is missing or of another type.
  """
  def require(condition, what):
    if not condition:
      raise _Unusable(f'its meta has no valid {what}')

  def is_int(value, least=0):
    return type(value) is int and value >= least

  def is_curve(value):
    return type(value) is list and all(
        type(v) in (int, float) for v in value)

  require(type(meta) is dict, 'JSON object')
  saved_fingerprint = meta.get('fingerprint')
  wanted_keys = set(fingerprint(RNSettings(), '', np.zeros(0, np.int64)))
  require(type(saved_fingerprint) is dict
          and wanted_keys <= set(saved_fingerprint), 'fingerprint')
  classes = meta.get('classes')
  require(type(classes) is list and classes and all(map(is_int, classes))
          and len(set(classes)) == len(classes), 'classes')
  require(is_int(meta.get('hidden'), 1), 'hidden')
  epochs = meta.get('epochs')
  require(type(epochs) is dict and 'fixed' in epochs
          and set(epochs) <= {'fixed', 'val', 'paper'} and all(
              type(chosen) is dict and all(is_int(epoch, 1)
                                           for epoch in chosen.values())
              for chosen in epochs.values()), 'epochs')
  summary = meta.get('summary')
  require(type(summary) is dict and all(is_int(summary.get(name)) for name in (
      'num_train_sequences', 'num_val_sequences', 'samples_per_epoch',
      'batch_size', 'batches_per_epoch')) and type(
          summary.get('train_sequences_per_person')) is dict and all(
              map(is_int, summary['train_sequences_per_person'].values())),
          'summary')
  history = summary.get('history')
  require(type(history) is dict and is_curve(history.get('train_loss'))
          and history['train_loss']
          and (history.get('val_accuracy') is None
               or is_curve(history['val_accuracy']))
          and type(history.get('test_accuracy')) is dict
          and all(map(is_curve, history['test_accuracy'].values())),
          'training history')
  routes = {}
  for rule, chosen in epochs.items():
    for split in (chosen if rule == 'paper' else [None]):
      prefix = (rule,) if split is None else (rule, split)
      for layer in ('hidden', 'output'):
        for name in ('kernel', 'bias'):
          routes['/'.join(('params',) + prefix + (layer, name))] = (
              prefix + (layer, name))
  return routes


def _layout_problem(routes: Mapping[str, tuple],
                    headers: Mapping[str, tuple[tuple, np.dtype]],
                    hidden: int, num_classes: int) -> Optional[str]:
  """What keeps the parameter arrays (their headers) from the RN layout:
  float Dense(H) -> Dense(C) kernels [D, H], [H, C] and biases [H], [C], with
  H and C from the meta and one input width D > 0 for every rule."""
  widths = set()
  for key, route in routes.items():
    if key not in headers:
      return f'it lacks {key}'
    shape, dtype = headers[key]
    if route[-2:] == ('hidden', 'kernel'):
      width = shape[0] if len(shape) == 2 and shape[0] > 0 else 'D'
      widths.add(width)
      wanted = (width, hidden)
    else:
      wanted = {('hidden', 'bias'): (hidden,), ('output', 'bias'): (num_classes,),
                ('output', 'kernel'): (hidden, num_classes)}[route[-2:]]
    if dtype.kind != 'f' or shape != wanted:
      return f'{key} is {dtype} {shape}, not float {wanted}'
  if len(widths) > 1:
    return f'its rules have different input widths {sorted(widths, key=str)}'
  return None


def fit_problem(saved: SavedRN, input_dim: int, classes: np.ndarray,
                test_names: Sequence[str]) -> Optional[str]:
  """Why the arrays of a usable saved RN cannot score these encodings (an
  input width D or classes other than theirs, a test split it was not scored
  on), or None. Called once ``mismatch`` finds nothing: the encodings are then
  those it was trained on, so any of these means a damaged file."""
  width = saved.params['fixed']['hidden']['kernel'].shape[0]
  if width != input_dim:
    return f'its input width {width} is not the {input_dim} of the encodings'
  if saved.meta['classes'] != np.asarray(classes).tolist():
    return 'its classes are not the training people of the encodings'
  missing = [name for name in test_names if any(
      name not in chosen for chosen in saved.meta['epochs'].values())]
  if missing:
    return f'it was not scored on the test split(s) {", ".join(missing)}'
  return None


def rescore(saved: SavedRN, test_sets: Mapping[str, tuple[np.ndarray, np.ndarray]],
            settings: RNSettings) -> rn_result.RNResult:
  """The RNResult of ``saved`` on ``test_sets`` (split -> (encodings, labels)),
  with ``settings.selection`` as the chosen rule; nothing is trained. Only the
  rules (and test-accuracy curves) a fresh run with ``settings`` reports are
  kept, so the result is that run's (``SavedRN.mismatch`` must be None)."""
  classes = np.asarray(saved.meta['classes'])
  model = RecognitionNetwork(hidden=int(saved.meta['hidden']),
                             num_classes=int(classes.size))
  samples = {name: rn_inputs.rn_samples(encodings, settings.manner)
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
  return rn_result.RNResult(
      classes=classes, selection=settings.selection, scores=chosen.scores,
      selected_epochs=chosen.epochs, rules=rules,
      history=rn_result.RNHistory(
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
