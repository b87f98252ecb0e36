"""Hand-crafted features of skeleton sequences, the baselines' inputs
(``baselines`` scores them): each maps f-frame sequences [N, f, J, 3] (metres)
to one feature vector per sequence.

* ``raw_coordinates_features``: the whole centred sequence, flattened.
* ``bone_length_features``: mean length of every bone.
* ``gait_descriptor_features``: body measures, ratios and gait-dynamics
  statistics in the spirit of the D-13 skeleton descriptor (Barbosa et al.
  2012, Munaro et al. 2014), the hand-crafted method the CAGEs paper compares
  against (docs/method.md §8).
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np

from sge_jax.data import joints

Bones = Sequence[tuple[int, int]]
JointNames = Sequence[str]

# Denominators of the descriptor ratios are clamped here (metres) so a collapsed
# limb (a tracking failure) gives a large finite ratio rather than inf/NaN.
_MIN_RATIO_DENOMINATOR = 1e-6


@dataclasses.dataclass(frozen=True)
class FeatureSet:
  """Per-sequence features with their meaning.

  Attributes:
    features: [N, F] float64.
    names: F column names, with units where they have one.
    description: one line saying what was computed (shown in reports).
  """
  features: np.ndarray
  names: tuple[str, ...]
  description: str


def _check_sequences(sequences) -> np.ndarray:
  sequences = np.asarray(sequences, dtype=np.float64)
  if sequences.ndim != 4 or sequences.shape[-1] != 3:
    raise ValueError(f'sequences must be [N, f, J, 3], got {sequences.shape}')
  if not np.all(np.isfinite(sequences)):
    raise ValueError('sequences contain NaN or infinite joint positions')
  return sequences


def _check_bones(bones: Optional[Bones], num_joints: int) -> np.ndarray:
  if bones is None or len(bones) == 0:
    raise ValueError(
        'this feature needs the skeleton bones as (parent, child) joint-index '
        'pairs; the dataset has none (see sge_jax.data.joints for the layouts)')
  bones = np.asarray(bones, dtype=np.int64)
  if bones.ndim != 2 or bones.shape[1] != 2:
    raise ValueError(f'bones must be (parent, child) pairs, got {bones.shape}')
  if bones.min() < 0 or bones.max() >= num_joints:
    raise ValueError(f'bone joint indices must be in 0..{num_joints - 1}')
  return bones


def _distance_series(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Per-frame Euclidean distance of two [N, f, 3] point tracks -> [N, f]."""
  return np.linalg.norm(a - b, axis=-1)


# ----------------------------------------------------------------------------
# Feature extractors.


def raw_coordinates_features(sequences) -> np.ndarray:
  """The centred sequence, flattened.

  Each sequence is translated so that its centroid (the mean position over all
  f frames and J joints) is the origin. The centroid, not a root joint, because
  it needs no joint names (the root is joint 0 in the Kinect layouts but the nose
  in CASIA_B_14) and averages out per-joint noise. Absolute position over an
  f-frame window mostly encodes where the person walked, not who they are; the
  within-window motion, including the translation across the window, is kept.
  Camera orientation is not removed.

  Args:
    sequences: [N, f, J, 3] joint positions, metres.

  Returns:
    [N, f * J * 3] float64, metres, in (frame, joint, axis) order.
  """
  sequences = _check_sequences(sequences)
  centroid = sequences.mean(axis=(1, 2), keepdims=True)
  return (sequences - centroid).reshape(sequences.shape[0], -1)


def bone_length_features(sequences, bones: Bones) -> np.ndarray:
  """Mean length of every bone over the f frames.

  Args:
    sequences: [N, f, J, 3] joint positions, metres.
    bones: B (parent, child) joint-index pairs.

  Returns:
    [N, B] float64, metres; column b is bone ``bones[b]``.
  """
  sequences = _check_sequences(sequences)
  bones = _check_bones(bones, sequences.shape[2])
  parents = sequences[:, :, bones[:, 0]]
  children = sequences[:, :, bones[:, 1]]
  return np.linalg.norm(children - parents, axis=-1).mean(axis=1)


