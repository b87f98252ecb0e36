"""Checkpoints: Orbax's CheckpointManager with StandardSave/StandardRestore, wrapped.

One checkpoint is one pytree (the train state plus bookkeeping) saved under its
step number. Orbax writes each step into a temporary directory and renames it
when complete, so an interrupted save never leaves a half-written step behind;
Ctrl-C waits for a save to finish (``sge_jax.interrupts.uninterruptible``), a
save killed half-way leaves a temporary directory that the next run removes, and
a save that fails (disk full, read-only) removes what it wrote and raises a
one-line
``WorkdirError`` naming the directory and the cause.

On top of Orbax:
- typed PRNG keys are stored as their key data and re-wrapped on restore;
- every checkpoint carries CRC32 checksums of its leaves, verified on restore, so
  a damaged file is detected even where the storage layer would not notice;
- ``restore_latest`` falls back to the next older step, with a warning, when the
  newest cannot be read, and moves the damaged step aside for inspection.

Many processes: every process calls ``save`` and ``restore`` (Orbax
synchronises them; only process 0 writes the arrays, which are host NumPy
copies, identical on every process), on one directory every process shares.
``restore_latest`` decides together: all processes must list the same steps,
a step counts as damaged when any process cannot read it, only process 0
moves it aside, and the restored state is compared (a checksum) across
processes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import re
import shutil
import sys
import time
import zlib
from typing import Any, Iterator, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

from sge_jax import distributed
from sge_jax import interrupts
from sge_jax import workdir as workdir_lib
from sge_jax.errors import CheckpointError, CheckpointMismatchError

_CHECKSUMS = '__leaf_crc32__'
# What Orbax appends to the directory of a step while it is being written.
_UNFINISHED = '.orbax-checkpoint-tmp'


def _is_key(leaf) -> bool:
  return hasattr(leaf, 'dtype') and jax.dtypes.issubdtype(leaf.dtype,
                                                          jax.dtypes.prng_key)


def _keys_to_data(tree):
  return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _leaf_checksums(tree) -> np.ndarray:
  leaves = jax.tree.leaves(jax.device_get(tree))
  return np.asarray([zlib.crc32(np.ascontiguousarray(leaf).tobytes())
                     for leaf in leaves], dtype=np.uint32)


def _abstract(tree):
  """ShapeDtypeStructs of a concrete or abstract tree, keys as key data."""
  def describe(leaf):
    if _is_key(leaf):
      return jax.eval_shape(jax.random.key_data, leaf)
    return jax.ShapeDtypeStruct(np.shape(leaf), leaf.dtype)
  return jax.tree.map(describe, tree)


def _abstract_payload(template):
  """ShapeDtypeStructs of what a checkpoint of ``template`` holds: the tree
  and its leaves' checksums."""
  abstract_tree = _abstract(template)
  return {'tree': abstract_tree,
          _CHECKSUMS: jax.ShapeDtypeStruct(
              (len(jax.tree.leaves(abstract_tree)),), np.uint32)}


def _path_name(path) -> str:
  parts = []
  for key in path:
    for attribute in ('key', 'name', 'idx'):
      if hasattr(key, attribute):
        parts.append(str(getattr(key, attribute)))
        break
  return '/'.join(parts)


