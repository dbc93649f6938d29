"""mammo_lib: the helper library of mammo-synth-study.

One module per stage of the study, data flowing one way through a run folder:

- ``records``, ``dicom_io`` (+ ``dicom_checks``), ``images``, ``phantom``, ``datasets`` (+ ``readers.*``, one per
  collection layout): mammograms and their annotations
- ``patch_store``: the chunked (zarr) patch store + manifest every stage reads and writes
- ``patches``: stage 01, lesion and normal-tissue patch extraction (Dask); ``patch_core`` the
  per-image rules, ``patch_tasks`` one Dask task, ``extraction_schema`` its JSON,
  ``reference_manifest`` the rerun check, ``extraction_report`` notebook 01's text and figures
- ``dcgan``, ``dcgan_training``: stage 02, the DCGAN, its training and synthesis
  (``dcgan_session`` one training session and its iteration, ``dcgan_config`` settings, ``dcgan_extras`` data-efficient training options,
  ``dcgan_synthesis`` synthetic patches, ``dcgan_files`` file formats, ``dcgan_rng`` random
  streams, ``dcgan_figures`` figures)
- ``generator_contract``, ``generator_sources``, ``generators``: stage 02's ``generators``
  parameter, any source of synthetic patches (folder, TorchScript, medigan) as ``synthetic/<name>.zarr``
- ``feature_space``, ``feature_space_rng``, ``patch_arrays``, ``tsne_affinity``, ``tsne``,
  ``tsne_kernels`` (the fused numba gradient), ``tsne_torch``, ``tsne_readability`` (what a t-SNE
  picture can show), ``lesion_cnn``, ``random_cnn`` (an untrained embedding), ``neighbours``,
  ``realism_metrics`` (+ ``metric_estimates``, ``memorisation``), ``feature_space_plots``,
  ``feature_space_results``, ``feature_space_tables``: stage 03, t-SNE and realism metrics per
  generator; ``c2st`` (+ ``c2st_observer`` the network, ``c2st_stats`` folds, AUC and p-value),
  ``c2st_study`` (every generator with the null and positive controls and the frequency sweep),
  ``c2st_records``, ``c2st_figures``: the CNN two-sample test, the study's realism verdict
- ``study_files``: the reader study's files (case set, key, ratings JSONL), read and written here only
- ``reader_study``, ``reader_study_figures``, ``machine_observer``: stage 04, building the blinded
  case set and its figures, the machine observers (one per generator); ``case_sampling`` which
  store rows become cases (the synthetic half split across generators); ``reading_session``, ``rating_app``,
  ``rating_server``: a reader's session, the rating page and its Voila server; ``invitations``,
  ``readers_cli``: readers' links and the coordinator's ``mammo-readers`` command
- ``auc_stats``, ``reader_stats``, ``roc``, ``roc_figures``, ``mrmc``, ``mrmc_export``: stage 05,
  AUC statistics, per-reader statistics, the analysis and its figures, the Obuchowski-Rockette
  MRMC analysis, exports for iMRMC / RJafroc / MRMCaov; ``roc_generators`` per generator
  statistics and the MRMC with the generator as modality
- ``runner`` (the study runner), ``parameters`` (typed notebook parameters), ``provenance``
  (``run.json`` and ``timings.json``), ``run_results`` (each stage's headline figures),
  ``report``, ``report_sections`` (the study report), ``verify`` (bitwise rerun check)
- ``run_folder`` (the run-folder layout), ``fileio`` (atomic writes, JSON, digests), ``rng`` (random
  streams keyed by seed and purpose),
  ``progress`` (progress bars), ``plotting``, ``lesion_classes``, ``rating_scale``: shared
  plumbing; ``testing``: small synthetic fixtures for tests and benchmarks (never study data)

Data flows one way: each stage reads what earlier stages wrote in the run folder and writes its
own folder; no module imports a later stage (a test walks the imports and finds no cycle).
"""

__version__ = "0.1.0"
