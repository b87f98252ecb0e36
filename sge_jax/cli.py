"""What every command does alike: user errors as one line (exit 2), Ctrl-C as a
resumable stop (exit 130), and quiet third-party logs."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any, Callable

from sge_jax.config import checks    # no JAX: cheap to import
from sge_jax import distributed, interrupts
from sge_jax.distributed import watchdog as job_watchdog
from sge_jax.data import input_files
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
  ``error: <message>`` and exits with status 2; Ctrl-C prints what the
  interrupted stage saved (the KeyboardInterrupt's message, if any) and
  ``interrupted_hint`` (how to go on), and exits with 130.

  In a process of a multi-process job (``multi_process``), every line starts
  with ``prefix`` (its index), and every failure goes through
  ``job_watchdog``: the other processes learn of it and end within a few
  seconds, each with one line, and this one ends at once (a normal exit would
  wait for them at JAX's shutdown barrier). A crash shows its traceback once,
  on this process, above a one-line summary, and exits with 1.
  """
  interrupts.install()
  try:
    result = main(*args)
  except USER_ERRORS as error:
    if multi_process:
      job_watchdog.end_job(f'{prefix}error: {error}', USER_ERROR_STATUS,
                           _job_cause(error, USER_ERROR_STATUS))
    exit_with_user_error(str(error), prefix=prefix)
  except KeyboardInterrupt as interrupt:
    # The interrupted stage may say what it saved (KeyboardInterrupt(message)).
    said = '; '.join(part for part in (str(interrupt), interrupted_hint) if part)
    line = f'\n{prefix}interrupted{": " + said if said else ""}'
    if multi_process:
      job_watchdog.end_job(line, INTERRUPTED_STATUS,
                           _job_cause(interrupt, INTERRUPTED_STATUS))
    print(line, file=sys.stderr)
    sys.exit(INTERRUPTED_STATUS)
  except Exception as error:  # pylint: disable=broad-except
    if not multi_process:
      raise
    job_watchdog.end_after_crash(error, prefix)
  if multi_process:
    job_watchdog.finish()
  sys.exit(result if isinstance(result, int) else 0)


def _job_cause(error: BaseException, status: int) -> job_watchdog.Stop:
  return job_watchdog.cause_of(error, distributed.process_index(), status)


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
  bad_value = _bad_override_message(text)
  if bad_value:
    return bad_value
  missing = re.search(r"No such file or directory: '([^']+)'", text)
  if missing:
    return (f'no config file at {missing.group(1)}; the configs are in '
            'configs/, e.g. --config=configs/demo.py')
  if "has no attribute 'get_config'" in text:
    return ('the config file has no get_config(arg) function; the files in '
            'configs/ show the form')
  if 'Error whilst parsing config file' in text:
    return _config_file_error_message(text)
  unknown = re.match(r"""\W*'?(\w+)'?\W*\s*(Did you mean "(\w+)")?""", text)
  if isinstance(error, (KeyError, AttributeError)) and unknown:
    hint = f' (did you mean {unknown.group(3)!r}?)' if unknown.group(3) else ''
    return (f'unknown config field {unknown.group(1)!r}{hint}; every field is '
            'listed in sge_jax/config/fields.py')
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  return lines[-1] if lines else type(error).__name__


# What a --config.<field> value that does not parse was expected to be, by
# the parser's complaint.
_EXPECTED_BY_COMPLAINT = (
    ('invalid literal for int()', 'an integer'),
    ('could not convert string to float', 'a number'),
    ('Non-boolean argument to boolean flag', 'true or false'),
)


def _bad_override_message(text: str) -> str:
  """'config.train.epochs='1.5' is invalid: expected an integer. ...' for a
  ``--config.<field>=<value>`` the flag parser could not read as the field's
  type, else ''."""
  override = re.match(r'flag --config\.([\w.]+)=(.*?): (.*)', text, re.DOTALL)
  if not override:
    return ''
  field, value, complaint = override.groups()
  for words, expected in _EXPECTED_BY_COMPLAINT:
    if words in complaint:
      return str(checks.invalid(field, value, expected))
  return ''


def _config_file_error_message(text: str) -> str:
  """One line for a config file whose ``get_config`` raised: the file, the
  line and the error (config_flags hands them over as traceback text)."""
  frames = [(path, line) for path, line in
            re.findall(r'File "([^"]+)", line (\d+)', text)
            if 'site-packages' not in path and not path.startswith('<')]
  where = f'{frames[-1][0]} (line {frames[-1][1]})' if frames else 'the config file'
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  error = lines[-1] if lines else 'an error'
  typed = re.search(r"Could not override field '(\w+)' \(reference\)\. (.*) is "
                    r"of original type <class '(\w+)'> and cannot be casted to "
                    r"type <class '(\w+)'>", error)
  if typed:
    field, value, given, wanted = typed.groups()
    error = (f'it sets field {field!r} to {value} ({given}), where the field '
             f'holds {wanted} values')
  return f'{where} fails: {error}'


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
