"""Tests of sge_jax.evaluate.baselines on hand-built skeletons."""

import numpy as np
import pytest

from sge_jax.evaluate import baselines, skeleton_features
from sge_jax.evaluate import distances, metrics
from sge_jax.data import joints

# A standing Kinect v1 skeleton (x right, y up, metres), chosen so that the
# descriptor values are easy to state:
#   height: head (0, 1.7) to mid-ankles (0, 0.1) = 1.6
#   torso: neck = ShoulderCenter (0, 1.5) to HipCenter (0, 1.0) = 0.5
#   shoulder width 0.4, hip width 0.2, upper arm 0.3, forearm 0.25,
#   upper leg 0.5, lower leg 0.4 (leg 0.9), ankle separation 0.2.
_V1_POSE = {
    'HipCenter': (0.0, 1.0, 0.0), 'Spine': (0.0, 1.2, 0.0),
    'ShoulderCenter': (0.0, 1.5, 0.0), 'Head': (0.0, 1.7, 0.0),
    'ShoulderLeft': (-0.2, 1.5, 0.0), 'ElbowLeft': (-0.2, 1.2, 0.0),
    'WristLeft': (-0.2, 0.95, 0.0), 'HandLeft': (-0.2, 0.9, 0.0),
    'ShoulderRight': (0.2, 1.5, 0.0), 'ElbowRight': (0.2, 1.2, 0.0),
    'WristRight': (0.2, 0.95, 0.0), 'HandRight': (0.2, 0.9, 0.0),
    'HipLeft': (-0.1, 1.0, 0.0), 'KneeLeft': (-0.1, 0.5, 0.0),
    'AnkleLeft': (-0.1, 0.1, 0.0), 'FootLeft': (-0.1, 0.05, 0.1),
    'HipRight': (0.1, 1.0, 0.0), 'KneeRight': (0.1, 0.5, 0.0),
    'AnkleRight': (0.1, 0.1, 0.0), 'FootRight': (0.1, 0.05, 0.1),
}
V1_NAMES = list(joints.KINECT_V1.joint_names)
V1_BONES = joints.KINECT_V1.bones


def _v1_pose() -> np.ndarray:
  """[J, 3] standing pose in KINECT_V1 joint order."""
  return np.array([_V1_POSE[name] for name in V1_NAMES])


def _random_rotation(rng) -> np.ndarray:
  q, r = np.linalg.qr(rng.normal(size=(3, 3)))
  q = q * np.sign(np.diag(r))
  return q if np.linalg.det(q) > 0 else -q


def _person_sequences(rng, scale, num_sequences, num_frames=6, jitter=0.003):
  """Sequences of one person: the pose scaled about the hip centre by ``scale``,
  randomly rotated and placed per sequence, with per-joint noise (metres)."""
  pose = _v1_pose()
  pose = pose[0] + scale * (pose - pose[0])
  sequences = []
  for _ in range(num_sequences):
    rotated = pose @ _random_rotation(rng).T + rng.uniform(-3, 3, size=3)
    frames = rotated[None] + rng.normal(scale=jitter,
                                        size=(num_frames,) + pose.shape)
    sequences.append(frames)
  return np.stack(sequences).astype(np.float32)


class TestRawCoordinates:

  def test_hand_computed(self):
    # One frame, two joints at x = 0 and x = 2: centroid (1, 0, 0).
    sequences = np.array([[[[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]]]])
    np.testing.assert_allclose(skeleton_features.raw_coordinates_features(sequences),
                               [[-1, 0, 0, 1, 0, 0]])

  def test_translation_invariant_but_keeps_motion(self):
    rng = np.random.default_rng(0)
    sequences = rng.normal(size=(3, 4, 5, 3))
    shifted = sequences + np.array([10.0, -2.0, 5.0])
    np.testing.assert_allclose(skeleton_features.raw_coordinates_features(shifted),
                               skeleton_features.raw_coordinates_features(sequences),
                               atol=1e-12)
    # Moving one frame relative to the others changes the features.
    moved = sequences.copy()
    moved[:, 0] += 1.0
    assert not np.allclose(skeleton_features.raw_coordinates_features(moved),
                           skeleton_features.raw_coordinates_features(sequences))

  def test_shape(self):
    assert skeleton_features.raw_coordinates_features(
        np.zeros((7, 6, 20, 3))).shape == (7, 360)


