"""Writing workdir files so an interruption never leaves a half-written one."""

from __future__ import annotations

import math
import pathlib
from typing import Any, Mapping


def write_text_atomically(path: str | pathlib.Path, text: str) -> None:
  """Writes ``text`` to a temporary file beside ``path``, then renames it over."""
  path = pathlib.Path(path)
  temporary = path.with_name(path.name + '.tmp')
  temporary.write_text(text)
  temporary.replace(path)


def json_safe(value: Any, non_finite_as_text: bool = False) -> Any:
  """A JSON-safe copy: NumPy scalars and arrays become Python values.

  Non-finite floats become null, or with ``non_finite_as_text`` the strings
  'nan', 'inf', '-inf' (the metrics log keeps a diverged loss readable).
  """
  if isinstance(value, Mapping):
    return {str(k): json_safe(v, non_finite_as_text) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [json_safe(v, non_finite_as_text) for v in value]
  if hasattr(value, 'tolist'):       # NumPy arrays and scalars
    return json_safe(value.tolist(), non_finite_as_text)
  if isinstance(value, float) and not math.isfinite(value):
    return str(value) if non_finite_as_text else None
  return value
