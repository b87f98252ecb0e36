"""The recognition network (RN) on CAGEs and its model-selection rules (docs/method.md §7).

The RN is Dense(hidden) -> ReLU -> Dense(C) with the authors' initialisation
(weights normal(0, 1), biases 0), trained with softmax cross-entropy and TF-form
Adam at a fixed rate, without weight decay or clipping. C = the training people.

Inputs (``rn_inputs.rn_samples``): the CAGEs of a sequence, [f, D], become

* ``ap`` ("average prediction"): f frame-level samples [f, D] with the sequence's
  label; a sequence's scores are the mean of its f frame logits;
* ``sc`` ("sequence-level concatenation"): one sample [1, f * D].

Both are stored as [N, r, D_in] (r = f or 1), so scoring a sequence is always
"mean of its r sample logits". What a run gives is an ``RNResult``
(``rn_result``).

Training runs on the device. One jitted call runs ``epochs_per_call`` epochs as
a ``lax.scan``; each epoch is a ``lax.scan`` over mini-batches of a fresh seeded
permutation of the training samples, followed by scoring the validation and
test sequences. The batch count per epoch is fixed: the last incomplete batch is
DROPPED (S mod B samples per epoch, a different random subset every epoch since
the order is reshuffled, so every sample is used about equally often; padding
would instead give the padded samples double weight). The last call of a run is
padded with inactive epochs that leave the state unchanged, so a run compiles
the epoch program exactly once whatever the epoch count. Progress lines
(``rn_progress``) follow each call, and within a long one every 10 s.

Model selection. Every epoch's sequence-level accuracies are tracked on the
device, and each rule keeps what it needs at its chosen epoch:

* ``val`` (default): the epoch with the best accuracy on a validation split of
  the training people's sequences (``rn_inputs.validation_split``), ties
  broken by the lower validation cross-entropy, then by the earlier epoch; its
  parameters are kept and score the test splits after training. The RN is trained on the
  remaining training sequences only.
* ``fixed``: the last epoch.
* ``paper``: per test split, the epoch with the best accuracy ON THAT TEST
  SPLIT (the first such epoch), as the authors' code keeps its RN; its
  parameters are kept and score that split after training. Optimistic: the
  test labels pick the model.

Every rule's scores come from its kept parameters through one compiled scoring
function (``score_tests``), so an RN saved with its parameters
(``sge_jax.evaluate.saved_rn``) re-scores to exactly the same numbers.

With ``track_test`` (always on for ``paper``) the test splits are scored after
every epoch, which gives the ``paper`` rule and the test-accuracy curves next
to the chosen rule from the same training run, so reports can show how much
the choice matters. It costs one forward pass over the test CAGEs per epoch;
turn it off when the test splits dwarf the training split (CASIA-B CVE).

Randomness: the RN key is ``fold_in(key(seed), RN_KEY_STREAM)``; it is split
into an initialisation key and a shuffling key, and epoch e (0-based) shuffles
with ``fold_in(shuffling_key, e)``. The validation split uses
``fold_in(key(seed), VALIDATION_KEY_STREAM)``.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from sge_jax import interrupts
from sge_jax.config import RNSettings
from sge_jax.errors import DataError
from sge_jax.evaluate import rn_progress
from sge_jax.evaluate.rn_inputs import (holdout_rows, per_person_counts,
                                        rn_samples)
from sge_jax.evaluate.rn_result import RNHistory, RNResult, RuleSelection
from sge_jax.models.recognition import RecognitionNetwork
from sge_jax.train import optim

SELECTION_LABELS = {
    'val': 'val (best validation epoch)',
    'fixed': 'fixed (last epoch)',
    'paper': 'paper (best test epoch; optimistic)',
}
# The 'paper' rule keeping the last of tied best test epochs (R6).
LAST_TIE_LABEL = 'paper (best test epoch, last of ties as the released code; optimistic)'


def selection_label(selection: str, test_ties: str = 'first') -> str:
  if selection == 'paper' and test_ties == 'last':
    return LAST_TIE_LABEL
  return SELECTION_LABELS[selection]

# fold_in stream id under the root key of config.seed ('RN' in ASCII; the
# validation split's is rn_inputs.VALIDATION_KEY_STREAM).
RN_KEY_STREAM = 0x524E



def reported_rules(settings: RNSettings, has_holdout: bool) -> tuple[str, ...]:
  """The selection rules one RN run reports: 'fixed' always, 'val' with a
  hold-out, 'paper' when the test splits are tracked."""
  return (('fixed',) + (('paper',) if settings.track_test
                        or settings.selection == 'paper' else ())
          + (('val',) if has_holdout else ()))


@dataclasses.dataclass(frozen=True)
class _Program:
  """Static description of the compiled epoch program (hashable)."""
  model: RecognitionNetwork
  learning_rate: float
  batch_size: int
  batches_per_epoch: int
  has_val: bool
  track_test: bool
  fixed_shuffle: bool = False
  test_ties: str = 'first'


def _optimizer(learning_rate: float) -> optax.GradientTransformation:
  # The authors' tf.train.AdamOptimizer, no decay or clipping.
  return optax.chain(optim.scale_by_tf_adam(), optax.scale(-learning_rate))


def _sequence_scores(model: RecognitionNetwork, params, samples: jax.Array
                     ) -> jax.Array:
  """Mean sample logits: samples [n, r, D_in] -> scores [n, C]."""
  return model.apply({'params': params}, samples).mean(axis=1)


def _accuracy(scores: jax.Array, labels: jax.Array) -> jax.Array:
  return jnp.mean((jnp.argmax(scores, axis=-1) == labels).astype(jnp.float32))


def _cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def epoch_order(shuffle_key: jax.Array, epoch, num_samples: int,
                fixed_shuffle: bool = False) -> jax.Array:
  """The order of the training samples in epoch ``epoch`` (0-based), [S]:
  a fresh permutation per epoch, or with ``fixed_shuffle`` (quirk R4) the
  epoch-0 permutation every epoch, as the released code keeps one shuffle."""
  return jax.random.permutation(
      jax.random.fold_in(shuffle_key, 0 if fixed_shuffle else epoch),
      num_samples)


def _train_epoch(program: _Program, params, opt_state, shuffle_key, epoch,
                 train_x, train_y):
  """One epoch of mini-batch steps over a fresh permutation; returns the new
  params, optimizer state and mean batch loss."""
  tx = _optimizer(program.learning_rate)
  order = epoch_order(shuffle_key, epoch, train_x.shape[0],
                      program.fixed_shuffle)
  batches = order[:program.batches_per_epoch * program.batch_size].reshape(
      program.batches_per_epoch, program.batch_size)

  def step(carry, rows):
    params, opt_state = carry
    loss, grads = jax.value_and_grad(
        lambda p: _cross_entropy(program.model.apply({'params': p},
                                                     train_x[rows]),
                                 train_y[rows]))(params)
    updates, opt_state = tx.update(grads, opt_state)
    return (optax.apply_updates(params, updates), opt_state), loss

  (params, opt_state), losses = lax.scan(step, (params, opt_state), batches)
  return params, opt_state, losses.mean()


def _better(condition, new, old):
  return jax.tree.map(lambda n, o: jnp.where(condition, n, o), new, old)


@functools.partial(jax.jit, static_argnames=('program',))
def _run_epochs(carry, epochs: jax.Array, num_epochs: jax.Array, data,
                program: _Program):
  """Runs the epochs ``epochs`` ([E] int32, 0-based) that are < ``num_epochs``.

  Args:
    carry: params, opt_state, shuffle_key and the trackers: 'val' (best
      validation accuracy, loss, epoch, params) with a validation split,
      'paper' (per test split: best accuracy, epoch, scores) with track_test.
    epochs: [E] epoch indices of this call; those >= num_epochs are inactive.
    num_epochs: [] int32 total epochs of the run.
    data: train_x [S, D_in], train_y [S], val (x [n, r, D_in], y [n]) or None,
      tests: tuple of (x [n_k, r, D_in], y [n_k]).
    program: static settings.

  Returns:
    (carry, history) with history leaves [E, ...] (NaN for inactive epochs).
  """
  model = program.model

  def active_epoch(carry, epoch):
    params, opt_state, loss = _train_epoch(
        program, carry['params'], carry['opt_state'], carry['shuffle_key'],
        epoch, data['train_x'], data['train_y'])
    new = dict(carry, params=params, opt_state=opt_state)
    history = {'train_loss': loss}
    # Progress within a call: reads the epoch counter only (rn_progress).
    jax.debug.callback(rn_progress.epoch_finished, epoch)

    if program.track_test:
      paper, accuracies = [], []
      for (x, y), best in zip(data['tests'], carry['paper']):
        scores = _sequence_scores(model, params, x)
        accuracy = _accuracy(scores, y)
        accuracies.append(accuracy)
        improved = (accuracy >= best['accuracy'] if program.test_ties == 'last'
                    else accuracy > best['accuracy'])
        paper.append(_better(improved,
                             {'accuracy': accuracy, 'epoch': epoch,
                              'params': params}, best))
      new['paper'] = tuple(paper)
      history['test_accuracy'] = (jnp.stack(accuracies) if accuracies
                                  else jnp.zeros((0,), jnp.float32))

    if program.has_val:
      val_x, val_y = data['val']
      val_scores = _sequence_scores(model, params, val_x)
      accuracy = _accuracy(val_scores, val_y)
      val_loss = _cross_entropy(val_scores, val_y)
      best = carry['val']
      improved = (accuracy > best['accuracy']) | (
          (accuracy == best['accuracy']) & (val_loss < best['loss']))
      new['val'] = _better(improved, {'accuracy': accuracy, 'loss': val_loss,
                                      'epoch': epoch, 'params': params}, best)
      history['val_accuracy'] = accuracy
      history['val_loss'] = val_loss
    return new, history

  def inactive_epoch(carry, epoch):
    del epoch
    _, history = jax.eval_shape(active_epoch, carry, jnp.int32(0))
    return carry, jax.tree.map(lambda s: jnp.full(s.shape, jnp.nan, s.dtype),
                               history)

  def body(carry, epoch):
    return lax.cond(epoch < num_epochs, active_epoch, inactive_epoch, carry,
                    epoch)

  return lax.scan(body, carry, epochs)


@functools.partial(jax.jit, static_argnames=('model',))
def _score_samples(params, samples, model: RecognitionNetwork):
  """Sequence scores [n, C] of RN samples [n, r, D_in] under ``params``."""
  return _sequence_scores(model, params, samples)


def score_tests(params, test_samples: tuple[np.ndarray, ...],
                model: RecognitionNetwork) -> tuple[np.ndarray, ...]:
  """Sequence scores [n_k, C] float64 of every test split under ``params``."""
  return tuple(np.asarray(_score_samples(params, jnp.asarray(x), model=model),
                          np.float64) for x in test_samples)


@functools.partial(jax.jit, static_argnames=('program', 'input_dim',
                                             'test_sizes'))
def _initial_carry(program: _Program, rn_key: jax.Array, input_dim: int,
                   test_sizes: tuple[int, ...]):
  """Initial parameters, optimizer state, shuffling key and rule trackers."""
  init_key, shuffle_key = jax.random.split(rn_key)
  params = program.model.init(init_key, jnp.zeros((1, input_dim)))['params']
  opt_state = _optimizer(program.learning_rate).init(params)
  carry = {'params': params, 'opt_state': opt_state,
           'shuffle_key': shuffle_key}
  # Accuracy -1 so that the first epoch always becomes the best so far.
  if program.track_test:
    carry['paper'] = tuple(
        {'accuracy': jnp.float32(-1), 'epoch': jnp.int32(0), 'params': params}
        for _ in test_sizes)
  if program.has_val:
    carry['val'] = {'accuracy': jnp.float32(-1), 'loss': jnp.float32(jnp.inf),
                    'epoch': jnp.int32(0), 'params': params}
  return carry


STOPPING = ('stopping after the current epochs of the recognition network... '
            '(Ctrl-C again to stop at once)')


def stopped_message(epoch: int, epochs: int) -> str:
  """What an interrupted RN training leaves, for the line the command prints."""
  return (f'the recognition network stopped after epoch {epoch} of {epochs}; '
          'it is not saved (the evaluation trains it again), the encodings '
          'and checkpoints are kept')


def rn_key(seed: int) -> jax.Array:
  """The RN's root key: fold_in(key(seed), RN_KEY_STREAM)."""
  return jax.random.fold_in(jax.random.key(seed), RN_KEY_STREAM)


