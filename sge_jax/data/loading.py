"""Entry point from the data settings (``config.data``) to a SkeletonDataset,
with input checks."""

from __future__ import annotations

import dataclasses
import logging
from typing import Optional, Sequence

import numpy as np

from sge_jax.data import memory
from sge_jax.data import recording_ids
from sge_jax.data.authors_layout import load_authors_dataset, order_splits
from sge_jax.data.dataset import SkeletonDataset, first_sequences
from sge_jax.data.normalize import normalize
from sge_jax.data.units import unit_warnings
from sge_jax.data.npz_format import load_npz_dataset
from sge_jax.data.synthetic import make_synthetic_dataset
from sge_jax.config.checks import invalid
from sge_jax.config.fields import FORMATS
from sge_jax.config.settings import DataSettings, RunSettings
from sge_jax.errors import DataError



def load_dataset(data: DataSettings) -> SkeletonDataset:
  """Loads the dataset the data settings describe.

  Args:
    data: the run's data settings (``config.data``, fields in
      ``sge_jax/config/fields.py``): format, root, name, length, probe, view,
      path, split_field, train_values, synthetic.*, and the seed the
      synthetic format draws with.

  Returns:
    The dataset with ``train`` (unless the protocol has none) and the test
    splits named in ``data.probe`` (none keeps every test split), in report
    order.

  Raises:
    ConfigError: unknown format (``sge_jax.config.validate_config`` checks the
      other fields first).
    DataError: missing or malformed data, unknown dataset/view/probe names
      (the message lists the ones that exist).
  """
  if data.format == 'authors':
    dataset = load_authors_dataset(data.root, data.name, data.length,
                                   data.view)
  elif data.format == 'npz':
    dataset = load_npz_dataset(data.path, data.length, data.split_field,
                               data.train_values)
  elif data.format == 'synthetic':
    synthetic = data.synthetic
    dataset = make_synthetic_dataset(
        data.seed, data.length,
        num_people=synthetic.num_people,
        recordings_per_person=synthetic.recordings_per_person,
        test_recordings_per_person=synthetic.test_recordings_per_person,
        frames_per_recording=synthetic.frames_per_recording)
  else:
    raise invalid('data.format', data.format, f'one of {", ".join(FORMATS)}')
  return select_test_splits(dataset, data.probe)


def select_test_splits(dataset: SkeletonDataset,
                       wanted: Sequence[str]) -> SkeletonDataset:
  """Keeps ``train`` and the test splits named in ``wanted`` (none = all).

  Raises:
    DataError: a requested split that the dataset does not have (the message
      lists those it has).
  """
  if not wanted:
    return dataset
  available = dataset.test_split_names
  unknown = [name for name in wanted if name not in available]
  if unknown:
    raise DataError(
        f'Unknown test split(s) {", ".join(map(repr, unknown))} in '
        f'config.data.probe for dataset {dataset.name!r} ({dataset.source}). '
        f'Test splits it has: {", ".join(available) or "(none)"}; use '
        "--config.data.probe='' for all of them.")
  kept = {name: split for name, split in dataset.splits.items()
          if name == 'train' or name in wanted}
  return dataclasses.replace(dataset, splits=order_splits(kept))


def check_trainable(dataset: SkeletonDataset, batch_size: int,
                    split_name: str = 'train') -> None:
  """Raises DataError unless split ``split_name`` fills at least one batch.

  Training drops the incomplete last batch (docs/method.md §5), so fewer sequences than
  ``batch_size`` would train on nothing.
  """
  if split_name not in dataset.splits:
    raise DataError(
        f'Dataset {dataset.name!r} ({dataset.source}) has no {split_name} split (only '
        f'{", ".join(dataset.splits)}), so encoders cannot be trained on it. '
        'Train on another dataset and reuse its encoders with '
        '--config.encoder_workdir=<that workdir> --config.stages=encode,evaluate.')
  count = dataset.splits[split_name].num_sequences
  if count < batch_size:
    raise DataError(
        f'The {split_name} split of {dataset.name!r} ({dataset.source}) has {count} '
        f'sequences, fewer than one batch of {batch_size}; the incomplete last '
        'batch is dropped, so training would never take a step. Use a smaller '
        f'--config.train.batch_size (at most {count}).')


