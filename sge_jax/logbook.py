"""Metrics as JSON lines in the workdir, and progress lines for the console/log file."""

from __future__ import annotations

import json
import pathlib
from typing import Any, Mapping

from sge_jax import files


class MetricsLog:
  """Appends one JSON object per line to ``<workdir>/metrics.jsonl``.

  Every record has ``stage`` and ``step``. When a stage resumes from a checkpoint
  at step s, the lines it wrote after s before the interruption are dropped, so
  the file describes the run that actually produced the final state.
  """

  def __init__(self, path: str | pathlib.Path):
    self.path = pathlib.Path(path)
    self.path.parent.mkdir(parents=True, exist_ok=True)

  def write(self, record: Mapping[str, Any]) -> None:
    with self.path.open('a') as f:
      f.write(json.dumps(files.json_safe(record, non_finite_as_text=True),
                         sort_keys=False) + '\n')

  def drop_after(self, stage: str, step: int) -> None:
    """Removes ``stage`` records with a step beyond ``step`` (a resumed stage)."""
    if not self.path.exists():
      return
    kept = []
    for line in self.path.read_text().splitlines():
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        continue  # a line cut short by the interruption
      if record.get('stage') == stage and record.get('step', 0) > step:
        continue
      kept.append(line)
    files.write_text_atomically(self.path, ''.join(line + '\n' for line in kept))


def format_duration(seconds: float) -> str:
  seconds = max(0, int(round(seconds)))
  hours, rest = divmod(seconds, 3600)
  minutes, seconds = divmod(rest, 60)
  return f'{hours}:{minutes:02d}:{seconds:02d}' if hours else f'{minutes}:{seconds:02d}'
