"""Joint layouts: names in storage order and the bones between them."""

from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class JointLayout:
  """A skeleton layout.

  Attributes:
    name: short name of the layout.
    joint_names: J names, in the order joints are stored.
    bones: (parent, child) index pairs into ``joint_names``.
  """
  name: str
  joint_names: tuple[str, ...]
  bones: tuple[tuple[int, int], ...]

  @property
  def num_joints(self) -> int:
    return len(self.joint_names)


# Kinect v1 SDK order (BIWI, IAS-Lab, KGBD after preprocessing; the synthetic demo).
KINECT_V1 = JointLayout(
    name='kinect_v1',
    joint_names=(
        'HipCenter', 'Spine', 'ShoulderCenter', 'Head',
        'ShoulderLeft', 'ElbowLeft', 'WristLeft', 'HandLeft',
        'ShoulderRight', 'ElbowRight', 'WristRight', 'HandRight',
        'HipLeft', 'KneeLeft', 'AnkleLeft', 'FootLeft',
        'HipRight', 'KneeRight', 'AnkleRight', 'FootRight'),
    bones=((0, 1), (1, 2), (2, 3),
           (2, 4), (4, 5), (5, 6), (6, 7),
           (2, 8), (8, 9), (9, 10), (10, 11),
           (0, 12), (12, 13), (13, 14), (14, 15),
           (0, 16), (16, 17), (17, 18), (18, 19)),
)

# Kinect v2 SDK JointType order (KS20, the GIST recordings); bones as the SDK's
# BodyBasics sample draws them (thumbs hang off the wrists, hand tips off the hands).
KINECT_V2 = JointLayout(
    name='kinect_v2',
    joint_names=(
        'SpineBase', 'SpineMid', 'Neck', 'Head',
        'ShoulderLeft', 'ElbowLeft', 'WristLeft', 'HandLeft',
        'ShoulderRight', 'ElbowRight', 'WristRight', 'HandRight',
        'HipLeft', 'KneeLeft', 'AnkleLeft', 'FootLeft',
        'HipRight', 'KneeRight', 'AnkleRight', 'FootRight',
        'SpineShoulder', 'HandTipLeft', 'ThumbLeft', 'HandTipRight',
        'ThumbRight'),
    bones=((0, 1), (1, 20), (20, 2), (2, 3),
           (20, 4), (4, 5), (5, 6), (6, 7), (7, 21), (6, 22),
           (20, 8), (8, 9), (9, 10), (10, 11), (11, 23), (10, 24),
           (0, 12), (12, 13), (13, 14), (14, 15),
           (0, 16), (16, 17), (17, 18), (18, 19)),
)

# CASIA-B poses estimated from video: 14 body joints in the OpenPose/COCO order
# without eyes and ears (the layout PoseGait-style pipelines use). The authors'
# arrays do not name their joints, so this order is an assumption; only the
# bone-length baselines depend on it.
CASIA_B_14 = JointLayout(
    name='casia_b_14',
    joint_names=(
        'Nose', 'Neck', 'RShoulder', 'RElbow', 'RWrist', 'LShoulder', 'LElbow',
        'LWrist', 'RHip', 'RKnee', 'RAnkle', 'LHip', 'LKnee', 'LAnkle'),
    bones=((1, 0), (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7),
           (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13)),
)

_BY_NUM_JOINTS = {layout.num_joints: layout
                  for layout in (KINECT_V1, KINECT_V2, CASIA_B_14)}


def layout_for_num_joints(num_joints: int) -> Optional[JointLayout]:
  """The standard layout with this many joints, or None for an unknown J."""
  return _BY_NUM_JOINTS.get(num_joints)