def check_memory(run: RunSettings, dataset: SkeletonDataset,
                 train_split: Optional[str], encode: bool,
                 seeds_per_device: int = 0) -> None:
  """Refuses (DataError: the estimate, the memory, the way out) a run whose
  training or encoding would not fit in memory (``sge_jax.data.memory``).

  Args:
    run: the run's settings (``model``: that of the encoders used; the
      training batch is shared by ``parallel.num_devices`` devices).
    dataset: the prepared dataset.
    train_split: the split the encoders train on, or None without training.
    encode: whether the encode stage runs.
    seeds_per_device: c > 0 for the seed stack (``train.parallel`` 'seeds'):
      each device trains c seeds, each on a whole batch of
      ``train.batch_size`` and with its own copy of the training data where
      that depends on the seed (a sorting task); 0 for one seed at a time.
  """
  from sge_jax.train import pretext  # pylint: disable=import-outside-toplevel
  tasks = pretext.pretext_tasks(run.model.pretext, run.model.attention)
  models = 3 * len(tasks)
  hidden, length = run.model.hidden, dataset.length
  num_joints = dataset.num_joints
  sizes = (f'{models} models, J={num_joints}, f={length}, '
           f'model.hidden={hidden}')
  largest = max(split.num_sequences for split in dataset.splits.values())
  # Each model's inputs and targets [M, N, f, J] float32 for one split.
  stacked = 2 * models * memory.dataset_bytes(largest, length, num_joints) // 3
  if train_split is not None:
    devices = run.parallel.num_devices
    if seeds_per_device:
      what = (f'Training the seeds at once ({seeds_per_device} per device on '
              f'{devices} device(s), each with a whole batch of '
              f'{run.train.batch_size}; {sizes}')
      way_out = (f'Use --config.train.parallel=data (one seed after another, '
                 f'each batch shared by the {devices} devices), more '
                 'devices, or a smaller --config.model.hidden or '
                 '--config.train.batch_size.')
      # Per device: c train states, each with a whole batch, and the resident
      # training data: one copy, or one per seed with a sorting task
      # (sge_jax.train.seed_stack.stacked_seed_data).
      copies = seeds_per_device if any(task.name == 'sorting'
                                       for task in tasks) else 1
      device_bytes = seeds_per_device * memory.training_bytes(
          models, hidden, run.model.num_layers, num_joints, length,
          run.train.batch_size) + copies * 2 * models * memory.dataset_bytes(
              dataset.splits[train_split].num_sequences, length,
              num_joints) // 3
      host_devices = local_device_count()   # CPU devices share this host
    else:
      what = f'Training ({sizes}'
      way_out = ('Use a smaller --config.model.hidden or --config.train.'
                 'batch_size, or data with fewer joints.')
      device_bytes = memory.training_bytes(
          models, hidden, run.model.num_layers, num_joints, length,
          -(-run.train.batch_size // devices))
      host_devices = 1
    accelerator = memory.accelerator_bytes()
    if accelerator:
      memory.require_fits(device_bytes, what + ')', way_out, accelerator)
    else:
      stacked += host_devices * device_bytes
    memory.require_fits(stacked, f'{what}, {largest} sequences)',
                        way_out + ' --config.data.max_sequences caps the '
                        'sequences per split.')
  if encode:
    rows = sum(split.num_sequences for split in dataset.splits.values())
    # The CAGEs [N, f, M k] float32 twice (per split, then combined).
    memory.require_fits(
        stacked + 2 * rows * length * models * hidden * 4,
        f'Encoding {rows} sequences ({sizes})',
        'Use --config.data.max_sequences to encode fewer sequences per split, '
        'or a smaller --config.model.hidden.')


def local_device_count() -> int:
  """The devices of this process (JAX imported only here)."""
  import jax  # pylint: disable=import-outside-toplevel
  return jax.local_device_count()


def prepare_dataset(data: DataSettings) -> SkeletonDataset:
  """The dataset a job trains and encodes: loaded, capped to
  ``data.max_sequences`` per split, and normalised as ``data.normalization``
  asks."""
  dataset = first_sequences(load_dataset(data), data.max_sequences)
  for warning in unit_warnings(dataset):
    logging.warning('[data] %s', warning)
  return normalize(dataset, data.normalization)


def dataset_summary(dataset: SkeletonDataset) -> str:
  """One line: name, f, J, source and each split's sequences and people."""
  splits = ', '.join(
      f'{name}: {s.num_sequences} sequences / {len(set(s.labels.tolist()))} '
      'people' + (f' / {np.unique(s.recordings).size} recordings'
                  if recording_ids.known(s.recordings) else '')
      for name, s in dataset.splits.items())
  return (f'dataset {dataset.name} (f={dataset.length}, J={dataset.num_joints}, '
          f'{dataset.source}): {splits}')
