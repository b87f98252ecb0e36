"""The documentation: every relative link in README.md and docs/*.md points to a file
that exists and, where it names a heading (#anchor), to a heading that exists."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

_FENCE = re.compile(r'^\s*(```|~~~)')
_HEADING = re.compile(r'^(#{1,6})\s+(.*?)\s*#*\s*$')
_LINK = re.compile(r'(?<!!)\[(?:[^\]]*)\]\(([^)\s]+)(?:\s+"[^"]*")?\)')
_CODE_SPAN = re.compile(r'`[^`]*`')


def _prose_lines(text):
  """The lines of a markdown text outside fenced code blocks."""
  inside = False
  for line in text.splitlines():
    if _FENCE.match(line):
      inside = not inside
      continue
    if not inside:
      yield line


def github_anchor(heading):
  """The anchor GitHub gives a heading's text: markup dropped, lower case,
  punctuation removed (word characters, spaces and hyphens stay), spaces as hyphens."""
  text = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', heading)  # links -> their text
  text = text.replace('`', '').replace('*', '').lower()
  text = re.sub(r'[^\w\- ]', '', text)
  return text.replace(' ', '-')


def anchors(path):
  """Every heading anchor of a markdown file, with GitHub's -1, -2 for repeats."""
  seen = {}
  result = set()
  for line in _prose_lines(path.read_text(encoding='utf-8')):
    match = _HEADING.match(line)
    if not match:
      continue
    anchor = github_anchor(match.group(2))
    count = seen.get(anchor, 0)
    seen[anchor] = count + 1
    result.add(anchor if count == 0 else f'{anchor}-{count}')
  return result


def relative_links(path):
  """The link targets in a markdown file's prose that are not URLs."""
  targets = []
  for line in _prose_lines(path.read_text(encoding='utf-8')):
    for target in _LINK.findall(_CODE_SPAN.sub('', line)):
      if not re.match(r'^[a-z][a-z0-9+.-]*:', target):
        targets.append(target)
  return targets


def broken_links(path):
  """'file: target (why)' for every relative link of a markdown file that does not resolve."""
  problems = []
  for target in relative_links(path):
    file_part, _, anchor = target.partition('#')
    linked = (path.parent / file_part).resolve() if file_part else path
    if not linked.exists():
      problems.append(f'{path.name}: {target} (no such file)')
    elif anchor and linked.suffix == '.md' and anchor not in anchors(linked):
      problems.append(f'{path.name}: {target} (no heading #{anchor})')
  return problems


def _documentation_files():
  return [ROOT / 'README.md'] + sorted((ROOT / 'docs').glob('*.md'))


@pytest.mark.parametrize('path', _documentation_files(), ids=lambda p: p.name)
def test_every_relative_link_and_anchor_resolves(path):
  assert broken_links(path) == []


def test_anchors_follow_github_rules():
  assert github_anchor('Two procedures: clean and released') == (
      'two-procedures-clean-and-released')
  assert github_anchor("7.1 Walk level (sge-jax's addition)") == (
      '71-walk-level-sge-jaxs-addition')
  assert github_anchor('Disagreements with AUTHORS_CODE.md') == (
      'disagreements-with-authors_codemd')
  assert github_anchor('Generic skeleton `.npz` (`data.format=npz`)') == (
      'generic-skeleton-npz-dataformatnpz')


def test_a_missing_file_or_heading_is_reported(tmp_path):
  (tmp_path / 'other.md').write_text('# Present\n\n## Twice\n\n## Twice\n')
  page = tmp_path / 'page.md'
  page.write_text('# Page\n\n[ok](other.md#present) [ok](other.md#twice-1) [ok](#page)\n'
                  '[bad](other.md#absent) [bad](missing.md) `[code](missing.md)`\n'
                  '[web](https://example.org/x.md)\n\n```\n[fenced](missing.md)\n```\n')
  assert broken_links(page) == ['page.md: other.md#absent (no heading #absent)',
                                'page.md: missing.md (no such file)']
