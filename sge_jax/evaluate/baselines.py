"""Hand-crafted skeleton baselines, scored exactly like the learned model.

Each baseline maps f-frame sequences [N, f, J, 3] (metres) to one feature vector
per sequence and classifies test sequences by k-nearest neighbours among the
training/gallery sequences. ``run_baseline`` returns a class-score matrix
[N_test, C] so that rank-k, CMC, nAUC and the confusion matrix come from
``sge_jax.evaluate.metrics`` exactly as for the recognition network's scores. On some data
these baselines are strong (bone lengths alone identify the 10 GIST walkers almost
perfectly), so every report should show them next to CAGEs.

Baselines (``BASELINES`` keys; the features are computed in
``skeleton_features``):

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
from typing import Callable, Optional

import numpy as np

from sge_jax.evaluate import metrics
from sge_jax.evaluate.distances import CACHE_ROWS
from sge_jax.evaluate.skeleton_features import (Bones, FeatureSet, JointNames,
                                                bone_length_features,
                                                gait_descriptor_features,
                                                joint_labels,
                                                raw_coordinates_features)

# A feature whose gallery standard deviation is below this is left unscaled
# (scale 1): it is constant on the gallery and dividing would amplify noise.
_MIN_FEATURE_STD = 1e-12


# ----------------------------------------------------------------------------
# Registry: one uniform signature per baseline.

FeatureExtractor = Callable[
    [np.ndarray, Optional[Bones], Optional[JointNames]], FeatureSet]


def _raw_coordinates_set(sequences, bones, joint_names) -> FeatureSet:
  del bones  # Unused: every joint is used as is.
  features = raw_coordinates_features(sequences)
  num_frames, num_joints = np.shape(sequences)[1:3]
  names = joint_labels(joint_names, num_joints)
  return FeatureSet(
      features=features,
      names=tuple(f'frame_{t}_{names[j]}_{axis}_m' for t in range(num_frames)
                  for j in range(num_joints) for axis in 'xyz'),
      description=('raw coordinates: the f x J x 3 sequence (m) minus its '
                   'centroid over all frames and joints'))


def _bone_length_set(sequences, bones, joint_names) -> FeatureSet:
  features = bone_length_features(sequences, bones)
  num_joints = np.shape(sequences)[2]
  names = joint_labels(joint_names, num_joints)
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