class TestBoneLengths:

  def test_known_lengths_and_frame_mean(self):
    # Joints on a line: bone (0,1) is 0.4 m then 0.6 m long (mean 0.5), bone
    # (1,2) is 0.3 m in both frames.
    sequences = np.array([[
        [[0, 0, 0], [0.4, 0, 0], [0.7, 0, 0]],
        [[0, 0, 0], [0, 0.6, 0], [0, 0.9, 0]],
    ]])
    np.testing.assert_allclose(
        skeleton_features.bone_length_features(sequences, [(0, 1), (1, 2)]),
        [[0.5, 0.3]])

  def test_v1_pose_lengths(self):
    lengths = skeleton_features.bone_length_features(_v1_pose()[None, None], V1_BONES)
    by_bone = dict(zip(V1_BONES, lengths[0]))
    assert by_bone[(2, 3)] == pytest.approx(0.2)   # neck to head
    assert by_bone[(12, 13)] == pytest.approx(0.5)  # upper leg
    assert by_bone[(13, 14)] == pytest.approx(0.4)  # lower leg
    assert by_bone[(4, 5)] == pytest.approx(0.3)   # upper arm

  def test_rotation_invariant(self):
    rng = np.random.default_rng(1)
    sequences = _person_sequences(rng, 1.0, 3)
    rotated = sequences @ _random_rotation(rng).T.astype(np.float32)
    np.testing.assert_allclose(
        skeleton_features.bone_length_features(rotated, V1_BONES),
        skeleton_features.bone_length_features(sequences, V1_BONES), atol=1e-5)

  def test_needs_bones(self):
    with pytest.raises(ValueError, match='bones'):
      skeleton_features.bone_length_features(np.zeros((1, 2, 3, 3)), None)
    with pytest.raises(ValueError, match='0..2'):
      skeleton_features.bone_length_features(np.zeros((1, 2, 3, 3)), [(0, 3)])