def train_and_score(train_encodings: np.ndarray, train_labels: np.ndarray,
                    test_sets: Mapping[str, tuple[np.ndarray, np.ndarray]],
                    settings: RNSettings) -> RNResult:
  """Trains the RN on the training people's CAGEs and scores the test sets.

  Args:
    train_encodings: [N, f, D] CAGEs of the training sequences, stored order.
    train_labels: [N] person ids; the classes are their distinct values.
    test_sets: split name -> (encodings [n, f, D], person ids [n]); every id
      must be a training person (drop the others first).
    settings: RN settings.

  Returns:
    RNResult with the scores under ``settings.selection`` and every rule.

  Raises:
    DataError: no training sequences, a test person unknown to the training
      split, or selection='val' without any person to hold out from.
  """
  train_labels = np.asarray(train_labels)
  if train_labels.size == 0:
    raise DataError('the RN needs training sequences; the train split is empty')
  classes = np.unique(train_labels)
  test_names = tuple(test_sets)
  test_samples, test_columns = [], []
  for name in test_names:
    encodings, labels = test_sets[name]
    unknown = np.setdiff1d(labels, classes)
    if unknown.size:
      raise DataError(f'test split {name!r} has people the RN was not trained '
                      f'on: {unknown.tolist()}; exclude them first')
    test_samples.append(rn_samples(encodings, settings.manner))
    test_columns.append(np.searchsorted(classes, labels).astype(np.int32))

  val_rows = holdout_rows(train_labels, settings)
  train_rows = np.setdiff1d(np.arange(train_labels.size), val_rows)
  samples = rn_samples(train_encodings, settings.manner)
  train_columns = np.searchsorted(classes, train_labels).astype(np.int32)
  per_sequence = samples.shape[1]
  train_x = samples[train_rows].reshape(-1, samples.shape[2])
  train_y = np.repeat(train_columns[train_rows], per_sequence)
  num_samples = train_x.shape[0]
  batch_size = min(settings.batch_size, num_samples)
  program = _Program(
      model=RecognitionNetwork(hidden=settings.hidden,
                               num_classes=int(classes.size)),
      learning_rate=settings.learning_rate, batch_size=batch_size,
      batches_per_epoch=num_samples // batch_size,
      has_val=bool(val_rows.size),
      track_test=settings.track_test or settings.selection == 'paper',
      fixed_shuffle=settings.fixed_shuffle, test_ties=settings.test_ties)
  data = {
      'train_x': jnp.asarray(train_x), 'train_y': jnp.asarray(train_y),
      'val': ((jnp.asarray(samples[val_rows]),
               jnp.asarray(train_columns[val_rows])) if program.has_val
              else None),
      'tests': tuple((jnp.asarray(x), jnp.asarray(y))
                     for x, y in zip(test_samples, test_columns)),
  }

  started = time.perf_counter()
  carry = _initial_carry(program, rn_key(settings.seed),
                         input_dim=int(train_x.shape[1]),
                         test_sizes=tuple(int(x.shape[0]) for x in test_samples))
  chunk = min(settings.epochs_per_call, settings.epochs)
  num_epochs = np.int32(settings.epochs)
  histories = []
  progress = rn_progress.RNProgress(settings.epochs)
  with interrupts.deferred(STOPPING), progress.tracking():
    for first in range(0, settings.epochs, chunk):
      if interrupts.stop_requested():
        raise KeyboardInterrupt(stopped_message(first, settings.epochs))
      epochs = np.arange(first, first + chunk, dtype=np.int32)
      carry, history = _run_epochs(carry, epochs, num_epochs, data,
                                   program=program)
      history = jax.tree.map(np.asarray, history)
      histories.append(history)
      done = min(first + chunk, settings.epochs)
      last = done - first - 1
      progress.call_done(done, float(history['train_loss'][last]),
                         float(history['val_accuracy'][last])
                         if program.has_val else None)
    if interrupts.stop_requested():
      raise KeyboardInterrupt(stopped_message(settings.epochs, settings.epochs))
  carry = jax.device_get(carry)
  kept = {'fixed': carry['params']}
  if program.has_val:
    kept['val'] = carry['val']['params']
  if program.track_test:
    kept['paper'] = {name: best['params']
                     for name, best in zip(test_names, carry['paper'])}
  train_seconds = time.perf_counter() - started

  history = {name: np.concatenate([h[name] for h in histories]
                                  )[:settings.epochs].astype(np.float64)
             for name in histories[0]}

  epochs = {'fixed': {name: settings.epochs for name in test_names}}
  if program.has_val:
    epochs['val'] = {name: int(carry['val']['epoch']) + 1 for name in test_names}
  if program.track_test:
    epochs['paper'] = {name: int(best['epoch']) + 1
                       for name, best in zip(test_names, carry['paper'])}
  rules = rule_selections(kept, epochs, dict(zip(test_names, test_samples)),
                          program.model)
  chosen = rules[settings.selection]
  return RNResult(
      classes=classes, selection=settings.selection, scores=chosen.scores,
      selected_epochs=chosen.epochs, rules=rules,
      history=RNHistory(
          train_loss=history['train_loss'],
          val_accuracy=history.get('val_accuracy'),
          val_loss=history.get('val_loss'),
          test_accuracy={name: history['test_accuracy'][:, k]
                         for k, name in enumerate(test_names)}
          if program.track_test else {}),
      num_train_sequences=int(train_rows.size),
      train_sequences_per_person=per_person_counts(train_labels[train_rows]),
      num_val_sequences=int(val_rows.size), samples_per_epoch=num_samples,
      batch_size=batch_size, batches_per_epoch=program.batches_per_epoch,
      train_seconds=train_seconds, params=kept, val_rows=val_rows)


def rule_selections(params: Mapping[str, Any],
                    epochs: Mapping[str, Mapping[str, int]],
                    test_samples: Mapping[str, np.ndarray],
                    model: RecognitionNetwork) -> dict[str, RuleSelection]:
  """Each rule's scores of the test splits from its kept parameters.

  Args:
    params: rule -> parameters ('paper': test split -> parameters).
    epochs: rule -> test split -> the 1-based epoch those parameters are from.
    test_samples: test split -> RN samples [n, r, D_in].
    model: the RN.
  """
  names = tuple(test_samples)
  samples = tuple(test_samples.values())
  rules = {}
  for rule in ('fixed', 'paper', 'val'):
    if rule not in params:
      continue
    if rule == 'paper':
      scores = {name: score_tests(params[rule][name], (samples[k],), model)[0]
                for k, name in enumerate(names)}
    else:
      scores = dict(zip(names, score_tests(params[rule], samples, model)))
    rules[rule] = RuleSelection(epochs=dict(epochs[rule]), scores=scores)
  return rules
