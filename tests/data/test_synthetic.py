"""The procedural walking set: determinism, shapes, realism, difficulty."""

import time

import numpy as np
import pytest

from sge_jax.config import get_config
from sge_jax.data import joints
from sge_jax.data.loading import load_dataset
from sge_jax.data.synthetic import make_synthetic_dataset
from sge_jax.errors import ConfigError
from tests.fixtures.pipeline import resolved_run

_J = {name: i for i, name in enumerate(joints.KINECT_V1.joint_names)}


def _demo_sizes():
  synthetic = get_config().data.synthetic
  return dict(num_people=synthetic.num_people,
              recordings_per_person=synthetic.recordings_per_person,
              test_recordings_per_person=synthetic.test_recordings_per_person,
              frames_per_recording=synthetic.frames_per_recording)


@pytest.fixture(scope='module')
def demo():
  return make_synthetic_dataset(0, 6, **_demo_sizes())


def _mean_bone_lengths(sequences):
  """Per-sequence mean bone lengths [N, B] (metres)."""
  bones = np.array(joints.KINECT_V1.bones)
  return np.linalg.norm(
      sequences[:, :, bones[:, 0]] - sequences[:, :, bones[:, 1]],
      axis=-1).mean(axis=1)


def test_shapes_labels_and_recordings(demo):
  sizes = _demo_sizes()
  per_recording = (sizes['frames_per_recording'] - 20) // 6
  assert demo.name == 'demo' and demo.length == 6
  assert list(demo.splits) == ['train', 'test']
  assert tuple(demo.joint_names) == joints.KINECT_V1.joint_names
  assert tuple(demo.bones) == joints.KINECT_V1.bones
  for split_name, recordings_per_person in (
      ('train', sizes['recordings_per_person']),
      ('test', sizes['test_recordings_per_person'])):
    split = demo.split(split_name)
    count = sizes['num_people'] * recordings_per_person * per_recording
    assert split.sequences.shape == (count, 6, 20, 3)
    assert split.sequences.dtype == np.float32
    assert split.labels.dtype == np.int64
    assert np.unique(split.labels).tolist() == list(range(sizes['num_people']))
    # Stored person by person, recording by recording, each recording contiguous.
    assert (np.diff(split.labels) >= 0).all()
    assert (np.diff(split.recordings) >= 0).all()
    assert np.bincount(split.recordings)[np.unique(split.recordings)].tolist() == [
        per_recording] * (sizes['num_people'] * recordings_per_person)
  assert not set(demo.split('train').recordings) & set(demo.split('test').recordings)


def test_deterministic_from_the_seed():
  first = make_synthetic_dataset(7, 4, num_people=3, recordings_per_person=2,
                                 test_recordings_per_person=1,
                                 frames_per_recording=60)
  again = make_synthetic_dataset(7, 4, num_people=3, recordings_per_person=2,
                                 test_recordings_per_person=1,
                                 frames_per_recording=60)
  other = make_synthetic_dataset(8, 4, num_people=3, recordings_per_person=2,
                                 test_recordings_per_person=1,
                                 frames_per_recording=60)
  for split in ('train', 'test'):
    np.testing.assert_array_equal(first.split(split).sequences,
                                  again.split(split).sequences)
  assert not np.allclose(first.split('train').sequences,
                         other.split('train').sequences)


def test_a_person_does_not_depend_on_how_many_people_are_made():
  kwargs = dict(recordings_per_person=2, test_recordings_per_person=1,
                frames_per_recording=50)
  few = make_synthetic_dataset(3, 6, num_people=2, **kwargs)
  more = make_synthetic_dataset(3, 6, num_people=4, **kwargs)
  count = few.split('train').num_sequences
  np.testing.assert_array_equal(few.split('train').sequences,
                                more.split('train').sequences[:count])


def test_realistic_metres_in_a_kinect_camera_frame(demo):
  sequences = demo.split('train').sequences
  depth = sequences[..., 2]
  assert 1.0 < depth.min() and depth.max() < 5.0
  height = sequences[:, :, _J['Head'], 1] - np.minimum(
      sequences[:, :, _J['FootLeft'], 1], sequences[:, :, _J['FootRight'], 1])
  assert 1.2 < np.median(height) < 1.8
  # y is up: the head is above the hips in (almost) every frame.
  assert (sequences[:, :, _J['Head'], 1] > sequences[:, :, _J['HipCenter'], 1]
          ).mean() > 0.99
  thigh = np.linalg.norm(sequences[:, :, _J['KneeLeft']]
                         - sequences[:, :, _J['HipLeft']], axis=-1)
  assert 0.3 < np.median(thigh) < 0.55


def test_bodies_are_consistent_within_a_person(demo):
  """Per-recording median leg length varies less within than between people."""
  split = demo.split('train')
  leg = np.median(_mean_bone_lengths(split.sequences)[:, 12:15].sum(-1)
                  .reshape(-1, (140 - 20) // 6), axis=1)
  person_of_recording = split.labels[::(140 - 20) // 6]
  per_person = [leg[person_of_recording == p] for p in np.unique(split.labels)]
  within = np.mean([values.std() for values in per_person])
  between = np.std([values.mean() for values in per_person])
  assert within < 0.5 * between


def test_bone_length_nearest_neighbour_is_informative_but_not_trivial(demo):
  train, test = demo.split('train'), demo.split('test')
  gallery = _mean_bone_lengths(train.sequences)
  probe = _mean_bone_lengths(test.sequences)
  distances = ((probe[:, None] - gallery[None]) ** 2).sum(-1)
  rank1 = (train.labels[distances.argmin(1)] == test.labels).mean()
  chance = 1.0 / len(np.unique(train.labels))
  assert chance < rank1 < 0.9, rank1


def test_fast_for_the_demo_size():
  start = time.perf_counter()
  make_synthetic_dataset(1, 6, **_demo_sizes())
  assert time.perf_counter() - start < 1.0


def test_rejects_recordings_too_short_for_one_window():
  with pytest.raises(ConfigError, match='frames_per_recording=25'):
    make_synthetic_dataset(0, 6, frames_per_recording=25)
  with pytest.raises(ConfigError, match='num_people'):
    make_synthetic_dataset(0, 6, num_people=0)


def test_load_dataset_builds_it_from_the_config():
  config = get_config()
  config.data.format = 'synthetic'
  config.data.length = 8
  config.data.synthetic.num_people = 3
  config.data.synthetic.recordings_per_person = 2
  config.data.synthetic.test_recordings_per_person = 1
  config.data.synthetic.frames_per_recording = 60
  config.data.seed = 5
  dataset = load_dataset(resolved_run(config).data)
  direct = make_synthetic_dataset(5, 8, 3, 2, 1, 60)
  np.testing.assert_array_equal(dataset.split('test').sequences,
                                direct.split('test').sequences)
  assert dataset.source == 'synthetic(seed=5)'
