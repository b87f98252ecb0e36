"""Test configuration: two host CPU devices, so multi-device code runs on CI;
one XLA compilation cache for the whole session."""

import atexit
import os
import shutil
import tempfile

# Must happen before jax is imported anywhere: the device count is fixed at start-up.
# The suite is dominated by XLA compile time on tiny models; LLVM optimisation
# level 0 halves it and changes no result beyond float rounding.
_TEST_XLA_FLAGS = {'--xla_force_host_platform_device_count': '2',
                   '--xla_backend_optimization_level': '0'}
for _flag, _value in _TEST_XLA_FLAGS.items():
  if _flag not in os.environ.get('XLA_FLAGS', ''):
    os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '')
                               + f' {_flag}={_value}').strip()

# Many tests run the same tiny programs again, most of them in fresh processes
# (launch.py, the multi-process jobs), which compile everything anew. A
# persistent compilation cache, new for each session and shared through the
# environment with every subprocess, compiles each program once; a cache hit
# returns the same executable, so no result changes.
_COMPILATION_CACHE = tempfile.mkdtemp(prefix='sge-jax-tests-xla-cache-')
atexit.register(shutil.rmtree, _COMPILATION_CACHE, ignore_errors=True)
os.environ['JAX_COMPILATION_CACHE_DIR'] = _COMPILATION_CACHE
os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'

import jax  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

_BACKEND_COMPILES = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, duration, **kwargs: _BACKEND_COMPILES.append(event)
    if event == '/jax/core/compile/backend_compile_duration' else None)


@pytest.fixture
def compile_counter():
  """Returns a function giving the number of XLA compilations since the test
  began. The persistent cache is off meanwhile: a cache hit is not counted as
  a compilation, so with it a recompilation could go unseen."""
  jax.config.update('jax_enable_compilation_cache', False)
  start = len(_BACKEND_COMPILES)
  yield lambda: len(_BACKEND_COMPILES) - start
  jax.config.update('jax_enable_compilation_cache', True)


# The files whose tests run longest (real multi-process jobs, kills, the seed
# stack), in that order, before every other file. With pytest-xdist's work
# stealing the suite ends when the slowest worker does: started last, one of
# these keeps a worker busy long after the other has run out of tests.
_LONGEST_FIRST = (
    'tests/distributed/test_many_processes.py',
    'tests/train/test_resilience.py',
    'tests/test_seeds_at_once.py',
    'tests/train/test_seed_stack.py',
)


def pytest_collection_modifyitems(config, items):
  del config  # Unused.
  rank = {path: index for index, path in enumerate(_LONGEST_FIRST)}
  # A stable sort: the tests of one file keep their order.
  items.sort(key=lambda item: rank.get(item.nodeid.split('::')[0],
                                       len(rank)))
