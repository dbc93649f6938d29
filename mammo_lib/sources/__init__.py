"""Mammograms and their annotations, whatever collection they come from.

Reads: a collection folder in its download layout (OMI-DB, CBIS-DDSM, VinDr-Mammo, INbreast,
mini-MIAS, OMI-DB-like) or writes the built-in phantom into ``<run>/phantom/``.
Exports: ``collection.open_collection``, ``collection.source_folder``, ``records`` (the record
types every reader produces), ``dicom_io`` (reading, FOR PROCESSING / MONOCHROME1 handling),
``images`` (decoding, breast mask), ``phantom.generate_phantom``, ``lesion_classes``;
``formats/`` holds one module per layout.
"""
