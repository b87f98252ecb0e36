"""Preprocessing the original KGBD, BIWI, IAS-Lab and KS20 downloads.

``python -m sge_jax.preprocess --dataset=KGBD --raw=PATH --out=Datasets --length=6``
writes the authors' preprocessed layout (docs/method.md §2.2) that the project's loaders
read, plus ``manifest.json`` saying what was read, dropped and written. See
``pipeline`` for the layouts and splits and the reader modules (``kgbd``,
``biwi_ias``, ``ks20``) for the raw formats and what is assumed about them.
"""

from sge_jax.preprocess.pipeline import DATASETS, Result, run