# Body points the semantic descriptor uses, as weighted sums of named joints, per
# layout. Neck is the joint the shoulders attach to in the layout's bone tree
# (Kinect v1 ShoulderCenter, Kinect v2 SpineShoulder, CASIA Neck). CASIA_B_14 has
# no head-top, torso or hip-centre joints: head = nose, hip centre = mid-hips,
# torso centre = midway between neck and hip centre. Ankles and wrists rather
# than feet and hands: every layout has them, and Kinect tracks them more
# steadily.
_BodyPoints = dict[str, tuple[tuple[str, float], ...]]


def _kinect_points(head, neck, torso, hip_centre) -> _BodyPoints:
  points = {'head': ((head, 1.0),), 'neck': ((neck, 1.0),),
            'torso_centre': ((torso, 1.0),), 'hip_centre': ((hip_centre, 1.0),)}
  for side, suffix in (('left', 'Left'), ('right', 'Right')):
    for part in ('Shoulder', 'Elbow', 'Wrist', 'Hip', 'Knee', 'Ankle'):
      points[f'{part.lower()}_{side}'] = ((part + suffix, 1.0),)
  return points


def _casia_points() -> _BodyPoints:
  points = {'head': (('Nose', 1.0),), 'neck': (('Neck', 1.0),),
            'hip_centre': (('LHip', 0.5), ('RHip', 0.5)),
            'torso_centre': (('Neck', 0.5), ('LHip', 0.25), ('RHip', 0.25))}
  for side, prefix in (('left', 'L'), ('right', 'R')):
    for part in ('Shoulder', 'Elbow', 'Wrist', 'Hip', 'Knee', 'Ankle'):
      points[f'{part.lower()}_{side}'] = ((prefix + part, 1.0),)
  return points


_BODY_POINTS_BY_LAYOUT: dict[str, _BodyPoints] = {
    joints.KINECT_V1.name: _kinect_points(
        'Head', 'ShoulderCenter', 'Spine', 'HipCenter'),
    joints.KINECT_V2.name: _kinect_points(
        'Head', 'SpineShoulder', 'SpineMid', 'SpineBase'),
    joints.CASIA_B_14.name: _casia_points(),
}

# (feature name, point a, point b): per-frame distance |a - b|, mean over frames.
_BODY_MEASURES = (
    ('height_head_to_mid_ankles_m', 'head', 'mid_ankles'),
    ('neck_to_mid_ankles_m', 'neck', 'mid_ankles'),
    ('torso_length_neck_to_hip_centre_m', 'neck', 'hip_centre'),
    ('neck_to_shoulder_left_m', 'neck', 'shoulder_left'),
    ('neck_to_shoulder_right_m', 'neck', 'shoulder_right'),
    ('torso_centre_to_shoulder_left_m', 'torso_centre', 'shoulder_left'),
    ('torso_centre_to_shoulder_right_m', 'torso_centre', 'shoulder_right'),
    ('shoulder_width_m', 'shoulder_left', 'shoulder_right'),
    ('hip_width_m', 'hip_left', 'hip_right'),
    ('upper_arm_left_m', 'shoulder_left', 'elbow_left'),
    ('upper_arm_right_m', 'shoulder_right', 'elbow_right'),
    ('forearm_left_m', 'elbow_left', 'wrist_left'),
    ('forearm_right_m', 'elbow_right', 'wrist_right'),
    ('upper_leg_left_m', 'hip_left', 'knee_left'),
    ('upper_leg_right_m', 'hip_right', 'knee_right'),
    ('lower_leg_left_m', 'knee_left', 'ankle_left'),
    ('lower_leg_right_m', 'knee_right', 'ankle_right'),
)

# (feature name stem, point a, point b): mean and std over frames of |a - b|.
_GAIT_DYNAMICS = (
    ('ankle_separation', 'ankle_left', 'ankle_right'),
    ('knee_separation', 'knee_left', 'knee_right'),
    ('wrist_separation', 'wrist_left', 'wrist_right'),
    ('wrist_left_to_hip_left', 'wrist_left', 'hip_left'),
    ('wrist_right_to_hip_right', 'wrist_right', 'hip_right'),
)


