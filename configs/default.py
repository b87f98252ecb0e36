"""The defaults: every field at the paper's values
(``sge_jax/config/fields.py`` lists each field with what it means).

Dataset configs (``kgbd.py``, ``biwi.py``, ...) start from ``base_config()`` and
override only what differs. Any field can be overridden on the command line, e.g.
``python launch.py --config=configs/kgbd.py --config.train.epochs=5``, and every
config takes variants after a colon: ``--config=configs/kgbd.py:smoke``.
"""

from sge_jax.config import get_config  # noqa: F401  (the config-file entry point)
