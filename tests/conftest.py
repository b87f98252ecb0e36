"""Test configuration: two host CPU devices, so multi-device code runs on CI."""

import os

# Must happen before jax is imported anywhere: the device count is fixed at start-up.
# The suite is dominated by XLA compile time on tiny models; LLVM optimisation
# level 0 halves it and changes no result beyond float rounding.
_TEST_XLA_FLAGS = {'--xla_force_host_platform_device_count': '2',
                   '--xla_backend_optimization_level': '0'}
for _flag, _value in _TEST_XLA_FLAGS.items():
  if _flag not in os.environ.get('XLA_FLAGS', ''):
    os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '')
                               + f' {_flag}={_value}').strip()

import jax  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

_BACKEND_COMPILES = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, duration, **kwargs: _BACKEND_COMPILES.append(event)
    if event == '/jax/core/compile/backend_compile_duration' else None)


@pytest.fixture
def compile_counter():
  """Returns a function giving the number of XLA compilations since the test began."""
  start = len(_BACKEND_COMPILES)
  return lambda: len(_BACKEND_COMPILES) - start
