"""The compiled training step of the stacked axis models (docs/method.md §5).

One step trains all M models (x, y, z per pretext task) at once: their parameters
are stacked on a leading axis and the per-model loss is ``jax.vmap``-ed, so the
three axes share one compiled program but keep separate weights.

Multi-device data parallelism uses ``jax.pmap`` over the axis named ``batch``.
The global batch of B consecutive sequences is cut into contiguous shards, one per
device. The losses are sums over the batch, so each device computes its shard's
estimate of the global objective:

    n_dev * (reconstruction + attention on its shard)
    + contrastive loss on the all-gathered projections (the whole global batch, in
      stored order, so neighbour positives cross shard boundaries correctly)
    + weight decay,

and ``lax.pmean`` of these estimates and of their gradients is exactly the global
loss and gradient (the all-gather's transpose hands each device its rows'
cotangents). The step only uses named-axis collectives, so moving to
``shard_map`` is a change of the mapping, not of the body.

Many hosts change nothing in this maths: n_dev counts the devices of every
process (``psum(1)`` over the axis), and the axis orders them process-major, so
with L devices per process, device d of process p is axis index p L + d and
holds rows [(p L + d) b, (p L + d + 1) b) of the global batch
(``sge_jax.train.devices``). The all-gather therefore returns the global batch
in stored order on every device of every process, and the ``pmean`` averages
over all of them. Layouts of the same n_dev devices (2 processes x 2 devices, 1
x 4) compute the same sums, only reduced in another order: equal up to float32
rounding.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import jax
import jax.numpy as jnp
from jax import lax

from sge_jax.train import losses
from sge_jax.train.pretext import PretextTask, stacked_locality_masks
from sge_jax.train.state import TrainState

AXIS_NAME = 'batch'
# Per-step keys are fold_in(fold_in(root, STEP_KEY_STREAM), step); other uses of
# the root key (batch shuffling) fold in other stream ids, so no key is reused.
STEP_KEY_STREAM = 0
LOSS_TERMS = ('reconstruction', 'locality_attention', 'contrastive',
              'weight_decay')


@dataclasses.dataclass(frozen=True)
class LossSettings:
  """Static hyper-parameters of the objective.

  Attributes:
    temperature: tau of the contrastive loss.
    weight_decay: lambda of the L2 term.
    contrastive_weight: weight of the contrastive loss (1 in the paper).
  """
  temperature: float = 0.1
  weight_decay: float = 0.02
  contrastive_weight: float = 1.0


@dataclasses.dataclass(frozen=True)
class StepDefinition:
  """What a step computes, besides the data: static, hashable.

  Attributes:
    model: the per-axis Flax model (shared definition of all M models).
    model_tasks: the pretext task of each of the M stacked models
      (``pretext.per_model_tasks``); it fixes each model's locality mask and
      whether it has an attention loss.
    loss: loss hyper-parameters.
  """
  model: object
  model_tasks: tuple[PretextTask, ...]
  loss: LossSettings


def model_loss_terms(params, inputs: jax.Array, targets: jax.Array,
                     mask: jax.Array, locality_weight: jax.Array, rng: jax.Array,
                     *, definition: StepDefinition,
                     axis_name: Optional[str]) -> dict[str, jax.Array]:
  """Loss terms of ONE model on this device's shard.

  Args:
    params: one model's parameters.
    inputs: [b, f, J] this device's encoder inputs (b = B / n_dev).
    targets: [b, f, J] pretext targets.
    mask: [f, f] locality mask.
    locality_weight: [] 1 for LA, 0 for BA.
    rng: this step's key (the paper's model is deterministic and does not draw
      from it; stochastic layers of a variant would, under the name 'dropout').
    definition: static step definition.
    axis_name: the pmap axis, or None outside any mapped axis.

  Returns:
    ``reconstruction`` and ``locality_attention`` summed over the shard,
    ``contrastive`` over the global batch, ``weight_decay``; all scalars.
  """
  outputs = definition.model.apply({'params': params}, inputs, targets,
                                   rngs={'dropout': rng})
  projections = outputs['projections']
  if axis_name is not None:
    projections = lax.all_gather(projections, axis_name, tiled=True)
  return {
      'reconstruction': losses.reconstruction_loss(outputs['reconstruction'],
                                                   targets),
      'locality_attention': locality_weight * losses.locality_attention_loss(
          outputs['alignments'], mask),
      'contrastive': losses.neighbour_contrastive_loss(
          projections, definition.loss.temperature),
      'weight_decay': losses.weight_decay_loss(params,
                                               definition.loss.weight_decay),
  }


def global_loss_estimate(params, inputs, targets, mask, locality_weight, rng, *,
                         definition: StepDefinition, axis_name: Optional[str]
                         ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """This device's estimate of one model's global-batch objective (module doc).

  Returns:
    (objective, terms) where ``terms`` holds each global-batch loss term as this
    device estimates it, plus ``total``; ``pmean`` over devices makes them exact.
  """
  terms = model_loss_terms(params, inputs, targets, mask, locality_weight, rng,
                           definition=definition, axis_name=axis_name)
  num_devices = 1 if axis_name is None else lax.psum(1, axis_name)
  terms['reconstruction'] = num_devices * terms['reconstruction']
  terms['locality_attention'] = num_devices * terms['locality_attention']
  objective = (terms['reconstruction'] + terms['locality_attention']
               + definition.loss.contrastive_weight * terms['contrastive']
               + terms['weight_decay'])
  terms['total'] = objective
  return objective, terms


def train_step(state: TrainState, batch: dict[str, jax.Array], rng: jax.Array,
               *, definition: StepDefinition, axis_name: Optional[str] = AXIS_NAME
               ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer step of all stacked models on this device's shard.

  Args:
    state: the train state (parameters stacked on a leading axis of size M).
    batch: ``inputs`` and ``targets``, each [M, b, f, J]: this device's contiguous
      shard of the global batch.
    rng: the run's root training key (typed); the step uses
      ``fold_in(fold_in(rng, STEP_KEY_STREAM), state.step)``.
    definition: static step definition.
    axis_name: the pmap axis name; None runs unmapped on one device.

  Returns:
    The new state and metrics: each loss term and ``total`` as [M] arrays
    (global-batch values, identical on every device).
  """
  step_rng = jax.random.fold_in(jax.random.fold_in(rng, STEP_KEY_STREAM),
                                state.step)
  masks, locality_weights = stacked_locality_masks(definition.model_tasks,
                                                  batch['inputs'].shape[2])
  grad_fn = jax.grad(
      functools.partial(global_loss_estimate, definition=definition,
                        axis_name=axis_name), has_aux=True)
  grads, metrics = jax.vmap(grad_fn, in_axes=(0, 0, 0, 0, 0, None))(
      state.params, batch['inputs'], batch['targets'], jnp.asarray(masks),
      jnp.asarray(locality_weights), step_rng)
  if axis_name is not None:
    grads = lax.pmean(grads, axis_name)
    metrics = lax.pmean(metrics, axis_name)
  return state.apply_gradients(grads), metrics