def _shapes_by_path(tree) -> dict[str, tuple]:
  return {_path_name(path): (tuple(leaf.shape), np.dtype(leaf.dtype))
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _rewrap_keys(restored, template):
  return jax.tree.map(
      lambda data, like: (jax.random.wrap_key_data(
          data, impl=jax.random.key_impl(like)) if _is_key(like) else data),
      restored, template)


class CheckpointStore:
  """Saves and restores one pytree per step in ``directory``.

  Args:
    directory: where the step directories go (created if needed).
    max_to_keep: how many of the newest checkpoints to keep.
  """

  def __init__(self, directory: str | pathlib.Path, max_to_keep: int = 3):
    self.directory = pathlib.Path(directory).absolute()
    # A save killed mid-way leaves a *.orbax-checkpoint-tmp directory: removed
    # here, before the manager lists the steps (Orbax's own clean-up runs in a
    # thread that a short-lived process can leave unfinished).
    self._remove_unfinished()
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True,
        # Synchronous saves: a checkpoint is complete when save() returns, which
        # is what "nothing lost on interruption" needs; they take well under a
        # second at these model sizes.
        enable_async_checkpointing=False, cleanup_tmp_directories=False)
    self._manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers=ocp.StandardCheckpointHandler())

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def save(self, step: int, tree: Any) -> None:
    """Saves ``tree`` (leaves on any device, or NumPy) as checkpoint ``step``."""
    # Keys to key data first: device_get leaves a typed key a jax.Array, which
    # Orbax cannot save in a multi-process job (it is host-local).
    savable = jax.device_get(_keys_to_data(tree))
    payload = {'tree': savable, _CHECKSUMS: _leaf_checksums(savable)}
    with interrupts.uninterruptible(), _failure_reports_dropped():
      try:
        self._manager.save(step, args=ocp.args.StandardSave(payload),
                           force=True)
        self._manager.wait_until_finished()
      except Exception as error:  # Orbax/TensorStore raise many types here.
        fault = _storage_fault(error)
        if fault is None:
          raise
        self._remove_unfinished(settle_s=0.5)
        raise workdir_lib.write_error(
            self.directory, fault, f'write checkpoint step {step} in',
            'the previous checkpoints are kept'
            if has_checkpoints(self.directory) else None) from error

  def _remove_unfinished(self, settle_s: float = 0.0) -> None:
    """Removes the temporary directories of unfinished saves (process 0). A
    step's own directory only appears, by a rename, once it is complete.

    After a failed save TensorStore may go on for a moment with the save's
    other writes, creating the directory again: with ``settle_s`` it is
    removed until it has stayed away that long (at most ten times as long).
    """
    if not (distributed.is_main_process() and self.directory.is_dir()):
      return
    give_up = time.monotonic() + 10 * settle_s
    gone_since = time.monotonic()
    while True:
      unfinished = list(self.directory.glob(f'*{_UNFINISHED}*'))
      for path in unfinished:
        shutil.rmtree(path, ignore_errors=True)
      now = time.monotonic()
      if unfinished:
        gone_since = now
      if now - gone_since >= settle_s or now >= give_up:
        return
      time.sleep(settle_s / 5)

  def restore(self, step: int, template: Any) -> Any:
    """Restores checkpoint ``step`` into the structure of ``template``.

    Args:
      step: the step to restore.
      template: a tree (concrete or of ShapeDtypeStructs) with the saved
        structure; typed-key leaves come back as typed keys.

    Raises:
      CheckpointError: the checkpoint cannot be read or fails its checksums.
      CheckpointMismatchError: it is readable but holds other arrays than
        ``template`` describes.
    """
    abstract = _abstract_payload(template)
    self._check_shapes(step, abstract)
    try:
      payload = self._manager.restore(step,
                                      args=ocp.args.StandardRestore(abstract))
    except Exception as error:  # Orbax/TensorStore raise many types here.
      raise CheckpointError(
          f'checkpoint {step} in {self.directory} cannot be read: '
          f'{type(error).__name__}: {str(error)[:300]}') from error
    restored = jax.device_get(payload['tree'])
    if not np.array_equal(_leaf_checksums(restored),
                          np.asarray(payload[_CHECKSUMS])):
      raise CheckpointError(
          f'checkpoint {step} in {self.directory} is damaged: its data do not '
          'match the checksums written with it')
    return _rewrap_keys(restored, template)

  def _check_shapes(self, step: int, abstract: Any) -> None:
    try:
      saved = _shapes_by_path(self._manager.item_metadata(step).tree)
    except Exception as error:  # unreadable metadata: a damaged checkpoint
      raise CheckpointError(
          f'checkpoint {step} in {self.directory} has unreadable metadata: '
          f'{type(error).__name__}: {str(error)[:300]}') from error
    _raise_on_other_shapes(saved, abstract, step, self.directory)

  def restore_latest(self, template: Any) -> Optional[tuple[int, Any]]:
    """Restores the newest readable checkpoint.

    A checkpoint that cannot be read is moved to ``<directory>/damaged_<step>``
    with a warning, and the next older one is tried.

    Returns:
      (step, tree), or None when the directory holds no checkpoint.

    Raises:
      CheckpointError: checkpoints exist but none can be restored (nothing is
        silently started over).
    """
    steps = self.steps()
    distributed.check_same_on_every_process(
        f'list of checkpoints in {self.directory}',
        distributed.checksum(np.asarray(steps, np.int64)),
        'the workdir must be on a filesystem every process of the job shares')
    if not steps:
      return None
    failures = []
    for step in reversed(steps):
      error = None
      try:
        tree = self.restore(step, template)
      except CheckpointError as caught:
        error = caught
      failed = distributed.gather(np.uint8(error is not None))
      if not failed.any():
        distributed.check_same_on_every_process(
            f'checkpoint {step} in {self.directory}',
            distributed.checksum(_leaf_checksums(_keys_to_data(tree))),
            'the workdir must be on a filesystem every process of the job shares')
        return step, tree
      message = str(error) if error else (
          f'checkpoint {step} in {self.directory} cannot be read on process '
          f'{int(np.argmax(failed))}')
      failures.append(message)
      logging.warning('%s; falling back to the previous checkpoint.', message)
      self._move_aside(step)
    raise CheckpointError(
        'No checkpoint could be restored:\n  ' + '\n  '.join(failures)
        + f'\nThe damaged steps were moved to {self.directory}/damaged_<step>. '
        'Delete the checkpoints directory to start training from scratch.')

  def _move_aside(self, step: int) -> None:
    """Renames a damaged step (process 0 only; every process waits for it)."""
    step_dir = self.directory / str(step)
    if distributed.is_main_process() and step_dir.exists():
      # A step can be damaged again after being rewritten: never overwrite.
      target = self.directory / f'damaged_{step}'
      copy = 1
      while target.exists():
        copy += 1
        target = self.directory / f'damaged_{step}_{copy}'
      step_dir.rename(target)
    distributed.barrier(f'checkpoint {step} moved aside')
    self._manager.reload()

  def close(self) -> None:
    self._manager.close()

  def __enter__(self) -> 'CheckpointStore':
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def _storage_fault(error: BaseException) -> Optional[OSError]:
  """The OSError (disk full, read-only, ...) behind a failed save, or None.

  Orbax's own files fail with an OSError; TensorStore reports its writes as a
  ValueError whose text ends in ``[os_error_code='28']``.
  """
  while error is not None:
    if isinstance(error, OSError):
      return error
    code = re.search(r"os_error_code='?(\d+)", str(error))
    if code:
      return OSError(int(code.group(1)), os.strerror(int(code.group(1))))
    error = error.__cause__ or error.__context__
  return None


