"""Re-identification metrics with NumPy in and out (public API).

The implementation lives in ``sge_jax.evaluate.metrics``; this module keeps the
documented import path ``sge_jax.metrics`` working.
"""

from sge_jax.evaluate.metrics import (  # noqa: F401
    METRICS, MeanAveragePrecision, RetrievalCMC, class_indices, cmc,
    confusion_matrix, iter_pairwise_distances, mean_average_precision,
    micro_roc, nauc, nearest_neighbour_predict, pairwise_distances, rank_k,
    ranked_retrieval, retrieval_cmc, retrieval_cmc_and_map, true_class_ranks)
