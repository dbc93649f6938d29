"""Stage 05: ROC analysis of the ratings.

Reads: ``reader_study/case_set/``, ``reader_study/key/``, ``reader_study/ratings/``. Writes:
``roc/metrics.json``, ``roc/exports/`` (iMRMC, RJafroc, MRMCaov), ``roc/figures/``, ``roc/timings.json``.
Exports: ``analysis.analyse_study``, ``reader_stats`` (per-reader AUC, sensitivity,
specificity), ``mrmc`` (Obuchowski-Rockette), ``mrmc_export``, ``by_generator``, ``figures``.
"""
