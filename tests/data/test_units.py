"""Coordinates that are probably not metres are flagged, not silently trained on."""

import logging

import numpy as np
import pytest

from sge_jax.data import units
from sge_jax.data.authors_layout import load_authors_dataset
from sge_jax.data.authors_writer import write_authors_split
from sge_jax.data.dataset import SkeletonDataset, SkeletonSplit
from tests.fixtures.data import random_split


def _dataset(**scales):
  splits = {}
  for index, (name, scale) in enumerate(scales.items()):
    sequences, labels = random_split(index, [1, 2], 3, 6, 20)
    splits[name] = SkeletonSplit(sequences * scale, labels)
  return SkeletonDataset(name='X', length=6, splits=splits)


def test_metres_everywhere_give_no_warning():
  assert units.unit_warnings(_dataset(train=1.0, test=1.0)) == []


def test_millimetres_and_mixed_units_are_named():
  warnings = units.unit_warnings(_dataset(train=1.0, test=1000.0))
  assert any('split test' in w and 'millimetres' in w for w in warnings)
  assert any('differ in scale' in w and 'test' in w and 'train' in w
             for w in warnings)


def test_spread_is_the_median_rms_distance_from_the_centre():
  sequences = np.zeros((3, 2, 2, 3), np.float32)
  sequences[:, :, 1, 0] = 2.0              # two joints 2 m apart in x
  assert units.body_spread(sequences) == pytest.approx(1.0)


def test_integer_coordinate_files_are_warned_about(tmp_path, caplog):
  sequences, labels = random_split(0, [1, 2], 3, 6, 20)
  for train in (True, False):
    write_authors_split(tmp_path / 'X' / '6', 'X', 6, sequences, labels,
                        train=train, dataset_name='X')
  for path in (tmp_path / 'X' / '6').rglob('*_[xyz]_X_6.npy'):
    np.save(path, np.round(np.load(path) * 1000).astype(np.int32))
  with caplog.at_level(logging.WARNING):
    load_authors_dataset(tmp_path, 'X', 6)
  assert 'integer coordinates (int32)' in caplog.text
  assert 'source_x_X_6.npy' in caplog.text
