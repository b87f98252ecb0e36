"""``python -m sge_jax.preprocess``: arguments, progress, summary, errors."""

import json
import os
import subprocess
import sys

import pytest

from tests.fixtures import preprocess as fixtures
from sge_jax.errors import DataError
from sge_jax.preprocess import __main__ as cli


def test_cli_writes_data_and_reports_where_the_manifest_is(tmp_path, capsys):
  fixture = fixtures.write_kgbd(str(tmp_path))
  out = str(tmp_path / 'Datasets')
  args = ['--dataset=KGBD', f'--raw={fixture.raw}', f'--out={out}',
          '--length=4', '--seed', '7']
  assert cli.main(args) == 0
  printed = capsys.readouterr().out
  assert 'Person 15: 3 of 3 recording(s) read' in printed  # progress
  manifest_path = os.path.join(out, 'KGBD', '4', 'manifest.json')
  assert f'manifest: {manifest_path}' in printed
  assert 'cages/test:' in printed and 'spc_mgr/probe:' in printed
  assert '1 non-numeric value' in printed
  with open(manifest_path) as f:
    manifest = json.load(f)
  assert manifest['seed'] == 7 and manifest['length'] == 4
  assert os.path.exists(os.path.join(out, 'spc_mgr', 'KGBD', '4',
                                     'manifest.json'))

  # A second run refuses to mix with the first unless told to replace it.
  with pytest.raises(DataError, match='--overwrite'):
    cli.main(args)
  capsys.readouterr()
  assert cli.main(args + ['--overwrite', '--quiet']) == 0
  assert 'Person 15' not in capsys.readouterr().out


def test_cli_missing_raw_folder(tmp_path):
  with pytest.raises(DataError, match='does not exist') as error:
    cli.main(['--dataset=BIWI', f'--raw={tmp_path / "missing"}',
              f'--out={tmp_path / "out"}'])
  assert 'Testing/Still/<person>' in str(error.value)


@pytest.mark.parametrize('below', ['', 'sub'])
def test_out_that_is_or_lies_under_a_file_is_one_line_exit_2(tmp_path, below):
  fixture = fixtures.write_kgbd(str(tmp_path))
  a_file = tmp_path / 'a_file'
  a_file.write_text('x')
  completed = subprocess.run(
      [sys.executable, '-m', 'sge_jax.preprocess', '--dataset=KGBD',
       f'--raw={fixture.raw}', f'--out={a_file / below}', '--quiet'],
      capture_output=True, text=True, check=False, timeout=120)
  assert completed.returncode == 2, completed.stderr
  assert completed.stderr.startswith('error: --out=') and 'is a file' in completed.stderr
  assert 'Traceback' not in completed.stderr


def test_cli_rejects_unsupported_length(tmp_path):
  with pytest.raises(SystemExit) as e:
    cli.main(['--dataset=IAS', f'--raw={tmp_path}', '--length=5'])
  assert e.value.code == 2


def test_module_entry_point():
  completed = subprocess.run(
      [sys.executable, '-m', 'sge_jax.preprocess', '--help'],
      capture_output=True, text=True, check=False,
      cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
  assert completed.returncode == 0
  assert '--dataset {KGBD,BIWI,IAS,KS20}' in completed.stdout
