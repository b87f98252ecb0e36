"""Cutting recordings into fixed-length sequences (docs/method.md §2.1)."""

from __future__ import annotations

import numpy as np

# The first and last frames of a Kinect recording are dominated by tracking noise
# (the body enters/leaves the field of view); the authors drop 10 at each end.
EDGE_FRAMES_DROPPED = 10


def cut_windows(recording: np.ndarray, length: int,
                edge_frames: int = EDGE_FRAMES_DROPPED) -> np.ndarray:
  """Cuts one recording into non-overlapping windows, in time order.

  Args:
    recording: [T, J, 3] joint positions of one recording, frames in time order.
    length: frames per window, f.
    edge_frames: frames dropped at each end before cutting.

  Returns:
    [n, f, J, 3] with n = (T - 2 * edge_frames) // f (possibly 0); frames left
    over at the end are dropped.
  """
  if length <= 0:
    raise ValueError(f'window length must be positive, got {length}')
  usable = recording[edge_frames:recording.shape[0] - edge_frames]
  count = max(usable.shape[0], 0) // length
  return usable[:count * length].reshape(
      (count, length) + recording.shape[1:])
