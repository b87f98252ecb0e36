"""The encode stage: CAGEs of every split with the trained encoders, to
``encodings.npz``."""

from __future__ import annotations

import logging
import pathlib
from typing import Any, Optional

import jax
import ml_collections

from sge_jax import config as config_lib
from sge_jax import distributed
from sge_jax import workdir as workdir_lib
from sge_jax.data.dataset import SkeletonDataset
from sge_jax.encode.cages import encode_dataset
from sge_jax.encode.encodings import save_encodings
from sge_jax.errors import CheckpointMismatchError, ConfigError
from sge_jax.train.setup import build_model, restore_trained_params


def encoder_source(config: ml_collections.ConfigDict, workdir: pathlib.Path
                   ) -> tuple[pathlib.Path, ml_collections.ConfigDict]:
  """Where the trained encoders are, and the config they were trained with:
  this workdir, or ``config.encoder_workdir`` (transfer)."""
  if not config.encoder_workdir:
    return workdir, config
  source = pathlib.Path(config.encoder_workdir)
  if not (source / workdir_lib.CONFIG_FILE).exists():
    raise ConfigError(
        f'config.encoder_workdir={str(source)!r} has no '
        f'{workdir_lib.CONFIG_FILE}: point it at the workdir of a finished run.')
  return source, workdir_lib.read_config(source / workdir_lib.CONFIG_FILE)


def encode_stage(config: ml_collections.ConfigDict, dataset: SkeletonDataset,
                 workdir: pathlib.Path, params: Optional[Any] = None) -> None:
  """Writes ``<workdir>/encodings.npz``.

  In a multi-process job every process computes the encodings (restoring the
  checkpoint is collective) on its own first device; process 0 writes them.

  Args:
    config: the job config.
    dataset: the prepared dataset (every split is encoded).
    workdir: the run directory.
    params: the stacked encoder parameters if this process just trained them;
      None restores them from the (encoder) workdir's newest checkpoint.
  """
  source, encoder_config = encoder_source(config, workdir)
  encoding_config = config.copy_and_resolve_references()
  with encoding_config.unlocked():
    encoding_config.model = encoder_config.model
  if source != workdir:
    logging.info('[encode] using the encoders trained in %s (%s, pretext %s)',
                 source, encoder_config.data.name, encoder_config.model.pretext)
  if params is None:
    try:
      params = restore_trained_params(
          config_lib.run_settings(encoding_config, jax.device_count()),
          source, int(encoder_config.data.length), dataset.num_joints)
    except CheckpointMismatchError as error:
      raise ConfigError(
          f'The encoders in {source} do not fit {dataset.name} '
          f'(J={dataset.num_joints}): {error}. Transfer between datasets needs '
          'the same joint count J.') from error
  model = build_model(config_lib.ModelSettings.from_section(
      encoder_config.model), dataset.num_joints)
  encoding_set = encode_dataset(encoding_config, dataset, params, model)
  path = workdir / workdir_lib.ENCODINGS_FILE
  if not distributed.is_main_process():
    return
  save_encodings(path, encoding_set)
  logging.info('[encode] %d sequences, CAGEs [f=%d, %d] -> %s',
               encoding_set.encodings.shape[0], encoding_set.encodings.shape[1],
               encoding_set.encodings.shape[2], path)
