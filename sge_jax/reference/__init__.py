"""Checks against an independent implementation's values, and the mapping
between the authors' TF-layout arrays and sge-jax's parameter tree."""