def _matching_layout(joint_names: Optional[JointNames]) -> Optional[str]:
  """Name of the first known layout whose descriptor joints are all named."""
  if joint_names is None:
    return None
  available = set(joint_names)
  for layout_name, points in _BODY_POINTS_BY_LAYOUT.items():
    needed = {joint for weights in points.values() for joint, _ in weights}
    if needed <= available:
      return layout_name
  return None


def _body_point_tracks(sequences: np.ndarray, joint_names: JointNames,
                       points: _BodyPoints) -> dict[str, np.ndarray]:
  """Body point name -> [N, f, 3] track, plus the ankle midpoint."""
  index = {name: i for i, name in enumerate(joint_names)}
  tracks = {
      point: sum(weight * sequences[:, :, index[joint]]
                 for joint, weight in weights)
      for point, weights in points.items()}
  tracks['mid_ankles'] = 0.5 * (tracks['ankle_left'] + tracks['ankle_right'])
  return tracks


def _semantic_descriptor(sequences: np.ndarray, joint_names: JointNames,
                         layout_name: str) -> FeatureSet:
  tracks = _body_point_tracks(sequences, joint_names,
                              _BODY_POINTS_BY_LAYOUT[layout_name])
  measures = {name: _distance_series(tracks[a], tracks[b]).mean(axis=1)
              for name, a, b in _BODY_MEASURES}

  def ratio(numerator, denominator):
    return numerator / np.maximum(denominator, _MIN_RATIO_DENOMINATOR)

  torso = measures['torso_length_neck_to_hip_centre_m']
  leg_left = measures['upper_leg_left_m'] + measures['lower_leg_left_m']
  leg_right = measures['upper_leg_right_m'] + measures['lower_leg_right_m']
  columns = dict(measures)
  columns['arm_length_left_m'] = (measures['upper_arm_left_m']
                                  + measures['forearm_left_m'])
  columns['arm_length_right_m'] = (measures['upper_arm_right_m']
                                   + measures['forearm_right_m'])
  columns['leg_length_left_m'] = leg_left
  columns['leg_length_right_m'] = leg_right
  columns['ratio_torso_to_mean_leg'] = ratio(torso, 0.5 * (leg_left + leg_right))
  columns['ratio_torso_to_upper_leg_left'] = ratio(
      torso, measures['upper_leg_left_m'])
  columns['ratio_torso_to_upper_leg_right'] = ratio(
      torso, measures['upper_leg_right_m'])
  for stem, a, b in _GAIT_DYNAMICS:
    series = _distance_series(tracks[a], tracks[b])
    columns[f'{stem}_mean_m'] = series.mean(axis=1)
    columns[f'{stem}_std_m'] = series.std(axis=1)
  names = tuple(columns)
  return FeatureSet(
      features=np.stack([columns[name] for name in names], axis=1),
      names=names,
      description=(
          f'gait descriptor on named joints (layout {layout_name}): '
          f'{len(_BODY_MEASURES) + 4} body measures (m), 3 ratios, '
          f'{2 * len(_GAIT_DYNAMICS)} gait-dynamics mean/std (m)'))


def joint_labels(joint_names: Optional[JointNames], num_joints: int
                  ) -> list[str]:
  if joint_names is None:
    return [f'joint_{j}' for j in range(num_joints)]
  return [str(name) for name in joint_names]


def _leaf_joints(bones: np.ndarray, num_joints: int) -> np.ndarray:
  """Joints with exactly one bone (head, hands, feet in a body tree)."""
  degree = np.bincount(bones.ravel(), minlength=num_joints)
  return np.flatnonzero(degree == 1)


