"""What every command does alike: user errors as one line (exit 2), Ctrl-C as a
resumable stop (exit 130), and quiet third-party logs."""

from __future__ import annotations

import logging
import os
import re
import sys
import traceback
from typing import Any, Callable

from sge_jax import input_files
from sge_jax import interrupts
from sge_jax.errors import USER_ERRORS

USER_ERROR_STATUS = 2
INTERRUPTED_STATUS = 130


class _QuietLibraries(logging.Filter):
  """Drops Orbax's INFO chatter (a dozen lines per save and restore) and JAX's
  probe of backends this machine does not have ('Unable to initialize backend
  tpu'), which reads like an error but is not one."""

  def filter(self, record: logging.LogRecord) -> bool:
    if record.levelno >= logging.WARNING:
      return 'Unable to initialize backend' not in record.getMessage()
    return ('/orbax/' not in record.pathname
            and 'xla_bridge' not in record.pathname)


def quiet_libraries() -> None:
  """Installs the filter on the root and absl loggers (idempotent)."""
  for logger in (logging.getLogger(), logging.getLogger('absl')):
    if not any(isinstance(f, _QuietLibraries) for f in logger.filters):
      logger.addFilter(_QuietLibraries())
  for handler in logging.getLogger().handlers:
    if not any(isinstance(f, _QuietLibraries) for f in handler.filters):
      handler.addFilter(_QuietLibraries())


def exit_on_user_error(main: Callable[..., Any], *args: Any,
                       interrupted_hint: str = '', multi_process: bool = False,
                       prefix: str = '') -> None:
  """Runs ``main(*args)`` and exits with its integer result (0 for None).

  A user error (``sge_jax.errors.USER_ERRORS``) is printed once as
  ``error: <message>`` and exits with status 2; Ctrl-C prints
  ``interrupted_hint`` (what survives and how to go on) and exits with 130.

  In a process of a multi-process job (``multi_process``), every line starts
  with ``prefix`` (its index), and a crash or Ctrl-C ends the process at once
  (``os._exit``): a normal exit would wait for the other processes at JAX's
  shutdown barrier while they wait for this one in a collective. The others
  then stop when JAX notices this process is gone (--peer_timeout). A user
  error exits normally: the job's checks raise it on every process together.
  """
  interrupts.install()
  try:
    result = main(*args)
  except USER_ERRORS as error:
    exit_with_user_error(str(error), prefix=prefix)
  except KeyboardInterrupt:
    print(f'\n{prefix}interrupted'
          f'{": " + interrupted_hint if interrupted_hint else ""}',
          file=sys.stderr)
    _exit(INTERRUPTED_STATUS, at_once=multi_process)
  except Exception:  # pylint: disable=broad-except
    if not multi_process:
      raise
    print(f'{prefix}crashed:', file=sys.stderr)
    traceback.print_exc()
    _exit(1, at_once=True)
  sys.exit(result if isinstance(result, int) else 0)


def _exit(status: int, at_once: bool) -> None:
  if at_once:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # pylint: disable=protected-access
  sys.exit(status)


def _config_error_message(error: BaseException) -> str:
  """One line saying what went wrong while reading ``--config`` or a
  ``--config.<field>`` override (config_flags reports some of these as text
  that embeds a traceback, so the message is read off that text)."""
  causes = [error, error.__cause__, error.__context__]
  for cause in causes:
    if isinstance(cause, USER_ERRORS):
      embedded = re.search(r'sge_jax\.errors\.\w+: (.*)', str(cause))
      return embedded.group(1).strip() if embedded else str(cause)
    if isinstance(cause, SyntaxError):
      return (f'the config file {cause.filename} does not parse: {cause.msg} '
              f'(line {cause.lineno})')
  text = str(error.args[0]) if error.args else str(error)
  if isinstance(error, AttributeError) and "'" in text and '\\n' in text:
    text = text.encode().decode('unicode_escape')  # a KeyError's repr, inside
  user_error = re.search(r'sge_jax\.errors\.\w+: (.*)', text)
  if user_error:
    return user_error.group(1).strip()
  missing = re.search(r"No such file or directory: '([^']+)'", text)
  if missing:
    return (f'no config file at {missing.group(1)}; the configs are in '
            'configs/, e.g. --config=configs/demo.py')
  if 'get_config' in text:
    return ('the config file has no get_config(arg) function; the files in '
            'configs/ show the form')
  unknown = re.match(r"""\W*'?(\w+)'?\W*\s*(Did you mean "(\w+)")?""", text)
  if isinstance(error, (KeyError, AttributeError)) and unknown:
    hint = f' (did you mean {unknown.group(3)!r}?)' if unknown.group(3) else ''
    return (f'unknown config field {unknown.group(1)!r}{hint}; every field is '
            'listed in sge_jax/config.py')
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  return lines[-1] if lines else type(error).__name__


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing with user errors as one line and exit status 2.

  Pass as ``app.run(main, flags_parser=parse_flags)``. A config file that is
  missing, does not parse, has no ``get_config`` or an unknown variant, and an
  unknown ``--config.<field>`` (with the "did you mean" hint) all land here.
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  try:
    return flags.FLAGS(argv)
  except Exception as error:  # pylint: disable=broad-except
    # Every failure here comes from the command line or the config file it
    # names, so it is reported as the user's to fix.
    exit_with_user_error(_config_error_message(error), flags_hint=True)


def define_config_flag(define: Callable[..., Any], *args: Any, **kwargs: Any):
  """Calls ``config_flags.DEFINE_config_*``, which may already read the
  ``--config.<field>`` overrides on the command line, with the same one-line
  errors as ``parse_flags``."""
  if getattr(define, '__name__', '') == 'DEFINE_config_file':
    _refuse_non_regular_config_file(sys.argv)
  try:
    return define(*args, **kwargs)
  except Exception as error:  # pylint: disable=broad-except
    exit_with_user_error(_config_error_message(error), flags_hint=True)


def _refuse_non_regular_config_file(argv: list[str]) -> None:
  """Exits (status 2) when ``--config=PATH[:argument]`` names a FIFO, device or
  directory: config_flags would read it while parsing, and wait forever."""
  for index, argument in enumerate(argv[1:], 1):
    name, equals, value = argument.partition('=')
    if name not in ('--config', '-config'):
      continue
    if not equals:
      value = argv[index + 1] if index + 1 < len(argv) else ''
    path = value.partition(':')[0]
    kind = input_files.not_regular(path) if path else None
    if kind:
      exit_with_user_error(f'the config file {path} is {kind}, not a regular '
                           'file: pass a config .py file, e.g. '
                           '--config=configs/demo.py.', flags_hint=True)


def exit_with_user_error(message: str, flags_hint: bool = False,
                         prefix: str = '') -> None:
  print(f'{prefix}error: {message}', file=sys.stderr)
  if flags_hint:
    print('Pass --helpshort to see the flags.', file=sys.stderr)
  sys.exit(USER_ERROR_STATUS)


def loaded_config(config_flag: Any) -> Any:
  """The config of a ``config_flags`` flag holder; a file that could not be
  loaded (config_flags defers that error to the first use) is a user error."""
  try:
    config = config_flag.value
    config.get('seed')
  except Exception as error:  # pylint: disable=broad-except
    exit_with_user_error(_config_error_message(error), flags_hint=True)
  return config
