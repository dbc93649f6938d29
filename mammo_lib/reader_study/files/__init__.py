"""The reader study's files: the one place that reads, validates and appends them.

Stage 04 writes these files (:mod:`mammo_lib.reader_study.case_set` builds the case set, the rating page
and the machine observers append ratings); stage 05 (:mod:`mammo_lib.roc.analysis`) reads them. Layout
(``study_root`` is ``<run_dir>/reader_study`` by default; key and ratings are siblings of the
case set)::

  case_set/study.json       see :class:`StudyJson`
  case_set/cases.csv        case_id, image            (sorted by the opaque id: no order)
  case_set/cases/<id>.png   the patch, upscaled by ``display_scale`` (nearest neighbour)
  case_set/practice/        practice.csv (practice_id, image, truth) + PNGs: unscored, feedback
  key/key.csv               case_id, truth, store, patch_id, generator   (designer side only;
                            ``store`` is the patch store's folder name, e.g. ``lesion.zarr``;
                            ``generator`` names the synthetic case's generator, empty for real
                            cases; keys written before it read as one generator)
  key/held_out.csv          store, row, generator: patches kept out of the case set (machine
                            training; per generator)
  key/practice_sources.csv  practice_id, image, truth, store, patch_id, generator
  ratings/<reader>.jsonl    one JSON line per answer (format in mammo_lib.rating_scale),
                            append-only

One rule for damaged ratings lines: a line that is not a complete JSON object is an answer cut
off mid-write (a power cut, a killed server). It is skipped and reported ("incomplete last
line" when it ends the file, "damaged line" when later answers follow it, since the writer
starts its next answer on a new line); the case is asked again. A complete line that breaks the
format (a missing field, another case set, an unknown case, an option off the scale, a value or
label that does not match its option) is an error naming file:line, and the file is not changed.
"""

from mammo_lib.reader_study.files.case_set import (
    CASE_SET_DIRNAME,
    KEY_DIRNAME,
    RATINGS_DIRNAME,
    READER_ID_PATTERN,
    STUDY_DIRNAME,
    CaseSet,
    KeyedCaseSet,
    RatingsError,
    ReaderStudyError,
    StudyJson,
    default_case_set_dir,
    default_ratings_dir,
    load_case_set,
    load_key,
    open_case_set,
    relative_text,
    run_relative,
    stable_rng,
    study_paths,
    validate_reader_id,
)
from mammo_lib.reader_study.files.ratings import (
    LOAD_COLUMNS,
    REQUIRED_FIELDS,
    RatingsLoad,
    RatingsLog,
    RatingsWriter,
    load_ratings,
    make_record,
    ratings_files,
    ratings_table,
    read_ratings,
    reading_times,
    record_problem,
)

__all__ = [
    "CASE_SET_DIRNAME",
    "CaseSet",
    "KEY_DIRNAME",
    "KeyedCaseSet",
    "LOAD_COLUMNS",
    "RATINGS_DIRNAME",
    "READER_ID_PATTERN",
    "REQUIRED_FIELDS",
    "RatingsError",
    "RatingsLoad",
    "RatingsLog",
    "RatingsWriter",
    "ReaderStudyError",
    "STUDY_DIRNAME",
    "StudyJson",
    "default_case_set_dir",
    "default_ratings_dir",
    "load_case_set",
    "load_key",
    "load_ratings",
    "make_record",
    "open_case_set",
    "ratings_files",
    "ratings_table",
    "read_ratings",
    "reading_times",
    "record_problem",
    "relative_text",
    "run_relative",
    "stable_rng",
    "study_paths",
    "validate_reader_id",
]
