"""Writing workdir files so an interruption never leaves a half-written one."""

from __future__ import annotations

import pathlib


def write_text_atomically(path: str | pathlib.Path, text: str) -> None:
  """Writes ``text`` to a temporary file beside ``path``, then renames it over."""
  path = pathlib.Path(path)
  temporary = path.with_name(path.name + '.tmp')
  temporary.write_text(text)
  temporary.replace(path)
