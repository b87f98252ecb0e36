"""The memory a run needs, estimated before it is allocated, and the check that
refuses a run that cannot fit (instead of its being killed minutes later).

Estimates count the large arrays only, and only those that are certainly
allocated together, so they are lower bounds: a refusal means the run could
not fit, and a run that passes may still need somewhat more.

* Data: the arrays a loader reads, from the files' headers or, for the
  synthetic set, from the config; plus the float32 [N, f, J, 3] copy it makes.
* Training: per device, the stacked models' parameters four times (weights,
  gradients, Adam's two moments) plus the activations of one batch share.

The memory available is the smaller of what the machine has available now
(``MemAvailable`` of /proc/meminfo, else its physical memory) and the
cgroup's limit (container) less what this process already uses; for an
accelerator, its memory (JAX's ``bytes_limit``) for the training part.
"""

from __future__ import annotations

import os
import pathlib
from typing import Optional

from sge_jax.errors import DataError

_FLOAT32 = 4
_GIB = 2**30


def describe(num_bytes: float) -> str:
  """'3.2 GiB', '512 MiB', '12 KiB' (or TiB)."""
  for unit, size in (('TiB', 2**40), ('GiB', _GIB), ('MiB', 2**20)):
    if num_bytes >= size:
      return f'{num_bytes / size:.3g} {unit}'
  return f'{num_bytes / 2**10:.3g} KiB'


def available_bytes() -> tuple[int, str]:
  """(bytes this process can still allocate, what that number is); where the
  system says nothing, a number so large that no estimate exceeds it."""
  machine = _meminfo('MemAvailable')
  found = [(machine, 'available on this machine')] if machine else [
      (_physical_bytes(), 'the physical memory of this machine')]
  limit = _cgroup_limit()
  if limit is not None:
    found.append((max(limit - _own_resident_bytes(), 0),
                  f'left under the cgroup memory limit of {describe(limit)}'))
  return min(found)


def require_fits(needed: int, what: str, way_out: str,
                 available: Optional[tuple[int, str]] = None) -> None:
  """Raises DataError (one line: the estimate, the memory, the way out) when
  ``needed`` bytes exceed ``available`` (default: ``available_bytes()``)."""
  room, where = available or available_bytes()
  if needed > room:
    raise DataError(f'{what} needs at least {describe(needed)} of memory (an '
                    f'estimate), more than the {describe(room)} {where}. '
                    f'{way_out}')


def dataset_bytes(num_sequences: int, length: int, num_joints: int) -> int:
  """Bytes of sequences [N, f, J, 3] float32."""
  return num_sequences * length * num_joints * 3 * _FLOAT32


def training_bytes(num_models: int, hidden: int, num_layers: int,
                   num_joints: int, length: int, batch_per_device: int) -> int:
  """Bytes one device needs to train ``num_models`` stacked axis models.

  Parameters per model (docs/method.md §3, biases left out): encoder and
  decoder LSTMs 4k(J + k) + 4k(J + 2k) + (L - 1) 16k^2, attention 3k^2,
  output kJ, projector (f + 1)k^2; kept four times (weights, gradients, two
  Adam moments). Activations of a batch b: inputs, targets, reconstructions
  and their gradients 4bfJ, and per LSTM layer and step about 10 gate and
  state values of size k, forward and backward (2 x 2L x 10bfk).
  """
  k, joints = hidden, num_joints
  parameters = (4 * k * (joints + k) + 4 * k * (joints + 2 * k)
                + (num_layers - 1) * 16 * k * k + 3 * k * k + k * joints
                + (length + 1) * k * k)
  activations = batch_per_device * length * (4 * joints
                                             + 40 * num_layers * k)
  return num_models * (4 * parameters + activations) * _FLOAT32


def accelerator_bytes() -> Optional[tuple[int, str]]:
  """(memory of the first accelerator, its description), None on CPU."""
  import jax  # pylint: disable=import-outside-toplevel
  device = jax.local_devices()[0]
  if device.platform == 'cpu':
    return None
  stats = device.memory_stats() or {}
  limit = stats.get('bytes_limit')
  return None if not limit else (int(limit), f'of each {device.device_kind}')


def _meminfo(field: str) -> Optional[int]:
  try:
    for line in pathlib.Path('/proc/meminfo').read_text().splitlines():
      name, _, value = line.partition(':')
      if name == field:
        return int(value.split()[0]) * 1024  # kB
  except (OSError, ValueError, IndexError):
    pass
  return None


def _physical_bytes() -> int:
  try:
    return os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
  except (AttributeError, ValueError, OSError):  # no sysconf (Windows)
    return 2**62


def _cgroup_limit() -> Optional[int]:
  """The memory limit of this process's cgroup (v2, else v1), if any."""
  try:
    lines = pathlib.Path('/proc/self/cgroup').read_text().splitlines()
  except OSError:
    lines = []
  own = [line.split(':', 2)[2] for line in lines if line.startswith('0::')]
  candidates = [f'/sys/fs/cgroup{own[0].rstrip("/")}/memory.max'] if own else []
  candidates += ['/sys/fs/cgroup/memory.max',
                 '/sys/fs/cgroup/memory/memory.limit_in_bytes']
  for candidate in candidates:
    try:
      text = pathlib.Path(candidate).read_text().strip()
    except OSError:
      continue
    if text.isdigit() and int(text) < 2**60:  # v1 says 'no limit' with 2**63
      return int(text)
    return None  # 'max': no limit
  return None


def _own_resident_bytes() -> int:
  try:
    pages = int(pathlib.Path('/proc/self/statm').read_text().split()[1])
    return pages * os.sysconf('SC_PAGE_SIZE')
  except (OSError, ValueError, IndexError, AttributeError):
    return 0
