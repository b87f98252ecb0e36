"""sge-jax: self-supervised gait encoding with locality awareness (CAGEs) in JAX/Flax.

The Python API (README "Python API"), loaded on first use so that ``import
sge_jax`` stays light (no JAX)::

  encoder = sge_jax.load_encoder('runs/demo')    # a finished run's encoders
  cages = encoder.encode(sequences)              # [N, f, J, 3] m -> [N, f, D]
  saved = sge_jax.load_encodings('runs/demo/encodings.npz')

``load_encoder``: ``sge_jax.encode.api``; ``load_encodings``:
``sge_jax.encode.encodings`` (the file format).
"""

__version__ = '0.1.0'

__all__ = ['load_encoder', 'load_encodings']


def __getattr__(name: str):
  if name == 'load_encoder':
    from sge_jax.encode.api import load_encoder  # pylint: disable=import-outside-toplevel
    return load_encoder
  if name == 'load_encodings':
    from sge_jax.encode.encodings import load_encodings  # pylint: disable=import-outside-toplevel
    return load_encodings
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__() -> list[str]:
  return sorted(list(globals()) + __all__)
