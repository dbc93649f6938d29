"""The study as a whole: running it, recording it, reporting it, checking it reruns.

Reads and writes: a run folder's ``run.json``, ``timings.json``, executed notebooks, ``report/``,
``verify.json``, ``logs/``.
Exports: ``runner.run_study`` (``mammo-study``), ``parameters`` (typed parameters and their
ranges), ``settings`` (what a rerun inherits), ``state`` (what each stage owns, digests,
staleness), ``study.run_stage``, ``provenance`` (run.json), ``results``, ``report.build_report``,
``verify.verify_run``.
"""