class _DropErrors(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno < logging.ERROR


def _is_abandoned_write(unraisable) -> bool:
  return (isinstance(unraisable.exc_value, RuntimeError)
          and 'Event loop is closed' in str(unraisable.exc_value))


@contextlib.contextmanager
def _failure_reports_dropped() -> Iterator[None]:
  """A failed write makes Orbax log the error with its thread's traceback,
  and TensorStore then finishes the save's other writes on threads whose
  asyncio loop is closed, which Python reports as ignored 'Event loop is
  closed' errors, during and after the save. ``save`` reports the failure once,
  as a WorkdirError: within the block Orbax's error logs are dropped, and after
  a failure those reports too."""
  drop, logger = _DropErrors(), logging.getLogger('absl')
  previous = sys.unraisablehook
  logger.addFilter(drop)
  sys.unraisablehook = lambda unraisable: (
      None if _is_abandoned_write(unraisable) else previous(unraisable))
  try:
    yield
    sys.unraisablehook = previous
  finally:
    logger.removeFilter(drop)


def _raise_on_other_shapes(saved: dict[str, tuple], abstract: Any, step: int,
                           directory: pathlib.Path) -> None:
  """Raises CheckpointMismatchError when ``saved`` (path -> (shape, dtype) of
  checkpoint ``step``) differs from the payload of ``abstract``."""
  expected = _shapes_by_path(abstract)
  differences = [f'{path}: saved {saved.get(path)}, expected {shape}'
                 for path, shape in expected.items() if saved.get(path) != shape]
  differences += [f'{path}: saved but not expected'
                  for path in saved if path not in expected]
  if differences:
    raise CheckpointMismatchError(
        f'checkpoint {step} in {directory} was written for another '
        'configuration (model size, joint count, pretext or length): '
        + '; '.join(differences[:5])
        + (f' (+{len(differences) - 5} more)' if len(differences) > 5 else ''))


# The folder of the one item in a step folder (CheckpointManager's name for a
# single unnamed item).
_ITEM_DIR = 'default'


def newest_checkpoint_shapes(directory: str | pathlib.Path
                             ) -> Optional[tuple[int, dict[str, tuple]]]:
  """(step, path -> (shape, dtype) of every array) of the newest checkpoint
  in ``directory`` whose metadata can be read (paths such as
  ``'tree/state/params/decoder/output/bias'``), from its metadata alone:
  nothing is loaded, nothing is written, and no other process is waited for.
  A step whose metadata cannot be read is passed over (``restore_latest``
  deals with it); None when no step is readable."""
  directory = pathlib.Path(directory).absolute()
  steps = sorted((int(entry.name) for entry in directory.iterdir()
                  if entry.name.isdigit()), reverse=True)
  for step in steps:
    try:
      metadata = ocp.StandardCheckpointHandler().metadata(
          directory / str(step) / _ITEM_DIR)
      return step, _shapes_by_path(metadata.tree)
    except Exception:  # pylint: disable=broad-except  # damaged: pass over
      continue
  return None


def check_newest_checkpoint_fits(directory: str | pathlib.Path,
                                 template: Any) -> None:
  """Checks that the newest checkpoint in ``directory`` holds the arrays of
  ``template`` (as ``CheckpointStore.restore`` would), from its metadata
  alone (``newest_checkpoint_shapes``), so it may run before any work and on
  any process. No readable step, no check.

  Raises:
    CheckpointMismatchError: naming the first differing arrays.
  """
  newest = newest_checkpoint_shapes(directory)
  if newest is not None:
    step, saved = newest
    _raise_on_other_shapes(saved, _abstract_payload(template), step,
                           pathlib.Path(directory).absolute())


def has_checkpoints(directory: str | pathlib.Path) -> bool:
  """Whether ``directory`` holds at least one saved step (without creating it)."""
  directory = pathlib.Path(directory)
  return directory.is_dir() and any(
      entry.name.isdigit() for entry in directory.iterdir())
