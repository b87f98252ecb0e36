"""sge-jax: self-supervised gait encoding with locality awareness (CAGEs) in JAX/Flax."""

__version__ = '0.1.0'
