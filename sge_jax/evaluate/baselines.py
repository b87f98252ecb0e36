"""Hand-crafted skeleton baselines, scored exactly like the learned model.

Each baseline maps f-frame sequences [N, f, J, 3] (metres) to one feature vector
per sequence and classifies test sequences by k-nearest neighbours among the
training/gallery sequences. ``run_baseline`` returns a class-score matrix
[N_test, C] so that rank-k, CMC, nAUC and the confusion matrix come from
``sge_jax.evaluate.metrics`` exactly as for the recognition network's scores. On some data
these baselines are strong (bone lengths alone identify the 10 GIST walkers almost
perfectly), so every report should show them next to CAGEs.

Baselines (``BASELINES`` keys):

* ``raw_coordinates``: the whole centred sequence, flattened.
* ``bone_length``: mean length of every bone.
* ``gait_descriptor``: body measures, ratios and gait-dynamics statistics in the
  spirit of the D-13 skeleton descriptor (Barbosa et al. 2012, Munaro et al.
  2014), the hand-crafted method the CAGEs paper compares against (docs/method.md §8).

Score-matrix convention (``knn_class_scores``): with d_c the distance from a test
sequence to the nearest gallery sequence of class c,

* k = 1: score_c = -d_c (argmax = the nearest neighbour's class);
* k > 1: score_c = votes_c + 1 / (1 + d_c), where votes_c counts class c among
  the k nearest gallery sequences. The fraction is in (0, 1], so classes are
  ranked by votes first and, at equal votes (including all classes without
  votes), by proximity; argmax = majority vote, ties going to the nearer class.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

import numpy as np

from sge_jax.evaluate import metrics
from sge_jax.evaluate.distances import CACHE_ROWS
from sge_jax.data import joints

Bones = Sequence[tuple[int, int]]
JointNames = Sequence[str]

# Denominators of the descriptor ratios are clamped here (metres) so a collapsed
# limb (a tracking failure) gives a large finite ratio rather than inf/NaN.
_MIN_RATIO_DENOMINATOR = 1e-6

# A feature whose gallery standard deviation is below this is left unscaled
# (scale 1): it is constant on the gallery and dividing would amplify noise.
_MIN_FEATURE_STD = 1e-12


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


def _joint_labels(joint_names: Optional[JointNames], num_joints: int
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
  labels = _joint_labels(joint_names, sequences.shape[2])
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


# ----------------------------------------------------------------------------
# Registry: one uniform signature per baseline.

FeatureExtractor = Callable[
    [np.ndarray, Optional[Bones], Optional[JointNames]], FeatureSet]


def _raw_coordinates_set(sequences, bones, joint_names) -> FeatureSet:
  del bones  # Unused: every joint is used as is.
  features = raw_coordinates_features(sequences)
  num_frames, num_joints = np.shape(sequences)[1:3]
  names = _joint_labels(joint_names, num_joints)
  return FeatureSet(
      features=features,
      names=tuple(f'frame_{t}_{names[j]}_{axis}_m' for t in range(num_frames)
                  for j in range(num_joints) for axis in 'xyz'),
      description=('raw coordinates: the f x J x 3 sequence (m) minus its '
                   'centroid over all frames and joints'))


def _bone_length_set(sequences, bones, joint_names) -> FeatureSet:
  features = bone_length_features(sequences, bones)
  num_joints = np.shape(sequences)[2]
  names = _joint_labels(joint_names, num_joints)
  return FeatureSet(
      features=features,
      names=tuple(f'bone_{names[p]}_{names[c]}_length_m' for p, c in bones),
      description=f'bone lengths: mean over frames of each of {len(bones)} '
                  'bones (m)')


BASELINES: dict[str, FeatureExtractor] = {
    'raw_coordinates': _raw_coordinates_set,
    'bone_length': _bone_length_set,
    'gait_descriptor': gait_descriptor_features,
}


# ----------------------------------------------------------------------------
# Standardisation and k-nearest-neighbour class scores.


@dataclasses.dataclass(frozen=True)
class Standardizer:
  """Per-feature z-scoring with statistics of one (training/gallery) set.

  Attributes:
    mean: [F] feature means of the fitting set.
    scale: [F] population standard deviations of the fitting set; 1 where a
      feature is constant there.
  """
  mean: np.ndarray
  scale: np.ndarray

  @classmethod
  def fit(cls, features) -> 'Standardizer':
    """Statistics of ``features`` [N, F]; nothing else is looked at."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] == 0:
      raise ValueError(f'features must be non-empty [N, F], got {features.shape}')
    std = features.std(axis=0)
    return cls(mean=features.mean(axis=0),
               scale=np.where(std < _MIN_FEATURE_STD, 1.0, std))

  def transform(self, features) -> np.ndarray:
    """(features - mean) / scale, [N, F] -> [N, F] float64."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[1] != self.mean.size:
      raise ValueError(
          f'features must be [N, F={self.mean.size}], got {features.shape}')
    return (features - self.mean) / self.scale


def knn_class_scores(gallery_features, gallery_labels, test_features, *,
                     classes=None, k: int = 1, metric: str = 'euclidean',
                     progress=None) -> np.ndarray:
  """Class scores of k-nearest-neighbour classification, for any features.

  Args:
    gallery_features: [G, F] features of the labelled (training/gallery) side.
    gallery_labels: [G] integer person ids.
    test_features: [N, F] features to classify.
    classes: [C] distinct labels, the column order of the result; default
      ``np.unique(gallery_labels)``. Each must have a gallery sample.
    k: neighbours that vote, 1 <= k <= G.
    metric: ``'euclidean'`` or ``'cosine'`` (``metrics.pairwise_distances``).
    progress: optional; its ``advance(rows)`` is called after every block of
      test rows (``sge_jax.progress.Progress``).

  Returns:
    [N, C] float64 scores, higher = more likely (module docstring: -d_c for
    k = 1, votes_c + 1 / (1 + d_c) for k > 1). Among equidistant k-th
    neighbours, the one of the class listed first in ``classes`` votes.
  """
  gallery_labels = np.asarray(gallery_labels)
  classes = np.unique(gallery_labels) if classes is None else np.asarray(classes)
  gallery_columns = metrics.class_indices(gallery_labels, classes)
  num_classes = classes.size
  num_gallery = gallery_columns.size
  if np.shape(gallery_features)[0] != num_gallery:
    raise ValueError(
        f'gallery_features has {np.shape(gallery_features)[0]} rows for '
        f'{num_gallery} gallery labels')
  per_class = np.bincount(gallery_columns, minlength=num_classes)
  if np.any(per_class == 0):
    raise ValueError(
        f'classes without gallery samples: {classes[per_class == 0].tolist()}')
  if not 1 <= k <= num_gallery:
    raise ValueError(f'k must be in 1..G={num_gallery}, got {k}')

  # Gallery grouped by class, so a per-class minimum is one reduceat.
  order = np.argsort(gallery_columns, kind='stable')
  sorted_gallery = np.asarray(gallery_features)[order]
  sorted_columns = gallery_columns[order]
  class_starts = np.r_[0, np.cumsum(per_class)[:-1]]

  scores = np.empty((np.shape(test_features)[0], num_classes))
  for start, distances in metrics.iter_pairwise_distances(
      test_features, sorted_gallery, metric, chunk_rows=CACHE_ROWS):
    nearest_per_class = np.minimum.reduceat(distances, class_starts, axis=1)
    if k == 1:
      block_scores = -nearest_per_class
    else:
      neighbours = np.argsort(distances, axis=1, kind='stable')[:, :k]
      rows = np.arange(distances.shape[0])[:, None]
      votes = np.bincount(
          (rows * num_classes + sorted_columns[neighbours]).ravel(),
          minlength=distances.shape[0] * num_classes
      ).reshape(distances.shape[0], num_classes)
      block_scores = votes + 1.0 / (1.0 + nearest_per_class)
    scores[start:start + distances.shape[0]] = block_scores
    if progress is not None:
      progress.advance(distances.shape[0])
  return scores


@dataclasses.dataclass(frozen=True)
class BaselineResult:
  """Scores of one baseline on one test split.

  Attributes:
    name: the ``BASELINES`` key.
    scores: [N_test, C] class scores, higher = more likely; column c is
      ``classes[c]``. Map test labels to columns with
      ``metrics.class_indices(test_labels, classes)`` before calling
      ``metrics.rank_k`` / ``cmc`` / ``nauc``.
    predictions: [N_test] predicted labels (values from ``classes``), the
      argmax of ``scores``.
    classes: [C] the label of each score column.
    feature_names: names of the F feature columns.
    description: what was computed, how it was standardised and classified.
  """
  name: str
  scores: np.ndarray
  predictions: np.ndarray
  classes: np.ndarray
  feature_names: tuple[str, ...]
  description: str


def run_baseline(name: str, gallery_sequences, gallery_labels, test_sequences,
                 *, bones: Optional[Bones] = None,
                 joint_names: Optional[JointNames] = None, classes=None,
                 k: int = 1, metric: str = 'euclidean',
                 standardize: bool = True, progress=None) -> BaselineResult:
  """Runs one hand-crafted baseline: features, standardisation, kNN scores.

  Args:
    name: a ``BASELINES`` key.
    gallery_sequences: [G, f, J, 3] labelled sequences (the training split for
      the RN protocols, the gallery for probe/gallery protocols), metres.
    gallery_labels: [G] integer person ids.
    test_sequences: [N, f, J, 3] sequences to classify, metres.
    bones: (parent, child) joint-index pairs (needed by ``bone_length`` and by
      the generic ``gait_descriptor``).
    joint_names: J joint names or None (selects the semantic descriptor).
    classes: [C] score-matrix column labels, e.g. to match the recognition
      network's columns; default ``np.unique(gallery_labels)``.
    k: nearest neighbours that vote; default 1 (plain nearest neighbour) for
      every baseline. k > 1 gives the KNN vote of the D-13 comparison.
    metric: ``'euclidean'`` or ``'cosine'``.
    standardize: z-score every feature with the mean and std of the *gallery*
      features only (the test features never influence the transform).
    progress: optional, advanced per block of test sequences scored
      (``knn_class_scores``).

  Returns:
    BaselineResult.
  """
  if name not in BASELINES:
    raise ValueError(
        f'unknown baseline {name!r}; choose one of {", ".join(BASELINES)}')
  extract = BASELINES[name]
  gallery_set = extract(gallery_sequences, bones, joint_names)
  test_set = extract(test_sequences, bones, joint_names)
  gallery_features, test_features = gallery_set.features, test_set.features
  if standardize:
    standardizer = Standardizer.fit(gallery_features)
    gallery_features = standardizer.transform(gallery_features)
    test_features = standardizer.transform(test_features)
  gallery_labels = np.asarray(gallery_labels)
  classes = np.unique(gallery_labels) if classes is None else np.asarray(classes)
  scores = knn_class_scores(gallery_features, gallery_labels, test_features,
                            classes=classes, k=k, metric=metric,
                            progress=progress)
  neighbours = 'nearest neighbour' if k == 1 else f'{k}-NN vote'
  scaling = ('z-scored with gallery statistics' if standardize
             else 'not standardised')
  return BaselineResult(
      name=name, scores=scores, predictions=classes[np.argmax(scores, axis=1)],
      classes=classes, feature_names=gallery_set.names,
      description=(f'{name}: {gallery_set.description}; {scaling}; '
                   f'{neighbours}, {metric} distance'))
