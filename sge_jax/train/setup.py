"""What the settings make for the train stage: model, step definition,
optimizer, initial state; and the trained parameters of a finished run."""

from __future__ import annotations

import pathlib
from typing import Optional

import jax

from sge_jax import workdir as workdir_lib
from sge_jax.config.settings import (ModelSettings, QuirkSettings,
                                     RunSettings, TrainSettings)
from sge_jax.data.dataset import SkeletonDataset
from sge_jax.errors import CheckpointError, DataError
from sge_jax.models import GaitEncodingModel
from sge_jax.train import checkpoints as checkpoints_lib
from sge_jax.train import optim, pretext
from sge_jax.train.checkpoints import CheckpointStore, has_checkpoints
from sge_jax.train.early_stopping import EarlyStopping
from sge_jax.train.state import TrainState, create_train_state
from sge_jax.train.step import LossSettings, StepDefinition


def build_model(model: ModelSettings, num_joints: int) -> GaitEncodingModel:
  return GaitEncodingModel(hidden=model.hidden, num_joints=num_joints,
                           num_layers=model.num_layers,
                           decoder_input=model.decoder_input)


def encoder_tasks(model: ModelSettings, quirks: Optional[QuirkSettings] = None
                  ) -> tuple[pretext.PretextTask, ...]:
  """The pretext tasks of the model settings, with quirks R9/R10 on where
  ``quirks`` switches them on."""
  return pretext.pretext_tasks(model.pretext, model.attention, quirks)


def build_definition(run: RunSettings, num_joints: int) -> StepDefinition:
  """The step of the run's encoders (``run.model``, ``run.quirks``,
  ``run.train``) on data of ``num_joints`` joints."""
  return StepDefinition(
      model=build_model(run.model, num_joints),
      model_tasks=pretext.per_model_tasks(encoder_tasks(run.model, run.quirks)),
      loss=LossSettings(temperature=run.train.temperature,
                        weight_decay=run.train.weight_decay,
                        contrastive_weight=run.model.contrastive_weight))


def build_optimizer(train: TrainSettings):
  return optim.tf_adam_with_value_clipping(train.learning_rate,
                                           train.clip_value)


def encoder_training_split(dataset: SkeletonDataset) -> str:
  """The split the encoders learn from: ``train``, else ``gallery`` (CASIA-B CME,
  whose folders hold only gallery and probe: the probe stays unseen)."""
  for name in ('train', 'gallery'):
    if name in dataset.splits:
      return name
  raise DataError(f'dataset {dataset.name!r} ({dataset.source}) has neither a '
                  f'train nor a gallery split to train the encoders on; it has '
                  f'{", ".join(dataset.splits)}')


def initial_state(run: RunSettings, definition: StepDefinition,
                  length: int, num_joints: int) -> TrainState:
  """Fresh state from the root seed (typed key; init and step keys split off)."""
  return create_train_state(definition.model, build_optimizer(run.train),
                            jax.random.key(run.seed),
                            len(definition.model_tasks), length, num_joints)


def checkpoint_template(run: RunSettings, length: int,
                        num_joints: int) -> dict:
  """What a train-stage checkpoint of the run's encoders holds: the fresh
  train state and the early-stopping bookkeeping (the structure restores fill
  in)."""
  # Not jax.eval_shape: the cached, jitted init (state.py) would keep a tracer.
  definition = build_definition(run, num_joints)
  return {'state': initial_state(run, definition, length, num_joints),
          'early_stopping': EarlyStopping.start(
              len(definition.model_tasks)).as_tree()}


def check_checkpoints_fit(run: RunSettings, workdir: str | pathlib.Path,
                          length: int, num_joints: int) -> None:
  """Checks, from their metadata alone, that the checkpoints in
  ``<workdir>/checkpoints`` hold the arrays the run's encoders (``run.model``)
  train on sequences of ``length`` frames of ``num_joints`` joints (nothing
  when there are none).

  Raises:
    CheckpointMismatchError: they were written for another model size, joint
      count, pretext or length.
  """
  directory = pathlib.Path(workdir) / workdir_lib.CHECKPOINT_DIR
  if has_checkpoints(directory):
    checkpoints_lib.check_newest_checkpoint_fits(directory, checkpoint_template(
        run, length, num_joints))


# The array of a checkpoint whose last axis is the joint count J: the decoder's
# output layer reconstructs one value per joint (models/decoder.py).
_JOINT_AXIS_ARRAY = 'tree/state/params/decoder/output/bias'


def trained_joint_count(workdir: str | pathlib.Path) -> int:
  """The joint count J the encoders in ``<workdir>/checkpoints`` were trained
  on, read from the newest checkpoint's metadata (nothing is loaded).

  Raises:
    DataError: there is no checkpoint (``no_trained_encoders``).
    CheckpointError: there are checkpoints, and none has readable metadata
      with the encoders' arrays.
  """
  directory = pathlib.Path(workdir) / workdir_lib.CHECKPOINT_DIR
  if not has_checkpoints(directory):
    raise no_trained_encoders(workdir)
  newest = checkpoints_lib.newest_checkpoint_shapes(directory)
  if newest is None or _JOINT_AXIS_ARRAY not in newest[1]:
    raise CheckpointError(
        f'The checkpoints in {directory} cannot be read (no step has readable '
        'metadata holding the encoders): they are damaged or not sge-jax '
        'checkpoints. Train the encoders again in a new workdir.')
  shape, _ = newest[1][_JOINT_AXIS_ARRAY]
  return int(shape[-1])


def restore_trained_params(run: RunSettings, workdir: str | pathlib.Path,
                           length: int, num_joints: int):
  """The stacked parameters of the newest checkpoint in ``<workdir>/checkpoints``
  (of the run's encoders, ``run.model``).

  Raises:
    DataError: there is no checkpoint (the train stage has not run there).
  """
  template = checkpoint_template(run, length, num_joints)
  directory = pathlib.Path(workdir) / workdir_lib.CHECKPOINT_DIR
  restored = None
  if has_checkpoints(directory):
    with CheckpointStore(directory) as checkpoints:
      restored = checkpoints.restore_latest(template)
  if restored is None:
    raise no_trained_encoders(workdir)
  return restored[1]['state'].params


def no_trained_encoders(workdir: str | pathlib.Path) -> DataError:
  """The error for encoding from a workdir without checkpoints."""
  return DataError(f'No trained encoders in {workdir}/checkpoints: run the '
                   'train stage there first (--config.stages=train,...).')