class TestGaitDescriptor:

  def _static_descriptor(self, joint_names=V1_NAMES, pose=None):
    pose = _v1_pose() if pose is None else pose
    sequences = np.repeat(pose[None, None], 4, axis=1)  # 4 identical frames
    return skeleton_features.gait_descriptor_features(sequences, V1_BONES, joint_names)

  def test_semantic_values_on_known_pose(self):
    result = self._static_descriptor()
    assert len(result.names) == result.features.shape[1] == 34
    assert 'kinect_v1' in result.description
    value = dict(zip(result.names, result.features[0]))
    expected = {
        'height_head_to_mid_ankles_m': 1.6,
        'neck_to_mid_ankles_m': 1.4,
        'torso_length_neck_to_hip_centre_m': 0.5,
        'neck_to_shoulder_left_m': 0.2,
        # Spine (0, 1.2) to ShoulderRight (0.2, 1.5).
        'torso_centre_to_shoulder_right_m': np.sqrt(0.2**2 + 0.3**2),
        'shoulder_width_m': 0.4,
        'hip_width_m': 0.2,
        'arm_length_left_m': 0.55,
        'leg_length_right_m': 0.9,
        'ratio_torso_to_mean_leg': 0.5 / 0.9,
        'ratio_torso_to_upper_leg_left': 1.0,
        'ankle_separation_mean_m': 0.2,
        'ankle_separation_std_m': 0.0,
        # WristLeft (-0.2, 0.95) to HipLeft (-0.1, 1.0).
        'wrist_left_to_hip_left_mean_m': np.hypot(0.1, 0.05),
    }
    for name, want in expected.items():
      assert value[name] == pytest.approx(want), name

  def test_gait_dynamics_mean_and_std(self):
    # The ankles step apart along z: separation sqrt(0.2^2 + s^2) with
    # s = 0, 0.15, 0, 0.15 -> 0.2, 0.25, 0.2, 0.25: mean 0.225, std 0.025.
    sequences = np.repeat(_v1_pose()[None, None], 4, axis=1)
    steps = np.array([0.0, 0.15, 0.0, 0.15])
    sequences[0, :, V1_NAMES.index('AnkleLeft'), 2] += steps / 2
    sequences[0, :, V1_NAMES.index('AnkleRight'), 2] -= steps / 2
    result = skeleton_features.gait_descriptor_features(sequences, V1_BONES, V1_NAMES)
    value = dict(zip(result.names, result.features[0]))
    assert value['ankle_separation_mean_m'] == pytest.approx(0.225)
    assert value['ankle_separation_std_m'] == pytest.approx(0.025)
    # The symmetric step leaves the ankle midpoint, hence the height, unchanged.
    assert value['height_head_to_mid_ankles_m'] == pytest.approx(1.6)

  def test_joint_order_does_not_matter(self):
    permutation = np.random.default_rng(2).permutation(len(V1_NAMES))
    shuffled = self._static_descriptor(
        joint_names=[V1_NAMES[i] for i in permutation],
        pose=_v1_pose()[permutation])
    np.testing.assert_allclose(shuffled.features,
                               self._static_descriptor().features)

  def test_rotation_and_translation_invariant(self):
    rng = np.random.default_rng(3)
    sequences = _person_sequences(rng, 1.0, 2)
    moved = sequences @ _random_rotation(rng).T.astype(np.float32) + 4.0
    np.testing.assert_allclose(
        skeleton_features.gait_descriptor_features(moved, V1_BONES, V1_NAMES).features,
        skeleton_features.gait_descriptor_features(sequences, V1_BONES, V1_NAMES).features,
        atol=1e-4)

  def test_kinect_v2_and_casia_layouts_are_recognised(self):
    rng = np.random.default_rng(4)
    for layout in (joints.KINECT_V2, joints.CASIA_B_14):
      sequences = rng.normal(size=(2, 3, layout.num_joints, 3))
      result = skeleton_features.gait_descriptor_features(
          sequences, layout.bones, layout.joint_names)
      assert layout.name in result.description
      assert result.features.shape == (2, 34)

  def test_casia_hip_centre_is_mid_hips(self):
    # Only the neck and the two hips placed: torso length = |neck - mid-hips|.
    names = joints.CASIA_B_14.joint_names
    pose = np.zeros((14, 3))
    pose[names.index('Neck')] = (0.0, 1.5, 0.0)
    pose[names.index('LHip')] = (-0.1, 1.0, 0.0)
    pose[names.index('RHip')] = (0.1, 1.0, 0.0)
    result = skeleton_features.gait_descriptor_features(pose[None, None], None, names)
    value = dict(zip(result.names, result.features[0]))
    assert value['torso_length_neck_to_hip_centre_m'] == pytest.approx(0.5)

  def test_generic_fallback_hand_computed(self):
    # Stick of 3 joints on a line: bones 0.5 and 0.3 m; end joints 0 and 2 are
    # 0.8 m apart in both frames (std 0).
    frame = [[0, 0, 0], [0.5, 0, 0], [0.8, 0, 0]]
    sequences = np.array([[frame, frame]], dtype=float)
    result = skeleton_features.gait_descriptor_features(sequences, [(0, 1), (1, 2)],
                                                joint_names=None)
    assert 'GENERIC' in result.description
    assert result.names == ('bone_joint_0_joint_1_length_m',
                            'bone_joint_1_joint_2_length_m',
                            'joint_0_to_joint_2_mean_m',
                            'joint_0_to_joint_2_std_m')
    np.testing.assert_allclose(result.features, [[0.5, 0.3, 0.8, 0.0]])

  def test_unknown_names_fall_back_to_generic(self):
    sequences = np.repeat(_v1_pose()[None, None], 2, axis=1)
    result = skeleton_features.gait_descriptor_features(
        sequences, V1_BONES, [f'j{i}' for i in range(20)])
    assert 'GENERIC' in result.description
    assert 'j3_to_j7_mean_m' in result.names  # head to left hand
    # 19 bones + mean/std of pairs of the 5 end joints (head, hands, feet).
    assert result.features.shape == (1, 19 + 2 * 10)

  def test_unknown_names_without_bones_is_an_error(self):
    with pytest.raises(ValueError, match='bones'):
      skeleton_features.gait_descriptor_features(np.zeros((1, 2, 5, 3)), None, None)


