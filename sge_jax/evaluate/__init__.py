"""The evaluate stage: recognition network, protocols A/B/CME, baselines,
results files, report and plots.

Entry: ``evaluate_run(run_settings, encoding_set, workdir)`` (``stage.py``);
``python -m sge_jax.evaluate --workdir=DIR`` re-evaluates a finished run.
"""

from sge_jax.evaluate.stage import aggregate_seed_results, evaluate_run
