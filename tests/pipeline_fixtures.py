"""Tiny configs and datasets for pipeline tests (seconds, not minutes)."""

import numpy as np

from configs import default
from sge_jax.data import load_dataset, write_authors_split


def tiny_config(**overrides):
  """The smoke config shrunk further: k=8, batches of 8, 6 batches per epoch.

  ``overrides`` use dotted names: tiny_config(**{'train.epochs': 3}).
  """
  config = default.get_config('smoke')
  config.data.format = 'synthetic'
  config.data.name = 'demo'
  config.data.max_sequences = 0
  config.data.synthetic.num_people = 4
  config.data.synthetic.recordings_per_person = 2
  config.data.synthetic.test_recordings_per_person = 1
  config.data.synthetic.frames_per_recording = 60     # 6 windows per recording
  config.model.hidden = 8
  config.train.batch_size = 8
  config.train.epochs = 2
  config.train.log_every_steps = 3
  config.train.checkpoint_every_steps = 3
  config.rn.epochs = 3
  config.rn.hidden = 8
  config.update_from_flattened_dict(overrides)
  return config


def tiny_dataset(config):
  return load_dataset(config.data, int(config.seed))


def write_authors_dataset(root, name, length, num_joints, people, per_person,
                          seed=0, tag=None):
  """Writes a small dataset in the authors' layout; returns (train, test) arrays.

  Each person's sequences are a slow random walk so that neighbours are similar,
  like windows cut from one recording.
  """
  rng = np.random.default_rng(seed)
  dataset_dir = root / name / str(length)
  out = {}
  for split, train in (('train', True), ('test', False)):
    sequences, labels = [], []
    for person in people:
      base = rng.normal(size=(1, 1, num_joints, 3))
      steps = rng.normal(scale=0.02, size=(per_person, length, num_joints, 3))
      sequences.append(base + np.cumsum(steps, axis=(0)))
      labels += [person] * per_person
    sequences = np.concatenate(sequences).astype(np.float32)
    labels = np.asarray(labels)
    write_authors_split(dataset_dir, tag or name, length, sequences, labels,
                        train=train, dataset_name=name)
    out[split] = (sequences, labels)
  return out
