"""Stage 04: the blinded reader study.

Reads: ``patches/lesion.zarr``, ``synthetic/*.zarr``. Writes: ``reader_study/case_set/`` (what
readers see), ``reader_study/key/`` (the truth), ``reader_study/ratings/*.jsonl`` (machine
observers here; people through the rating page), ``reader_study/access/`` (invitations), ``reader_study/figures/``.
Exports: ``case_set.build_case_set``, ``sampling``, ``machine_observers.run_machine_observers``,
``machine_cnn``, ``rating_app`` and ``rating_server`` (the page and its server), ``session`` (one
reader's session), ``invitations`` and ``readers_cli`` (``mammo-readers``), ``files/`` (the
study files, read and written only there), ``figures``.
"""
