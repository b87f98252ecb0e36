"""``python -m sge_jax.reference FILE``: one training step against an independent
implementation's values (``sge_jax.reference.check_reference``)."""

from sge_jax import cli
from sge_jax.reference.check_reference import main

if __name__ == '__main__':
  cli.exit_on_user_error(main)