def _generic_descriptor(sequences: np.ndarray, bones: Bones,
                        joint_names: Optional[JointNames]) -> FeatureSet:
  bones = _check_bones(bones, sequences.shape[2])
  lengths = bone_length_features(sequences, bones)
  labels = joint_labels(joint_names, sequences.shape[2])
  names = [f'bone_{labels[parent]}_{labels[child]}_length_m'
           for parent, child in bones]
  leaves = _leaf_joints(bones, sequences.shape[2])
  first, second = np.triu_indices(leaves.size, k=1)
  pair_a, pair_b = leaves[first], leaves[second]
  series = np.linalg.norm(
      sequences[:, :, pair_a] - sequences[:, :, pair_b], axis=-1)  # [N, f, P]
  for statistic in ('mean', 'std'):
    names.extend(f'{labels[a]}_to_{labels[b]}_{statistic}_m'
                 for a, b in zip(pair_a, pair_b))
  features = np.concatenate(
      [lengths, series.mean(axis=1), series.std(axis=1)], axis=1)
  return FeatureSet(
      features=features, names=tuple(names),
      description=(
          'gait descriptor, GENERIC fallback (joint names unknown or not a '
          f'known layout): {len(bones)} mean bone lengths (m) + mean/std over '
          f'frames of {pair_a.size} distances between end joints '
          f'{leaves.tolist()} (m)'))


def gait_descriptor_features(sequences, bones: Optional[Bones] = None,
                             joint_names: Optional[JointNames] = None
                             ) -> FeatureSet:
  """Hand-crafted skeleton + gait descriptor in the spirit of D-13.

  No floor plane is assumed (the datasets' camera frames differ: Kinect camera
  coordinates, GIST's z-up ground frame), so the D-13 heights above the floor are
  replaced by distances to the midpoint of the two ankles. Every feature is a
  distance, so the descriptor is invariant to rotating or translating the scene.
  "Mean" and "std" are over the f frames of the sequence (std with ddof = 0).

  **Semantic mode**, when ``joint_names`` contains the joints of a known layout
  (``joints.KINECT_V1``, ``KINECT_V2`` or ``CASIA_B_14``, matched by name, any
  order). Body points: head (CASIA: nose); neck = joint at the shoulder line
  (the joint the shoulders attach to: v1 ShoulderCenter, v2 SpineShoulder, CASIA
  Neck); torso centre (v1 Spine, v2
  SpineMid, CASIA midway between neck and mid-hips); hip centre (v1 HipCenter,
  v2 SpineBase, CASIA mid-hips); left/right shoulder, elbow, wrist, hip, knee,
  ankle; mid-ankles = midpoint of the two ankles. 34 features, in this order:

  * 17 body measures, mean per-frame distance (m): height (head to mid-ankles),
    neck to mid-ankles, torso length (neck to hip centre), neck to left and to
    right shoulder, torso centre to left and to right shoulder, shoulder width,
    hip width, upper arm and forearm (left, right), upper leg (hip-knee) and
    lower leg (knee-ankle) (left, right);
  * 4 sums (m): arm length = upper arm + forearm, leg length = upper + lower leg
    (left, right);
  * 3 ratios (unitless): torso length / mean leg length, torso length / left
    upper leg, torso length / right upper leg (denominators clamped at 1e-6 m);
  * 10 gait-dynamics statistics (m): mean and std of the per-frame ankle
    separation, knee separation, wrist separation, left wrist to left hip and
    right wrist to right hip.

  **Generic fallback**, when the names are missing or unknown (needs ``bones``):
  the B mean bone lengths (m), then the mean and then the std of the per-frame
  distance between every pair of end joints, i.e. joints with exactly one bone
  (head, hands, feet in a body tree) (m). Both modes say which one ran in
  ``FeatureSet.description``; ``FeatureSet.names`` names every column.

  Args:
    sequences: [N, f, J, 3] joint positions, metres.
    bones: (parent, child) joint-index pairs; used only by the generic fallback.
    joint_names: J joint names, or None.

  Returns:
    FeatureSet with features [N, 34] (semantic) or [N, B + 2 * L(L-1)/2]
    (generic, L end joints), float64.

  Raises:
    ValueError: if the names match no layout and ``bones`` is missing.
  """
  sequences = _check_sequences(sequences)
  if joint_names is not None and len(joint_names) != sequences.shape[2]:
    raise ValueError(f'{len(joint_names)} joint names for J={sequences.shape[2]}')
  layout_name = _matching_layout(joint_names)
  if layout_name is not None:
    return _semantic_descriptor(sequences, joint_names, layout_name)
  return _generic_descriptor(sequences, bones, joint_names)