class TestStandardizer:

  def test_statistics_come_from_the_fitting_set_only(self):
    gallery = np.array([[0.0, 5.0], [2.0, 5.0]])  # column 1 constant
    test = np.array([[100.0, 7.0]])
    standardizer = baselines.Standardizer.fit(gallery)
    np.testing.assert_allclose(standardizer.mean, [1.0, 5.0])
    np.testing.assert_allclose(standardizer.scale, [1.0, 1.0])  # constant -> 1
    np.testing.assert_allclose(standardizer.transform(test), [[99.0, 2.0]])


def _two_people(rng, num_gallery=4, num_test=5):
  gallery = np.concatenate([_person_sequences(rng, 1.0, num_gallery),
                            _person_sequences(rng, 1.1, num_gallery)])
  test = np.concatenate([_person_sequences(rng, 1.0, num_test),
                         _person_sequences(rng, 1.1, num_test)])
  return (gallery, np.repeat([3, 8], num_gallery),
          test, np.repeat([3, 8], num_test))


class TestRunBaseline:

  def test_bone_lengths_separate_two_people(self):
    # Person 8 is person 3 scaled by 1.1; every sequence has its own random
    # rotation and placement, which bone lengths ignore.
    rng = np.random.default_rng(5)
    gallery, gallery_labels, test, test_labels = _two_people(rng)
    for name in ('bone_length', 'gait_descriptor'):
      result = baselines.run_baseline(name, gallery, gallery_labels, test,
                                      bones=V1_BONES, joint_names=V1_NAMES)
      np.testing.assert_array_equal(result.classes, [3, 8])
      np.testing.assert_array_equal(result.predictions, test_labels)
      columns = metrics.class_indices(test_labels, result.classes)
      assert metrics.rank_k(result.scores, columns, 1) == 1.0
      assert metrics.nauc(result.scores, columns) == 1.0

  def test_raw_coordinates_run_and_match_feature_nn(self):
    rng = np.random.default_rng(6)
    gallery, gallery_labels, test, _ = _two_people(rng, 3, 2)
    result = baselines.run_baseline('raw_coordinates', gallery, gallery_labels,
                                    test, standardize=False)
    expected = metrics.nearest_neighbour_predict(
        skeleton_features.raw_coordinates_features(test),
        skeleton_features.raw_coordinates_features(gallery), gallery_labels)
    np.testing.assert_array_equal(result.predictions, expected)
    assert len(result.feature_names) == 6 * 20 * 3

  def test_no_test_leakage_in_standardisation(self):
    # Appending an absurd test sequence must not change the scores of the
    # others: standardisation statistics come from the gallery only.
    rng = np.random.default_rng(7)
    gallery, gallery_labels, test, _ = _two_people(rng, 3, 2)
    outlier = _person_sequences(rng, 3.0, 1) * 50
    for name in baselines.BASELINES:
      alone = baselines.run_baseline(name, gallery, gallery_labels, test,
                                     bones=V1_BONES, joint_names=V1_NAMES)
      with_outlier = baselines.run_baseline(
          name, gallery, gallery_labels, np.concatenate([test, outlier]),
          bones=V1_BONES, joint_names=V1_NAMES)
      np.testing.assert_allclose(with_outlier.scores[:len(test)], alone.scores,
                                 rtol=1e-12, err_msg=name)

  def test_standardisation_uses_gallery_statistics(self):
    rng = np.random.default_rng(8)
    gallery, gallery_labels, test, _ = _two_people(rng, 3, 2)
    result = baselines.run_baseline('bone_length', gallery, gallery_labels,
                                    test, bones=V1_BONES)
    gallery_features = skeleton_features.bone_length_features(gallery, V1_BONES)
    standardizer = baselines.Standardizer.fit(gallery_features)
    expected = baselines.knn_class_scores(
        standardizer.transform(gallery_features), gallery_labels,
        standardizer.transform(skeleton_features.bone_length_features(test, V1_BONES)))
    np.testing.assert_allclose(result.scores, expected)

  def test_unknown_baseline(self):
    with pytest.raises(ValueError, match='bone_length'):
      baselines.run_baseline('d13', np.zeros((1, 2, 3, 3)), [0],
                             np.zeros((1, 2, 3, 3)))


