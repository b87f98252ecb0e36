"""Procedural walking skeletons: a small, deterministic re-ID set with no files.

Skeletons use the Kinect v1 20-joint layout (``joints.KINECT_V1``) in a Kinect-like
camera frame: metres, x to the side, y up, z away from the camera, walkers passing
about 2-4 m in front of the sensor at 30 frames per second.

Generative model
----------------
Person (drawn once per person id, independent of how many people are made):

* Body: overall height scale ~ N(1, 0.05); each segment length (spine, chest, neck,
  upper arm, forearm, hand, thigh, shin, foot, shoulder and hip widths) is a
  population mean times the height scale times its own N(1, 0.05) factor, the same
  on both sides.
* Gait style: gait-cycle frequency (0.8-1.0 cycles/s, i.e. 1.6-2.0 steps/s), stride
  length (proportional to leg length, then jittered), hip swing amplitude and
  offset, left/right swing asymmetry, knee flexion in swing and in stance and the
  timing of the swing peak, arm swing amplitude, forward arm bias and phase lag
  behind the opposite leg, elbow bend and its swing, arm abduction, lateral sway,
  vertical bob, pelvis and shoulder counter-rotation, torso lean, head tilt,
  toe-out and step width.

Recording (drawn per person and recording index):

* Speed: a speed factor ~ N(1, 0.08) and a linear speed change of up to ±15 % over
  the recording; cadence and stride length both scale with its square root.
* Path: a heading across the camera's view (±20° from the x axis, always the
  same way along the corridor) that drifts by up to ±12° during the recording,
  centred 2.6-3.4 m from the camera; gait phase at the first frame is random.
* Sensor: camera height 0.8-1.1 m and pitch ±3°, a global scale (depth
  calibration) ~ N(1, 0.02), a fixed per-joint offset ~ N(0, 1.4 cm) per axis
  (skeleton fitting differs between recordings, so bone lengths do too), per-frame
  noise (0.6 cm on the trunk, 1.4 cm on hands and feet), and tracking glitches: about
  one joint jump (1-4 frames, ~12 cm) per 100 frames and, in 15 % of recordings,
  a few frames with the left and right legs swapped.

So bone lengths identify people only roughly (per-recording fitting offsets and
scale blur them) while cadence, swing amplitudes and phase relations add identity
information that only the motion carries.

Recordings are cut with ``cut_windows`` (docs/method.md §2.1) and stored person by person,
recording by recording, in time order. Train recordings are recording indices
0..R-1 of each person and test recordings R..R+R_test-1: separate walks of the same
people. ``SkeletonSplit.recordings`` holds person * (R + R_test) + recording index.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sge_jax.data import memory
from sge_jax.data import joints
from sge_jax.data.dataset import SkeletonDataset, SkeletonSplit
from sge_jax.data.windows import EDGE_FRAMES_DROPPED, cut_windows
from sge_jax.errors import ConfigError

FRAMES_PER_SECOND = 30.0
# ``SkeletonDataset.source`` of the synthetic walkers ('synthetic(seed=0)'):
# encodings made from them say so (encodings.npz ``data_source``).
SOURCE_PREFIX = 'synthetic('

_LAYOUT = joints.KINECT_V1
_J = {name: index for index, name in enumerate(_LAYOUT.joint_names)}

# Population means of segment lengths in metres (Kinect v1 joint centres of a
# ~1.75 m adult).
_MEAN_BODY = dict(
    spine=0.09,             # HipCenter -> Spine
    chest=0.32,             # Spine -> ShoulderCenter
    neck=0.19,              # ShoulderCenter -> Head
    shoulder_half_width=0.17,
    shoulder_drop=0.04,
    upper_arm=0.28,
    forearm=0.24,
    hand=0.08,
    hip_half_width=0.08,
    hip_drop=0.06,
    thigh=0.42,
    shin=0.41,
    ankle_height=0.07,
    foot=0.13,
)
_WIDTH_SEGMENTS = ('shoulder_half_width', 'hip_half_width')

# Noise (metres).
_FITTING_OFFSET_STD = 0.014
_SCALE_STD = 0.02
_TRUNK_NOISE_STD = 0.006
_EXTREMITY_NOISE_STD = 0.014
_EXTREMITIES = ('WristLeft', 'HandLeft', 'WristRight', 'HandRight',
                'AnkleLeft', 'FootLeft', 'AnkleRight', 'FootRight')
_GLITCH_JOINTS = _EXTREMITIES + ('ElbowLeft', 'ElbowRight', 'KneeLeft',
                                 'KneeRight')
_GLITCHES_PER_FRAME = 0.01
_GLITCH_STD = 0.12
_LEG_SWAP_PROBABILITY = 0.15
_LEFT_LEG = ('HipLeft', 'KneeLeft', 'AnkleLeft', 'FootLeft')
_RIGHT_LEG = ('HipRight', 'KneeRight', 'AnkleRight', 'FootRight')


@dataclasses.dataclass(frozen=True)
class _Person:
  """Body (segment lengths, metres) and gait style (angles in radians)."""
  body: dict
  cycle_hz: float
  stride_m: float
  hip_amplitude: float
  hip_offset: float
  asymmetry: float
  knee_swing: float
  knee_stance: float
  knee_peak_phase: float
  arm_amplitude: float
  arm_offset: float
  arm_lag: float
  elbow_base: float
  elbow_swing: float
  arm_abduction: float
  sway_m: float
  bob_m: float
  pelvis_yaw: float
  shoulder_yaw: float
  torso_lean: float
  head_tilt: float
  toe_out: float
  step_half_width_m: float


def _draw_person(rng: np.random.Generator) -> _Person:
  height = np.clip(rng.normal(1.0, 0.05), 0.86, 1.14)
  width = np.clip(rng.normal(1.0, 0.06), 0.85, 1.15)
  body = {}
  for segment, mean in _MEAN_BODY.items():
    factor = np.clip(rng.normal(1.0, 0.05), 0.85, 1.15)
    body[segment] = mean * factor * (width if segment in _WIDTH_SEGMENTS
                                     else height)
  leg = body['thigh'] + body['shin']
  hip_amplitude = rng.uniform(0.30, 0.46)
  return _Person(
      body=body,
      cycle_hz=rng.uniform(0.80, 1.00),
      stride_m=3.6 * leg * np.sin(hip_amplitude) * rng.uniform(0.9, 1.1),
      hip_amplitude=hip_amplitude,
      hip_offset=rng.uniform(0.0, 0.12),
      asymmetry=rng.normal(0.0, 0.06),
      knee_swing=rng.uniform(0.85, 1.15),
      knee_stance=rng.uniform(0.10, 0.35),
      knee_peak_phase=rng.uniform(-0.8, -0.2),
      arm_amplitude=rng.uniform(0.12, 0.50),
      arm_offset=rng.uniform(-0.05, 0.15),
      arm_lag=rng.uniform(-0.5, 0.5),
      elbow_base=rng.uniform(0.10, 0.45),
      elbow_swing=rng.uniform(0.05, 0.45),
      arm_abduction=rng.uniform(0.04, 0.22),
      sway_m=rng.uniform(0.008, 0.04),
      bob_m=rng.uniform(0.01, 0.03),
      pelvis_yaw=rng.uniform(0.03, 0.15),
      shoulder_yaw=rng.uniform(0.03, 0.15),
      torso_lean=rng.uniform(-0.02, 0.15),
      head_tilt=rng.uniform(-0.05, 0.20),
      toe_out=rng.uniform(0.0, 0.25),
      step_half_width_m=rng.uniform(0.03, 0.10),
  )


def _bump(phase: np.ndarray, power: float) -> np.ndarray:
  """A smooth periodic pulse in [0, 1] peaking at phase 0."""
  return ((1.0 + np.cos(phase)) / 2.0) ** power


def _yaw(offset: np.ndarray, angle: np.ndarray) -> np.ndarray:
  """Rotates local (forward, up, left) offsets [..., 3] about the up axis."""
  cos, sin = np.cos(angle), np.sin(angle)
  forward = offset[..., 0] * cos - offset[..., 2] * sin
  left = offset[..., 0] * sin + offset[..., 2] * cos
  return np.stack([forward, offset[..., 1], left], axis=-1)


def _direction(angle: np.ndarray, abduction: float = 0.0,
               side: float = 0.0) -> np.ndarray:
  """Unit limb direction [T, 3] in the sagittal plane, tilted sideways.

  ``angle`` is measured from straight down, positive forward; ``side`` is +1 for
  the left limb (tilt to the left), -1 for the right.
  """
  cos_abduction = np.cos(abduction)
  return np.stack([np.sin(angle) * cos_abduction,
                   -np.cos(angle) * cos_abduction,
                   np.full_like(angle, side * np.sin(abduction))], axis=-1)


def _local_pose(person: _Person, phase: np.ndarray) -> np.ndarray:
  """Joint positions [T, 20, 3] in the walker's frame (forward, up, left), metres.

  The origin is on the floor under the pelvis; ``phase`` [T] is the gait phase in
  radians (left hip flexion peaks at phase pi/2, the right leg is half a cycle
  later).
  """
  b = person.body
  num_frames = phase.shape[0]
  pose = np.zeros((num_frames, _LAYOUT.num_joints, 3))
  leg = b['thigh'] + b['shin']
  hip_height = 0.97 * leg + b['ankle_height'] + b['hip_drop']

  root = np.stack([np.zeros(num_frames),
                   hip_height + person.bob_m * np.cos(2 * phase),
                   person.sway_m * np.sin(phase)], axis=-1)
  pose[:, _J['HipCenter']] = root

  lean = person.torso_lean + 0.02 * np.cos(2 * phase)
  trunk_axis = np.stack([np.sin(lean), np.cos(lean), np.zeros(num_frames)], -1)
  pose[:, _J['Spine']] = root + b['spine'] * trunk_axis
  shoulder_center = pose[:, _J['Spine']] + b['chest'] * trunk_axis
  pose[:, _J['ShoulderCenter']] = shoulder_center
  head_angle = lean + person.head_tilt
  pose[:, _J['Head']] = shoulder_center + b['neck'] * np.stack(
      [np.sin(head_angle), np.cos(head_angle), np.zeros(num_frames)], -1)

  pelvis_yaw = person.pelvis_yaw * np.sin(phase)
  shoulder_yaw = -person.shoulder_yaw * np.sin(phase)
  for side, sign, leg_phase in (('Left', 1.0, 0.0), ('Right', -1.0, np.pi)):
    side_phase = phase + leg_phase
    hip_offset = np.array([0.0, -b['hip_drop'], sign * b['hip_half_width']])
    hip = root + _yaw(np.broadcast_to(hip_offset, (num_frames, 3)), pelvis_yaw)
    hip_swing = person.hip_amplitude * (1.0 + sign * person.asymmetry)
    thigh_angle = person.hip_offset + hip_swing * np.sin(side_phase)
    knee_flexion = (
        person.knee_swing * _bump(side_phase - person.knee_peak_phase, 3.0)
        + person.knee_stance * _bump(side_phase - (np.pi / 2 + 0.6), 2.0)
        + 0.05)
    shin_angle = thigh_angle - knee_flexion
    # Legs converge from hip width to step width.
    inward = (sign * person.step_half_width_m - sign * b['hip_half_width'])
    knee = hip + b['thigh'] * _direction(thigh_angle)
    knee[:, 2] += 0.5 * inward
    ankle = knee + b['shin'] * _direction(shin_angle)
    ankle[:, 2] += 0.5 * inward
    foot_pitch = -0.6 * shin_angle + 0.1
    toe = np.stack([np.cos(foot_pitch) * np.cos(person.toe_out),
                    -np.sin(foot_pitch),
                    sign * np.cos(foot_pitch) * np.sin(person.toe_out)], -1)
    pose[:, _J[f'Hip{side}']] = hip
    pose[:, _J[f'Knee{side}']] = knee
    pose[:, _J[f'Ankle{side}']] = ankle
    pose[:, _J[f'Foot{side}']] = ankle + b['foot'] * toe

    # Each arm swings against the leg of its own side.
    arm_phase = side_phase + np.pi - person.arm_lag
    shoulder_offset = np.array(
        [0.0, -b['shoulder_drop'], sign * b['shoulder_half_width']])
    shoulder = shoulder_center + _yaw(
        np.broadcast_to(shoulder_offset, (num_frames, 3)), shoulder_yaw)
    upper_angle = person.arm_offset + person.arm_amplitude * np.sin(arm_phase)
    elbow_flexion = person.elbow_base + person.elbow_swing * (
        1.0 + np.sin(arm_phase)) / 2.0
    elbow = shoulder + b['upper_arm'] * _direction(
        upper_angle, person.arm_abduction, sign)
    wrist = elbow + b['forearm'] * _direction(
        upper_angle + elbow_flexion, 0.5 * person.arm_abduction, sign)
    hand = wrist + b['hand'] * _direction(
        upper_angle + 1.2 * elbow_flexion, 0.5 * person.arm_abduction, sign)
    pose[:, _J[f'Shoulder{side}']] = shoulder
    pose[:, _J[f'Elbow{side}']] = elbow
    pose[:, _J[f'Wrist{side}']] = wrist
    pose[:, _J[f'Hand{side}']] = hand

  return pose


def _render_recording(person: _Person, rng: np.random.Generator,
                      num_frames: int) -> np.ndarray:
  """One recording [T, 20, 3] in camera coordinates (metres), with sensor effects."""
  time_fraction = np.arange(num_frames) / max(num_frames - 1, 1) - 0.5
  speed = rng.normal(1.0, 0.08) * (1.0 + rng.uniform(-0.15, 0.15) * time_fraction)
  speed = np.clip(speed, 0.6, 1.5)
  cycle_hz = person.cycle_hz * np.sqrt(speed)
  phase = rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.cumsum(
      cycle_hz) / FRAMES_PER_SECOND
  local = _local_pose(person, phase)

  # Everyone walks the same way along a corridor, as in a fixed capture set-up;
  # mixing both directions mirrors the body in camera coordinates, which swamps
  # identity for any model of raw coordinates.
  heading = (rng.uniform(-0.35, 0.35)
             + rng.uniform(-0.2, 0.2) * time_fraction)
  forward = np.stack([np.cos(heading), np.zeros(num_frames), np.sin(heading)], -1)
  up = np.array([0.0, 1.0, 0.0])
  left = np.cross(up, forward)

  velocity = forward * (person.stride_m * np.sqrt(speed) * cycle_hz)[:, None]
  path = np.cumsum(velocity, axis=0) / FRAMES_PER_SECOND
  path -= path[num_frames // 2]
  camera_height = rng.uniform(0.8, 1.1)
  path += np.array([rng.uniform(-0.3, 0.3), -camera_height, rng.uniform(2.6, 3.4)])

  world = (path[:, None, :]
           + local[..., 0:1] * forward[:, None, :]
           + local[..., 1:2] * up
           + local[..., 2:3] * left[:, None, :])

  pitch = rng.uniform(-0.05, 0.05)
  cos, sin = np.cos(pitch), np.sin(pitch)
  y, z = world[..., 1].copy(), world[..., 2].copy()
  world[..., 1] = cos * y - sin * z
  world[..., 2] = sin * y + cos * z
  world *= rng.normal(1.0, _SCALE_STD)

  world += rng.normal(0.0, _FITTING_OFFSET_STD, size=(1, _LAYOUT.num_joints, 3))
  noise_std = np.full((_LAYOUT.num_joints, 1), _TRUNK_NOISE_STD)
  noise_std[[_J[n] for n in _EXTREMITIES]] = _EXTREMITY_NOISE_STD
  world += rng.normal(size=world.shape) * noise_std
  _add_glitches(world, rng)
  return world.astype(np.float32)


def _add_glitches(world: np.ndarray, rng: np.random.Generator) -> None:
  """Kinect tracking failures, in place: joint jumps and left/right leg swaps."""
  num_frames = world.shape[0]
  for _ in range(rng.poisson(_GLITCHES_PER_FRAME * num_frames)):
    joint = _J[_GLITCH_JOINTS[rng.integers(len(_GLITCH_JOINTS))]]
    start = rng.integers(num_frames)
    world[start:start + rng.integers(1, 5), joint] += rng.normal(
        0.0, _GLITCH_STD, size=3)
  if rng.random() < _LEG_SWAP_PROBABILITY:
    start = rng.integers(num_frames)
    frames = slice(start, start + rng.integers(2, 7))
    left = [_J[n] for n in _LEFT_LEG]
    right = [_J[n] for n in _RIGHT_LEG]
    world[frames, left + right] = world[frames, right + left]


def _validate(length, num_people, recordings_per_person,
              test_recordings_per_person, frames_per_recording) -> None:
  for field, value in (('num_people', num_people),
                       ('recordings_per_person', recordings_per_person),
                       ('test_recordings_per_person', test_recordings_per_person)):
    if value < 1:
      raise ConfigError(f'config.data.synthetic.{field} must be >= 1, got {value}')
  if length < 1:
    raise ConfigError(f'config.data.length must be >= 1, got {length}')
  shortest = 2 * EDGE_FRAMES_DROPPED + length
  if frames_per_recording < shortest:
    raise ConfigError(
        f'config.data.synthetic.frames_per_recording={frames_per_recording} is too '
        f'short for f={length}: {EDGE_FRAMES_DROPPED} frames are dropped at each '
        f'end, so a recording needs at least {shortest} frames.')


def dataset_bytes(length: int, num_people: int, recordings_per_person: int,
                  test_recordings_per_person: int,
                  frames_per_recording: int) -> int:
  """Bytes the set needs while it is made: its windows [N, f, 20, 3] float32
  twice (the per-recording windows, then their concatenation)."""
  windows = (num_people * (recordings_per_person + test_recordings_per_person)
             * ((frames_per_recording - 2 * EDGE_FRAMES_DROPPED) // length))
  return 2 * memory.dataset_bytes(windows, length, _LAYOUT.num_joints)


def make_synthetic_dataset(seed: int,
                           length: int,
                           num_people: int = 12,
                           recordings_per_person: int = 6,
                           test_recordings_per_person: int = 2,
                           frames_per_recording: int = 140) -> SkeletonDataset:
  """Builds the procedural walking set (see the module docstring).

  Args:
    seed: any integer; the same arguments always give the same data, and a
      person's body and gait depend only on (seed, person index).
    length: frames per sequence, f.
    num_people: number of people P (labels 0..P-1).
    recordings_per_person: training recordings per person.
    test_recordings_per_person: test recordings per person (separate walks).
    frames_per_recording: frames T of each recording (30 fps), before cutting.

  Returns:
    SkeletonDataset ``demo`` with splits ``train`` and ``test``: sequences
    [N, f, 20, 3] float32 (metres, camera frame, y up), labels [N] int64,
    recordings [N] int64; Kinect v1 joint names and bones.

  Raises:
    ConfigError: non-positive sizes or recordings too short for one window.
    DataError: the set would not fit in memory (``sge_jax.data.memory``).
  """
  _validate(length, num_people, recordings_per_person,
            test_recordings_per_person, frames_per_recording)
  memory.require_fits(
      dataset_bytes(length, num_people, recordings_per_person,
                    test_recordings_per_person, frames_per_recording),
      f'The synthetic set ({num_people} people x '
      f'{recordings_per_person + test_recordings_per_person} recordings x '
      f'{frames_per_recording} frames)',
      'Use a smaller --config.data.synthetic.num_people (or '
      'recordings_per_person, test_recordings_per_person, '
      'frames_per_recording).')
  seed_key = int(seed) & 0xFFFFFFFFFFFFFFFF
  recordings_total = recordings_per_person + test_recordings_per_person
  parts = {'train': ([], [], []), 'test': ([], [], [])}
  for person_index in range(num_people):
    person = _draw_person(np.random.default_rng([seed_key, 0, person_index]))
    for recording_index in range(recordings_total):
      rng = np.random.default_rng([seed_key, 1, person_index, recording_index])
      windows = cut_windows(
          _render_recording(person, rng, frames_per_recording), length)
      split = 'train' if recording_index < recordings_per_person else 'test'
      sequences, labels, recordings = parts[split]
      sequences.append(windows)
      labels.append(np.full(windows.shape[0], person_index, dtype=np.int64))
      recordings.append(np.full(
          windows.shape[0], person_index * recordings_total + recording_index,
          dtype=np.int64))

  splits = {
      split: SkeletonSplit(sequences=np.concatenate(sequences),
                           labels=np.concatenate(labels),
                           recordings=np.concatenate(recordings))
      for split, (sequences, labels, recordings) in parts.items()}
  return SkeletonDataset(
      name='demo',
      length=length,
      splits=splits,
      joint_names=_LAYOUT.joint_names,
      bones=_LAYOUT.bones,
      source=f'{SOURCE_PREFIX}seed={seed})')
