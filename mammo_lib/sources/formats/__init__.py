"""One reader per collection layout, each turning a folder into a :class:`~mammo_lib.sources.records.Collection`.

:func:`mammo_lib.sources.collection.open_collection` picks the reader by ``source_kind``; each reader module
documents the folder layout it expects. Readers read annotations and DICOM headers only, never
pixels. ``common`` holds what several readers share.
"""
