"""Progress lines of the train stage, for the console and the log file."""

from __future__ import annotations


def format_duration(seconds: float) -> str:
  """'m:ss', or 'h:mm:ss' from one hour on."""
  seconds = max(0, int(round(seconds)))
  hours, rest = divmod(seconds, 3600)
  minutes, seconds = divmod(rest, 60)
  return f'{hours}:{minutes:02d}:{seconds:02d}' if hours else f'{minutes}:{seconds:02d}'


SHORT_NAMES = {'reconstruction': 'rec', 'locality_attention': 'att',
                'contrastive': 'lcl', 'weight_decay': 'wd', 'total': 'total'}


def progress_line(epoch: int, epochs: int, step: int, total: int,
                   sums: dict[str, float], rate: float, remaining: float) -> str:
  """One readable line; losses are summed over the stacked models."""
  losses = '  '.join(f'{SHORT_NAMES[name]} {value:.4g}'
                     for name, value in sums.items())
  return (f'[train] epoch {epoch}/{epochs}  step {step}/{total} '
          f'({100 * step / total:.1f}%)  {losses}  | {rate:.2f} steps/s  '
          f'ETA {format_duration(remaining)}')
