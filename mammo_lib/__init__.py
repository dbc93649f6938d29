"""mammo_lib: the library of mammo-synth-study, one subpackage per stage, data flowing one way.

::

    sources/        mammograms and their annotations: collections in their download layouts
                    (formats/), DICOM reading and checks, images, records, the built-in phantom
    extract/        stage 01: lesion and normal-tissue patches (run folder: phantom/, patches/)
    generate/       stage 02: the DCGAN and imported generators (dcgan/, synthetic/)
    feature_space/  stage 03: the CNN two-sample test, t-SNE, realism metrics (feature_space/)
    reader_study/   stage 04: the blinded case set, machine observers, the rating page (reader_study/)
    roc/            stage 05: ROC, per-reader statistics, Obuchowski-Rockette MRMC (roc/)
    study/          the runner, parameters, run.json, staleness, the report, the rerun check

Shared plumbing, each the one home of its rule: ``run_folder`` (the run folder's layout),
``patch_store`` (the patch stores), ``fileio`` (atomic writes, JSON, digests), ``rng`` (every
random stream), ``clock`` (time stamps), ``timings`` (timings.json), ``progress`` (progress output),
``spectrum`` (the radial power spectrum's bins), ``plotting``,
``rating_scale`` (the six-point scale), ``auc_stats`` (AUC and DeLong), ``run_lock`` (one run
per folder), ``checkout`` (where notebooks/ and runs/ are), ``testing`` (fixtures for tests and
benchmarks, never study data).

A stage imports only earlier stages and the shared plumbing; the plumbing imports no stage
(the import-linter contract in pyproject.toml, run by the tests).
"""

__version__ = "0.1.0"
