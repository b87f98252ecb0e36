"""encodings.npz: damaged or inconsistent files are one clear error naming the field."""

import dataclasses

import numpy as np
import pytest

from sge_jax.encode import encodings as encodings_lib
from sge_jax.errors import DataError
from tests.fixtures.encodings import tiny_encoding_set


def test_round_trip(tmp_path):
  encodings_lib.save_encodings(tmp_path / 'e.npz', tiny_encoding_set())
  loaded = encodings_lib.load_encodings(tmp_path / 'e.npz')
  np.testing.assert_array_equal(loaded.labels, [1, 1, 2, 2])


def test_the_file_says_how_it_was_made_also_when_clean(tmp_path):
  described = dataclasses.replace(
      tiny_encoding_set().metadata, normalization='center',
      sequence_units='metres, each sequence centred on its mean position',
      source_run='/runs/source', source_config_hash='abc')
  encoding_set = dataclasses.replace(tiny_encoding_set(), metadata=described)
  encodings_lib.save_encodings(tmp_path / 'e.npz', encoding_set)
  with np.load(tmp_path / 'e.npz') as data:
    assert str(data['procedure']) == 'clean'     # written also for 'clean'
    assert data['quirks'].shape == (0,)
    assert str(data['sequence_units']).startswith('metres, each sequence')
  assert encodings_lib.load_encodings(tmp_path / 'e.npz').metadata == described


def test_files_without_the_newer_fields_still_load(tmp_path):
  path = _rewritten(tmp_path)
  with np.load(path) as data:
    arrays = {name: data[name] for name in data.files}
  for name in ('procedure', 'quirks', 'data_source', 'normalization',
               'sequence_units', 'source_run', 'source_config_hash'):
    arrays.pop(name, None)
  np.savez(path, **arrays)
  meta = encodings_lib.load_encodings(path).metadata
  assert (meta.procedure, meta.quirks, meta.normalization, meta.sequence_units,
          meta.source_run, meta.source_config_hash) == ('clean', (), '', '',
                                                        '', '')


@pytest.mark.parametrize('damage', ['random', 'truncated', 'empty'])
def test_damaged_files_name_the_file(tmp_path, damage):
  path = tmp_path / 'encodings.npz'
  encodings_lib.save_encodings(path, tiny_encoding_set())
  data = path.read_bytes()
  path.write_bytes({'random': np.random.default_rng(0).bytes(4000),
                    'truncated': data[:len(data) // 2], 'empty': b''}[damage])
  with pytest.raises(DataError, match='truncated or corrupt') as error:
    encodings_lib.load_encodings(path)
  assert str(path) in str(error.value) and '\n' not in str(error.value)


def test_arrays_of_different_lengths_name_the_field(tmp_path):
  path = tmp_path / 'encodings.npz'
  encodings_lib.save_encodings(path, tiny_encoding_set())
  with np.load(path) as data:
    arrays = {name: data[name] for name in data.files}
  arrays['labels'] = arrays['labels'][:3]
  np.savez(path, **arrays)
  with pytest.raises(DataError, match="field 'labels' has shape"):
    encodings_lib.load_encodings(path)


@pytest.mark.parametrize('field', ['recording', 'labels'])
def test_non_integer_ids_name_the_field(tmp_path, field):
  # Float recording ids would merge walks when cast (0.5 -> 0): refused.
  path = tmp_path / 'encodings.npz'
  encodings_lib.save_encodings(path, tiny_encoding_set())
  with np.load(path) as data:
    arrays = {name: data[name] for name in data.files}
  arrays[field] = arrays[field] + 0.5
  np.savez(path, **arrays)
  with pytest.raises(DataError, match=f"field '{field}' must be an integer"):
    encodings_lib.load_encodings(path)


def _rewritten(tmp_path, **changes):
  path = tmp_path / 'encodings.npz'
  encodings_lib.save_encodings(path, tiny_encoding_set())
  with np.load(path) as data:
    arrays = {name: data[name] for name in data.files}
  arrays.update(changes)
  np.savez(path, **arrays)
  return path


@pytest.mark.parametrize('changes, message', [
    ({'sequences': np.full((4, 3, 20, 3), 'x')},
     "field 'sequences' must be a float array with 4 dimension(s), not <U1"),
    ({'split': np.arange(4)},
     "field 'split' must be a string array with 1 dimension(s), not int64"),
    ({'sequence_index': np.zeros(4)},
     "field 'sequence_index' must be an integer array"),
    ({'length': np.asarray('three')},
     "field 'length' must be an integer array with 0 dimension(s)"),
    ({'dataset': np.asarray(['X', 'Y'])},
     "field 'dataset' must be a string array with 0 dimension(s)"),
    ({'sequences': np.zeros((4, 5, 20, 3), np.float32)},
     "field 'sequences' has shape (4, 5, 20, 3), not [4, 3, J, 3]"),
    ({'bones': np.zeros((2, 3), np.int64)},
     "field 'bones' has shape (2, 3), not [n, 2]"),
    ({'bones': np.array([[0, 25]])},
     "field 'bones' holds joint indices outside 0..19"),
    ({'joint_names': np.array(['a', 'b'])},
     "field 'joint_names' names 2 joints, the sequences have J=20"),
    ({'encodings': np.full((4, 3, 6), np.nan, np.float32)},
     "field 'encodings' holds NaN or Inf values"),
    ({'normalization': np.asarray(3)},
     "field 'normalization' must be a string array with 0 dimension(s)"),
    ({'source_run': np.asarray(['a', 'b'])},
     "field 'source_run' must be a string array with 0 dimension(s)"),
])
def test_every_field_is_checked_before_use(tmp_path, changes, message):
  path = _rewritten(tmp_path, **changes)
  with pytest.raises(DataError) as error:
    encodings_lib.load_encodings(path)
  assert str(error.value).startswith(f'{path}: {message}')
  assert 'rebuild it with --config.stages=encode' in str(error.value)


def test_arrays_larger_than_memory_are_refused_unread(tmp_path, monkeypatch):
  from sge_jax.data import memory
  monkeypatch.setattr(memory, 'available_bytes',
                      lambda: (1000, 'available on this machine'))
  path = _rewritten(tmp_path)
  with pytest.raises(DataError, match=r'^Reading .*encodings.npz needs at least '
                     r'[\d.]+ KiB of memory \(an estimate\), more than the '
                     r'0.977 KiB available on this machine. Evaluate on a '
                     r'machine with more memory.$'):
    encodings_lib.load_encodings(path)
