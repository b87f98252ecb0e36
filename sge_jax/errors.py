"""Every error type a user can act on, and the one tuple the commands catch.

Each message names the file, field or value at fault and what to do about it.
The commands (``launch.py``, ``python -m sge_jax.evaluate``, ``python -m
sge_jax.reference``, ``python -m sge_jax.preprocess``) print such an
error as one line and exit with status 2, without a traceback (``sge_jax.cli``).
"""


class DataError(ValueError):
  """Input data is missing, malformed, or too small for the configured job."""


class ConfigError(ValueError):
  """A config value is invalid; the message names the field and the allowed values."""


class CheckpointError(RuntimeError):
  """A checkpoint cannot be read, or none in a directory could be restored."""


class CheckpointMismatchError(ValueError):
  """A readable checkpoint holds arrays of other shapes than the caller expects
  (another model size, joint count or pretext); it is left untouched."""


class NonFiniteLossError(RuntimeError):
  """Training produced a NaN or infinite loss; the last good checkpoint is kept."""


class WorkdirError(ValueError):
  """The workdir cannot be used: it is a file, not writable, or cannot be locked."""


class DistributedError(RuntimeError):
  """A multi-process job cannot start or go on: bad or incomplete flags, an
  unreachable coordinator, processes that loaded different data, or an error on
  another process of the job (the message names it)."""


class PeerStoppedError(DistributedError):
  """Another process of the job stopped it; ``origin`` is that process's index
  and ``what`` its error (``'<type>: <message>'``)."""

  def __init__(self, origin: int, what: str):
    super().__init__(f'process {origin} stopped the job: {what}')
    self.origin = origin
    self.what = what


class WorkdirBusyError(WorkdirError):
  """Another run holds the workdir's lock; the message names its PID and host."""


# What the commands report as one line (exit status 2) instead of a traceback.
USER_ERRORS = (ConfigError, DataError, CheckpointError, CheckpointMismatchError,
               NonFiniteLossError, WorkdirError, DistributedError)
