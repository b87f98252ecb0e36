"""The encode stage: CAGEs of every split with the trained encoders, to
``encodings.npz``. The encoders are the run's own, or, for a transfer run
(``encoder_workdir``), those of another run (``read_transfer`` reads which,
once, before any work)."""

from __future__ import annotations

import logging
import pathlib
from typing import Any, Optional

from sge_jax import distributed
from sge_jax import workdir as workdir_lib
from sge_jax.config import identity, resolution
from sge_jax.config.settings import RunSettings, TransferSettings
from sge_jax.data.dataset import SkeletonDataset
from sge_jax.encode.cages import encode_dataset
from sge_jax.encode.encodings import save_encodings
from sge_jax.errors import CheckpointMismatchError, ConfigError
from sge_jax.train.setup import build_model, restore_trained_params


def read_transfer(run: RunSettings) -> Optional[TransferSettings]:
  """The encoders a transfer run uses, from the config.json of their run in
  ``run.encoder_workdir``; None for a run that trains its own.

  Raises:
    ConfigError: ``encoder_workdir`` holds no config.json.
    DataError: that config.json is damaged (``workdir.read_config``).
  """
  if run.trains_here:
    return None
  source = pathlib.Path(run.encoder_workdir)
  if not (source / workdir_lib.CONFIG_FILE).exists():
    raise ConfigError(
        f'config.encoder_workdir={str(source)!r} has no '
        f'{workdir_lib.CONFIG_FILE}: point it at the workdir of a finished run.')
  return resolution.transfer_settings(
      source, workdir_lib.read_config(source / workdir_lib.CONFIG_FILE))


def encoder_source(run: RunSettings, workdir: pathlib.Path) -> pathlib.Path:
  """Where the run's trained encoders are: ``workdir``, or the transfer's."""
  if run.transfer is None:
    if not run.trains_here:
      raise ValueError('a transfer run needs its encoders read first '
                       '(read_transfer, config.with_transfer)')
    return workdir
  return run.transfer.workdir


def saved_config_hash(workdir: pathlib.Path) -> str:
  """The ``config_hash`` of the run in ``workdir``, from its config.json (as
  its own encodings.npz records it).

  Raises:
    DataError: config.json is missing or damaged (``workdir.read_config``).
  """
  return identity.config_hash(
      workdir_lib.read_config(workdir / workdir_lib.CONFIG_FILE))


def encoder_length(run: RunSettings) -> int:
  """The sequence length f the run's encoders were trained on."""
  return run.data.length if run.transfer is None else run.transfer.length


def encode_stage(run: RunSettings, dataset: SkeletonDataset,
                 workdir: pathlib.Path, params: Optional[Any] = None) -> None:
  """Writes ``<workdir>/encodings.npz``.

  In a multi-process job every process computes the encodings (restoring the
  checkpoint is collective) on its own first device; process 0 writes them.

  Args:
    run: the run's settings (``model``: that of the encoders used).
    dataset: the prepared dataset (every split is encoded).
    workdir: the run directory.
    params: the stacked encoder parameters if this process just trained them;
      None restores them from the (encoder) workdir's newest checkpoint.
  """
  source = encoder_source(run, workdir)
  if source != workdir:
    logging.info('[encode] using the encoders trained in %s (%s, pretext %s)',
                 source, run.transfer.dataset, run.model.pretext)
  if params is None:
    try:
      params = restore_trained_params(run, source, encoder_length(run),
                                      dataset.num_joints)
    except CheckpointMismatchError as error:
      raise ConfigError(
          f'The encoders in {source} do not fit {dataset.name} '
          f'(J={dataset.num_joints}): {error}. Transfer between datasets needs '
          'the same joint count J.') from error
  model = build_model(run.model, dataset.num_joints)
  provenance = {}
  if source != workdir:
    provenance = {'source_run': str(source),
                  'source_config_hash': saved_config_hash(source)}
  encoding_set = encode_dataset(run, dataset, params, model, **provenance)
  path = workdir / workdir_lib.ENCODINGS_FILE
  if not distributed.is_main_process():
    return
  save_encodings(path, encoding_set)
  logging.info('[encode] %d sequences, CAGEs [f=%d, %d] -> %s',
               encoding_set.encodings.shape[0], encoding_set.encodings.shape[1],
               encoding_set.encodings.shape[2], path)
