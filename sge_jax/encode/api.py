"""A finished run's encoders, from Python: ``load_encoder(workdir)``.

  encoder = load_encoder('runs/demo')          # seed=S for a multi-seed workdir
  cages = encoder.encode(sequences)            # [N, f, J, 3] metres -> [N, f, D]

``Encoder.encode`` computes CAGEs exactly as the run's encode stage does: the
run's normalisation (``config.data.normalization``) is applied to the
sequences, then the run's encoders (its pretext tasks, attention, seed and the
released behaviours that act on encoding, R2 and R10) run on them in batches.
The sequences of a split of the run's own data, given as that split's loader
gives them and with ``split`` set to its name, encode to what the run's
``encodings.npz`` holds (identical on the machine that ran it, in practice;
the tests allow float32 rounding).

A transfer run (``config.encoder_workdir``) encodes with the encoders of the
run it names, and with its own normalisation, seed and quirks, as its encode
stage did.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pathlib
import time
from typing import Any, Iterator, Optional

import numpy as np

from sge_jax import workdir as workdir_lib
from sge_jax.config import resolution
from sge_jax.config.settings import RunSettings
from sge_jax.data import memory
from sge_jax.data.dataset import SkeletonDataset
from sge_jax.data.normalize import SEQUENCE_UNITS, normalize, normalize_sequences
from sge_jax.encode import cages as cages_lib
from sge_jax.encode.encodings import EncodingSet, load_encodings
from sge_jax.encode.stage import encoder_length, encoder_source, read_transfer
from sge_jax.errors import DataError, WorkdirBusyError
from sge_jax.models import GaitEncodingModel
from sge_jax.progress import Progress
from sge_jax.train.setup import (build_model, restore_trained_params,
                                 trained_joint_count)
from sge_jax.workdir.lock import hold_workdir_lock

__all__ = ['DEFAULT_SPLIT', 'Encoder', 'load_encoder', 'load_encodings']

# How long ``load_encoder`` waits for the lock of the encoders' workdir:
# another load_encoder or encode command holds it for the few seconds of its
# restore; a run training there holds it for longer (then WorkdirBusyError).
LOCK_WAIT_S = 30.0
_LOCK_POLL_S = 0.5

# The split name ``Encoder.encode`` encodes under unless told: it names the
# stream of the sorting permutations (sorting and rev_rec_plus pretexts only;
# R2 permutes block 2 for 'train' only), so new recordings get their own.
DEFAULT_SPLIT = 'data'


@dataclasses.dataclass(frozen=True, eq=False)
class Encoder:
  """The trained encoders of one run, ready to encode sequences.

  Attributes:
    run: the run's settings (a transfer run's with its encoders' ``model``).
    workdir: the run's directory (``seed_<s>/`` of a multi-seed workdir).
    source: the directory whose checkpoints hold the encoders (``workdir``,
      or a transfer run's ``encoder_workdir``).
    num_joints: J, the joints per frame the encoders read.
    params: the trained stacked parameters (M models).
    model: the per-axis model.
  """
  run: RunSettings
  workdir: pathlib.Path
  source: pathlib.Path
  num_joints: int
  params: Any
  model: GaitEncodingModel

  @property
  def length(self) -> int:
    """f, the frames per sequence the run encodes."""
    return self.run.data.length

  @property
  def normalization(self) -> str:
    """'none', 'root_joint' or 'center': what ``encode`` does to the
    sequences first (``config.data.normalization`` of the run)."""
    return self.run.data.normalization

  @property
  def sequence_units(self) -> str:
    """What the sequences are once normalised, e.g. 'metres, as given'."""
    return SEQUENCE_UNITS[self.normalization]

  @property
  def config_hash(self) -> str:
    """The run's ``config_hash``, as its encodings.npz records it."""
    return self.run.config_hash

  @property
  def model_names(self) -> tuple[str, ...]:
    """The column blocks of the CAGEs, in order (e.g. 'rev_rec/x')."""
    return cages_lib.encoding_model_names(self.run)

  @property
  def feature_dim(self) -> int:
    """D, the CAGE features per frame: one block of k per model name."""
    return len(self.model_names) * self.run.model.hidden

  def __repr__(self) -> str:
    return (f'Encoder({str(self.workdir)!r}: {self.run.model.pretext} '
            f'{self.run.model.attention}, J={self.num_joints}, '
            f'f={self.length}, D={self.feature_dim}, normalization='
            f'{self.normalization!r}, config_hash={self.config_hash!r})')

  def encode(self, sequences: Any, split: str = DEFAULT_SPLIT) -> np.ndarray:
    """CAGEs of ``sequences``, as the run computes them.

    Args:
      sequences: [N, f, J, 3] joint positions in metres, as the run's data
        were given (before normalisation: it is applied here), with the run's
        f and J; any float dtype (converted to float32 first, as the loaders
        do).
      split: the split the sequences stand for: the stream of the sorting
        permutations (pretexts sorting and rev_rec_plus; with R2 the 'train'
        split permutes block 2). Default 'data', the name ``python -m
        sge_jax.encode`` gives a file without splits; to reproduce a split of
        the run, give its name ('train', 'test', ...). Other pretexts ignore
        it.

    Returns:
      [N, f, D] float32 CAGEs, D = ``feature_dim``. Encoding a subset of a
      split, or other neighbours with ``model.decoder_input=
      'shifted_target'`` and the prediction pretext (whose targets are the
      next sequence), may differ from encoding the whole split by float
      rounding, or more for those targets.

    Raises:
      DataError: ``sequences`` is not a finite float array [N, f, J, 3] of
        the run's f and J, or too large for the memory (the message says
        what is expected).
    """
    if not isinstance(split, str) or not split:
      raise DataError(f'split={split!r}: give the split name as a non-empty '
                      f'string (default {DEFAULT_SPLIT!r}).')
    sequences = self.checked_sequences(sequences)
    normalised = normalize_sequences(sequences, self.normalization)
    self._require_memory(sequences.shape[0])
    progress = Progress(f'CAGEs of {sequences.shape[0]} sequences',
                        sequences.shape[0]
                        * cages_lib.encoding_passes(self.run, split),
                        'sequence passes', stage='encode')
    return self._cages(normalised, split, progress.advance)

  def checked_sequences(self, sequences: Any) -> np.ndarray:
    """``sequences`` as float32 [N, f, J, 3], checked against the run's f and
    J, for finite values and a float dtype; DataError (one line) else."""
    expected = (f'[N, f={self.length}, J={self.num_joints}, 3] joint '
                'positions in metres (float)')
    try:
      array = np.asarray(sequences)
    except (ValueError, TypeError) as error:
      raise DataError(f'sequences cannot be read as one array ({error}); '
                      f'give {expected}.') from None
    if array.dtype.kind not in 'f':
      hint = (' If they are metres, pass sequences.astype(np.float32); if '
              'millimetres, divide by 1000 first.'
              if array.dtype.kind in 'iu' else '')
      raise DataError(f'sequences are {array.dtype}, not floats: give '
                      f'{expected}.{hint}')
    if array.ndim != 4:
      hint = (' For one sequence, pass sequences[None].'
              if array.shape[-3:] == (self.length, self.num_joints, 3) else '')
      raise DataError(f'sequences have shape {array.shape} ({array.ndim} '
                      f'dimensions), not {expected}.{hint}')
    _, length, num_joints, axes = array.shape
    if axes != 3:
      raise DataError(f'sequences have {axes} coordinates per joint (shape '
                      f'{array.shape}), not x, y, z: give {expected}.')
    if num_joints != self.num_joints:
      raise DataError(
          f'sequences have J={num_joints} joints (shape {array.shape}); the '
          f'encoders of {self.source} were trained on J={self.num_joints}: '
          f'give {expected}, or use a run trained on {num_joints} joints.')
    if length != self.length:
      raise DataError(
          f'sequences have f={length} frames (shape {array.shape}); the run '
          f'{self.workdir} encodes f={self.length}: give {expected} (cut '
          'recordings into windows of that length).')
    finite = np.isfinite(array)
    if not finite.all():
      first = tuple(int(i) for i in np.argwhere(~finite)[0])
      raise DataError(
          f'sequences hold {int((~finite).sum())} NaN/Inf value(s), the first '
          f'at [sequence, frame, joint, axis] = {list(first)}: drop or repair '
          'those sequences.')
    return array.astype(np.float32, copy=False)

  def encode_dataset(self, dataset: SkeletonDataset) -> EncodingSet:
    """Every split of ``dataset`` (as its loader gives it: the run's
    normalisation is applied here) encoded as the run's encode stage does,
    with the metadata of an encodings.npz that names this run as its
    ``source_run``.

    Raises:
      DataError: the dataset's J or f is not the run's.
    """
    if dataset.num_joints != self.num_joints:
      raise DataError(
          f'{dataset.source} has J={dataset.num_joints} joints; the encoders '
          f'of {self.source} were trained on J={self.num_joints}: encode data '
          f'of {self.num_joints} joints, or use a run trained on '
          f'{dataset.num_joints}.')
    if dataset.length != self.length:
      raise DataError(
          f'{dataset.source} holds sequences of f={dataset.length} frames; '
          f'the run {self.workdir} encodes f={self.length}: encode data of '
          'that length.')
    self._require_memory(max(split.num_sequences
                             for split in dataset.splits.values()),
                         sum(split.num_sequences
                             for split in dataset.splits.values()))
    return cages_lib.encode_dataset(
        self.run, normalize(dataset, self.normalization), self.params,
        self.model, source_run=str(self.workdir.absolute()),
        source_config_hash=self.config_hash)

  def _cages(self, normalised: np.ndarray, split: str,
             batch_done: cages_lib.BatchDone) -> np.ndarray:
    if normalised.shape[0] == 0:
      return np.zeros((0, self.length, self.feature_dim), np.float32)
    return cages_lib.split_cages(self.run, self.params, self.model, normalised,
                                 split, batch_done)

  def _require_memory(self, largest_split: int,
                      rows: Optional[int] = None) -> None:
    """DataError unless encoding fits in memory: the stacked model inputs and
    targets [M, N, f, J] of the largest split (and their padded copies), and
    the CAGEs [N, f, D] of all ``rows`` twice (per split, then combined)."""
    rows = largest_split if rows is None else rows
    models = len(cages_lib.encoding_model_names(self.run))
    inputs = 4 * models * memory.dataset_bytes(largest_split, self.length,
                                               self.num_joints) // 3
    outputs = 2 * rows * self.length * self.feature_dim * 4
    memory.require_fits(
        inputs + outputs, f'Encoding {rows} sequences (J={self.num_joints}, '
        f'f={self.length}, D={self.feature_dim})',
        'Encode fewer sequences at a time.')


def load_encoder(workdir: str | os.PathLike[str],
                 seed: Optional[int] = None) -> Encoder:
  """The trained encoders of a finished run, to encode new sequences.

  Args:
    workdir: the workdir of a run whose train stage has run (its config.json
      and checkpoints/), of a transfer run (its ``encoder_workdir`` must hold
      the trained encoders), or of a multi-seed run (then give ``seed``).
    seed: which seed of a multi-seed workdir (``seed_<s>/``); for a single
      run, its seed (checked) or None.

  Returns:
    The Encoder (``.encode(sequences)``).

  Raises:
    DataError: not the workdir of a run, no trained encoders, a multi-seed
      workdir without ``seed`` or a seed it lacks (the message lists those it
      has), a damaged config.json.
    ConfigError: a transfer run whose ``encoder_workdir`` holds no run.
    CheckpointError: the checkpoints cannot be read.
    WorkdirBusyError: a run is training in the workdir of the encoders (or
      another process held its lock for ``LOCK_WAIT_S``).
  """
  run_dir = run_directory(pathlib.Path(workdir), seed)
  run = saved_run(run_dir)
  if seed is not None and run.seed != seed:
    raise DataError(f'{run_dir} holds a single run of seed {run.seed}, not '
                    f'seed {seed}: leave the seed out, or point at the run '
                    f'of seed {seed}.')
  source = encoder_source(run, run_dir)
  with encoders_locked(source):
    num_joints = trained_joint_count(source)
    params = restore_trained_params(run, source, encoder_length(run),
                                    num_joints)
  return Encoder(run=run, workdir=run_dir, source=source,
                 num_joints=num_joints, params=params,
                 model=build_model(run.model, num_joints))


def run_directory(workdir: pathlib.Path, seed: Optional[int]) -> pathlib.Path:
  """The directory of the run to load: ``workdir``, or its ``seed_<seed>/``.

  Raises:
    DataError: ``workdir`` is not a directory; it holds several seeds and
      ``seed`` is None or not one of them.
  """
  if not workdir.is_dir():
    what = 'is not a directory' if workdir.exists() else 'does not exist'
    raise DataError(f'{workdir} {what}: give the workdir of a finished run '
                    '(the --workdir of launch.py).')
  seeds = {int(path.name.split('_', 1)[1]): path
           for path in workdir_lib.seed_directories(workdir)}
  if not seeds:
    return workdir
  listed = ', '.join(map(str, seeds))
  if seed is None:
    raise DataError(
        f'{workdir} holds a multi-seed run (seeds {listed}): say which seed\'s '
        f'encoders to use (load_encoder(workdir, seed={next(iter(seeds))}), or '
        f'--seed={next(iter(seeds))}).')
  if seed not in seeds:
    raise DataError(f'{workdir} holds no seed {seed}; its seeds are {listed}.')
  return seeds[seed]


def saved_run(run_dir: pathlib.Path) -> RunSettings:
  """The settings of the run in ``run_dir`` from its config.json, resolved
  as the run resolved them; a transfer run's with its encoders' model.

  Raises:
    DataError: no config.json, or a damaged one.
    ConfigError: a transfer run whose ``encoder_workdir`` holds no run.
  """
  config_path = run_dir / workdir_lib.CONFIG_FILE
  if not config_path.exists() and not config_path.is_symlink():
    raise DataError(
        f'{run_dir} is not the workdir of a run: it has no '
        f'{workdir_lib.CONFIG_FILE} (launch.py writes it when a run starts). '
        'Give the --workdir of a finished run.')
  config = resolution.resolve_config(workdir_lib.read_config(config_path))
  try:
    run = resolution.run_settings(config, 1)
  except (AttributeError, KeyError) as error:   # a field the file lacks
    raise DataError(f'{config_path} is damaged (a field is missing: {error}); '
                    'it is the record of a run: restore it.') from None
  transfer = read_transfer(run)
  return run if transfer is None else resolution.with_transfer(run, transfer)


@contextlib.contextmanager
def encoders_locked(source: pathlib.Path) -> Iterator[None]:
  """The workdir lock of ``source`` while its checkpoints are read.

  Restoring removes a checkpoint save left unfinished and moves a damaged
  step aside, which must not happen under a run still training there: such a
  run holds the lock, and the restore is refused (WorkdirBusyError names
  it). The lock is exclusive, held for the seconds the restore takes; while
  another process holds it, this waits up to ``LOCK_WAIT_S`` (two encode
  commands at once both go on). A workdir this process cannot write is read
  without it: no run can train there either.
  """
  if not os.access(source, os.W_OK):
    yield
    return
  deadline, waited = time.monotonic() + LOCK_WAIT_S, False
  with contextlib.ExitStack() as held:
    while True:
      try:
        held.enter_context(hold_workdir_lock(source))
        break
      except WorkdirBusyError as busy:
        if time.monotonic() >= deadline:
          raise
        if not waited:
          logging.info('Waiting up to %.0f s for the lock of %s: %s',
                       LOCK_WAIT_S, source, busy)
        waited = True
        time.sleep(_LOCK_POLL_S)
    yield
