"""The paper's six-option confidence scale and the ratings-file format shared by the reader
study (stage 04, which writes ratings) and the ROC analysis (stage 05, which reads them).

Options are numbered 1-6 in the order readers see them (keys 1-6); the mapped value is the
reader's probability that the patch is REAL, as in the paper (0.95 = extremely confident real).
For ROC analysis the positive class is therefore "real".

A ratings file is JSON Lines, one answer per line, appended and flushed as it is given:

    {"reader": "R01", "reader_kind": "human", "case_set_id": "...", "case_id": "c3f9...",
     "option": 2, "label": "moderately confident real", "value": 0.77,
     "shown_at": "2026-11-24T10:00:00.123+00:00", "answered_at": "...",
     "event": "answer", "app_version": "0.1.0"}

``event`` is "answer" for a first answer and "revise" when the reader went back and changed
it; the analysis uses the last line per case and reports how many were revised.
``reader_kind`` is "human" or "machine" (the machine observer).
"""

from __future__ import annotations

OPTIONS: tuple[tuple[int, str, float], ...] = (
    (1, "extremely confident real", 0.95),
    (2, "moderately confident real", 0.77),
    (3, "slightly confident real", 0.59),
    (4, "slightly confident synthetic", 0.41),
    (5, "moderately confident synthetic", 0.23),
    (6, "extremely confident synthetic", 0.05),
)
OPTION_VALUE = {number: value for number, _, value in OPTIONS}
OPTION_LABEL = {number: label for number, label, _ in OPTIONS}
VALUE_TO_OPTION = {value: number for number, _, value in OPTIONS}
THRESHOLD = 0.5  # accuracy threshold of the paper: value > 0.5 means "called real"
POSITIVE_TRUTH = "real"  # the class the mapped value is a probability of
TRUTHS = ("real", "synthetic")
READER_KINDS = ("human", "machine")
RATING_FIELDS = (
    "reader", "reader_kind", "case_set_id", "case_id", "option", "label", "value",
    "shown_at", "answered_at", "event", "app_version",
)


def option_value(option: int) -> float:
    """Mapped probability-of-real for an option number 1-6 (ValueError otherwise)."""
    try:
        return OPTION_VALUE[int(option)]
    except (KeyError, ValueError, TypeError):
        raise ValueError(f"rating option {option!r} is not on the six-option scale 1-6") from None


def value_to_option(value: float) -> int:
    """The option whose mapped value is nearest ``value`` (a machine observer's probability)."""
    return min(OPTIONS, key=lambda o: abs(o[2] - float(value)))[0]
