"""The checks every config value goes through, and the parsing of its strings.

``invalid`` is the one builder of the "config.X=... is invalid: expected ...
Override it with --config.X=..." message; ``require``, ``one_of``,
``int_at_least`` and ``positive_float`` raise it. ``parse_stages`` and
``parse_seeds`` read the comma-separated fields; ``mistyped_field`` and
``saved_config_problem`` check a config's (or a saved config.json's) field
types against ``base_config``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Iterable, Mapping, Optional

import ml_collections

from sge_jax.config.fields import STAGES, base_config
from sge_jax.errors import ConfigError

# ----------------------------------------------------------------- parsing


def parse_list(text: str) -> list[str]:
  """'a, b,,c' -> ['a', 'b', 'c']."""
  return [item.strip() for item in str(text).split(',') if item.strip()]


def invalid(field: str, value: Any, expected: str) -> ConfigError:
  """The error for a bad ``config.<field>``: the value, what is expected, the flag."""
  return ConfigError(f'config.{field}={value!r} is invalid: expected {expected}. '
                     f'Override it with --config.{field}=...')


def parse_stages(text: str) -> list[str]:
  """``config.stages`` as a list in STAGES order.

  Raises:
    ConfigError: an unknown stage, or none.
  """
  stages = parse_list(text)
  unknown = [s for s in stages if s not in STAGES]
  if unknown or not stages:
    raise invalid('stages', text,
                  f'a comma-separated subset of {", ".join(STAGES)}')
  return [s for s in STAGES if s in stages]


# Seeds give distinct PRNG keys (jax.random.key keeps 32 bits) and NumPy seed
# sequences (no negatives) exactly in this range.
MAX_SEED = 2**32 - 1
SEED_RANGE = f'an integer from 0 to {MAX_SEED} (2**32 - 1)'


def is_seed(value) -> bool:
  """Whether ``value`` is an int seed in 0..MAX_SEED."""
  return (isinstance(value, int) and not isinstance(value, bool)
          and 0 <= value <= MAX_SEED)


def parse_seeds(config: ml_collections.ConfigDict) -> list[int]:
  """``config.seeds`` ('0,1,2', '0-7' or '0-3,10') as ints, or
  ``[config.seed]`` when empty.

  Raises:
    ConfigError: not a list of seeds in 0..MAX_SEED, or a seed repeated.
  """
  items = parse_list(config.seeds)
  if not items:
    return [int(config.seed)]
  expected = (f'comma-separated seeds or ranges of seeds, each {SEED_RANGE}, '
              'e.g. 0,1,2 or 0-7')
  seeds = []
  for item in items:
    first, dash, last = item.partition('-')
    try:
      bounds = [int(first)] + ([int(last)] if dash else [])
    except ValueError:
      raise invalid('seeds', config.seeds, expected) from None
    if not all(is_seed(bound) for bound in bounds) or bounds[-1] < bounds[0]:
      raise invalid('seeds', config.seeds, expected)
    if bounds[-1] - bounds[0] >= 10_000:
      raise invalid('seeds', config.seeds,
                    f'{expected}; a range of at most 10000 seeds')
    seeds.extend(range(bounds[0], bounds[-1] + 1))
  if len(set(seeds)) != len(seeds):
    raise invalid('seeds', config.seeds, 'each seed once (it repeats a seed)')
  return seeds


def is_multi_seed(config: ml_collections.ConfigDict) -> bool:
  """Whether ``config.seeds`` asks for several runs."""
  return bool(parse_list(config.seeds))


def data_seed(config: ml_collections.ConfigDict) -> int:
  """The seed the data is drawn with: ``data.seed``, or the root ``seed``."""
  seed = int(config.data.get('seed', -1))
  return int(config.seed) if seed < 0 else seed


def require(condition: bool, field: str, value: Any, expected: str) -> None:
  """Raises ``invalid(field, value, expected)`` unless ``condition``."""
  if not condition:
    raise invalid(field, value, expected)


def one_of(value, field: str, allowed: Iterable[str]) -> None:
  """Raises ``invalid`` unless ``value`` is one of ``allowed``."""
  allowed = tuple(allowed)
  require(value in allowed, field, value, f'one of {", ".join(allowed)}')


def int_at_least(value, field: str, minimum: int = 1) -> None:
  """Raises ``invalid`` unless ``value`` is an int (not a bool) >= ``minimum``."""
  require(isinstance(value, int) and not isinstance(value, bool)
          and value >= minimum, field, value, f'an integer >= {minimum}')


def positive_float(value, field: str, allow_zero: bool = False) -> None:
  """Raises ``invalid`` unless ``value`` is a finite number > 0 (>= 0 with
  ``allow_zero``)."""
  ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
        and math.isfinite(value) and (value >= 0 if allow_zero else value > 0))
  require(ok, field, value, 'a finite number ' + ('>= 0' if allow_zero else '> 0'))


# ----------------------------------------------------------------- field types

# What every saved config.json holds (every version of the job wrote them).
SAVED_CONFIG_SECTIONS = ('seed', 'data', 'model', 'train', 'rn', 'eval')


def _expected_kind(default: Any) -> str:
  """What a field whose default is ``default`` must hold, in words."""
  if default is None:                     # a bool that may be left unset
    return 'true, false or None'
  if isinstance(default, bool):
    return 'true or false'
  if isinstance(default, int):
    return 'an integer'
  if isinstance(default, float):
    return 'a number'
  if isinstance(default, str):
    return 'a string'
  return 'a section of fields'


def _fits(value: Any, default: Any) -> bool:
  """Whether ``value`` has the type of a field whose default is ``default``
  (an integer may stand for a float, never a float for an integer)."""
  if default is None:
    return value is None or isinstance(value, bool)
  if isinstance(default, bool):
    return isinstance(value, bool)
  if isinstance(default, int):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
  if isinstance(default, float):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
  if isinstance(default, str):
    return isinstance(value, str)
  return _is_section(value)


def _is_section(value: Any) -> bool:
  return isinstance(value, (Mapping, ml_collections.ConfigDict))


def mistyped_field(config: Mapping[str, Any]
                   ) -> Optional[tuple[str, Any, str]]:
  """The first field of ``config`` (a ConfigDict or a dict read from JSON)
  whose value has another type than ``base_config()`` gives it, as (dotted
  field, value, what is expected); None when every field fits. Fields the
  base config lacks, and fields ``config`` lacks, are not checked."""
  def first_in(section: Mapping[str, Any], defaults: Mapping[str, Any],
               prefix: str):
    for key, default in defaults.items():
      if key not in section:
        continue
      value = section[key]
      if not _fits(value, default):
        return f'{prefix}{key}', value, _expected_kind(default)
      if _is_section(default):
        found = first_in(value, default, f'{prefix}{key}.')
        if found:
          return found
    return None

  return first_in(config, base_config().to_dict(), '')


def saved_config_problem(saved: Mapping[str, Any]) -> Optional[str]:
  """What makes a config.json that parsed as a JSON object unusable as the
  record of a run (a missing section, a field of the wrong type), or None."""
  for section in SAVED_CONFIG_SECTIONS:
    if section not in saved:
      return f'it has no {section!r} field'
  mistyped = mistyped_field(saved)
  if mistyped:
    field, value, expected = mistyped
    return f'its {field} is {value!r}, not {expected}'
  return None