# 1-D gallery for the score-matrix tests: x = 0, 0.1 (label 1); 1, 1.1, 1.2 (2).
KNN_GALLERY = np.array([[0.0], [0.1], [1.0], [1.1], [1.2]])
KNN_LABELS = np.array([1, 1, 2, 2, 2])


class TestKnnClassScores:

  def test_nearest_neighbour_scores(self):
    # Test x = 0.4: nearest of class 1 is 0.1 (d 0.3), of class 2 is 1.0 (0.6).
    scores = baselines.knn_class_scores(KNN_GALLERY, KNN_LABELS, [[0.4], [0.9]])
    np.testing.assert_allclose(scores, [[-0.3, -0.6], [-0.8, -0.1]])

  def test_column_order_follows_classes(self):
    scores = baselines.knn_class_scores(KNN_GALLERY, KNN_LABELS, [[0.4]],
                                        classes=[2, 1])
    np.testing.assert_allclose(scores, [[-0.6, -0.3]])

  def test_votes_then_proximity(self):
    # Test x = 0.2; distances 0.2, 0.1 (class 1), 0.8, 0.9, 1.0 (class 2).
    # k = 3: votes (2, 1); k = 5: votes (2, 3), the majority beats proximity.
    test = [[0.2]]
    np.testing.assert_allclose(
        baselines.knn_class_scores(KNN_GALLERY, KNN_LABELS, test, k=3),
        [[2 + 1 / 1.1, 1 + 1 / 1.8]])
    np.testing.assert_allclose(
        baselines.knn_class_scores(KNN_GALLERY, KNN_LABELS, test, k=5),
        [[2 + 1 / 1.1, 3 + 1 / 1.8]])

  def test_equal_votes_go_to_the_nearer_class(self):
    # Test x = 0.5, k = 4: neighbours 0.1 (d 0.4), 0 and 1.0 (both 0.5),
    # 1.1 (0.6) -> votes 2 : 2; class 1's nearest (0.4) beats class 2's (0.5).
    scores = baselines.knn_class_scores(KNN_GALLERY, KNN_LABELS, [[0.5]], k=4)
    np.testing.assert_allclose(scores, [[2 + 1 / 1.4, 2 + 1 / 1.5]])
    assert np.argmax(scores) == 0

  def test_classes_without_votes_ranked_by_proximity(self):
    gallery = np.array([[0.0], [0.1], [2.0], [5.0]])
    labels = np.array([0, 0, 1, 2])
    scores = baselines.knn_class_scores(gallery, labels, [[0.0]], k=2)
    # Class 0 has both votes; classes 1 and 2 none, class 1 is nearer.
    np.testing.assert_array_equal(metrics.true_class_ranks(scores, [1]), [2])
    np.testing.assert_array_equal(metrics.true_class_ranks(scores, [2]), [3])

  def test_shape_and_blocking(self, monkeypatch):
    rng = np.random.default_rng(9)
    gallery = rng.normal(size=(30, 4))
    labels = rng.integers(10, 16, size=30)
    test = rng.normal(size=(11, 4))
    scores = baselines.knn_class_scores(gallery, labels, test, k=3)
    assert scores.shape == (11, np.unique(labels).size)
    monkeypatch.setattr(distances, '_BLOCK_ELEMENTS', 30)  # 1 row per block
    np.testing.assert_allclose(
        baselines.knn_class_scores(gallery, labels, test, k=3), scores,
        rtol=1e-12)

  def test_errors(self):
    with pytest.raises(ValueError, match=r'without gallery samples: \[7\]'):
      baselines.knn_class_scores(KNN_GALLERY, KNN_LABELS, [[0.0]],
                                 classes=[1, 2, 7])
    with pytest.raises(ValueError, match='k must be'):
      baselines.knn_class_scores(KNN_GALLERY, KNN_LABELS, [[0.0]], k=6)
