"""A reader's session through a case set (stage 04, the reading side): practice cases with
feedback, the reader's own case order, answers appended to ``ratings/<reader>.jsonl`` the moment
they are given, going back to revise, and resuming at the first unanswered case.

No widgets here: the rating page (:mod:`mammo_lib.rating_app`) drives a session, and so do the
tests. The session opens only the case set and the reader's own ratings file, never the key.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from mammo_lib import rating_scale
from mammo_lib.study_files import (
    CaseSet,
    RatingsWriter,
    ReaderStudyError,
    make_record,
    now_iso,
    read_ratings,
    validate_reader_id,
)


class ReadingSession:
    """One reader's progress through a case set (no widgets: the app drives it, tests too).

    Practice cases come first (feedback, not written to the ratings file), unless the reader
    already answered scored cases. Then the reader's own order; answering moves to the first
    unanswered case; ``go_back`` shows the previous case again so its answer can be revised.
    """

    def __init__(self, case_set: CaseSet, reader_id: str, reader_kind: str = "human",
                 double_answer_guard_s: float = 0.3, clock: Callable[[], float] = time.monotonic):
        self.case_set = case_set
        self.reader_id = validate_reader_id(reader_id)
        self.reader_kind = reader_kind
        self.order = case_set.reader_order(self.reader_id)
        self.path = case_set.ratings_path(self.reader_id)
        log = read_ratings(self.path, case_set)
        self.problems = log.problems
        self.answers: dict[str, dict] = log.last_per_case()
        self.writer = RatingsWriter(self.path)
        self.guard_s = double_answer_guard_s
        self.clock = clock
        self.practice_ids = list(case_set.practice["practice_id"])
        self.practice_index = 0 if (self.practice_ids and not self.answers) else len(self.practice_ids)
        self.index = self.first_unanswered()
        self.shown_at = now_iso()
        self.shown_clock = clock()
        self.ignored = 0

    # -- state
    @property
    def n_cases(self) -> int:
        return len(self.order)

    @property
    def in_practice(self) -> bool:
        return self.practice_index < len(self.practice_ids)

    @property
    def finished(self) -> bool:
        return not self.in_practice and self.index >= self.n_cases

    def first_unanswered(self) -> int:
        for i, cid in enumerate(self.order):
            if cid not in self.answers:
                return i
        return self.n_cases

    @property
    def current_id(self) -> str | None:
        """The id of what is shown now: a practice id, a case id, or None at the end."""
        if self.in_practice:
            return self.practice_ids[self.practice_index]
        return None if self.finished else self.order[self.index]

    def current_image(self) -> bytes:
        cid = self.current_id
        if cid is None:
            raise ReaderStudyError("all cases are answered; there is no current case")
        if self.in_practice:
            return self.case_set.practice_image_bytes(cid)
        return self.case_set.image_bytes(cid)

    def progress_text(self) -> str:
        if self.in_practice:
            return f"Practice case {self.practice_index + 1} of {len(self.practice_ids)} (not scored)"
        if self.finished:
            return f"All {self.n_cases} cases rated"
        return f"Case {self.index + 1} of {self.n_cases}"

    @property
    def n_answered(self) -> int:
        return len(self.answers)

    @property
    def can_go_back(self) -> bool:
        return not self.in_practice and self.index > 0 and self.order[self.index - 1] in self.answers

    def _mark_shown(self) -> None:
        self.shown_at = now_iso()
        self.shown_clock = self.clock()

    # -- actions
    def answer(self, shown_id: str | None, option: int) -> dict | None:
        """Record ``option`` for the case ``shown_id`` and move on.

        Returns the written record (or, for practice, ``{"practice": truth, ...}``), or None
        when the answer is ignored: it is for a case no longer shown, or it came within the
        double-answer guard after the case appeared (a double click or a bounced key).
        """
        option = int(option)
        rating_scale.option_value(option)
        if shown_id is None or shown_id != self.current_id:
            self.ignored += 1
            return None
        if self.clock() - self.shown_clock < self.guard_s:
            self.ignored += 1
            return None
        if self.in_practice:
            row = self.case_set.practice.loc[self.case_set.practice["practice_id"] == shown_id]
            truth = str(row["truth"].iloc[0])
            called = "real" if rating_scale.option_value(option) > rating_scale.THRESHOLD else "synthetic"
            self.practice_index += 1
            self._mark_shown()
            return {"practice": truth, "called": called, "correct": truth == called}
        event = "revise" if shown_id in self.answers else "answer"
        record = make_record(self.reader_id, self.reader_kind, self.case_set.case_set_id,
                             shown_id, option, self.shown_at, event=event)
        self.writer.append(record)
        self.answers[shown_id] = record
        self.index = self.first_unanswered()
        self._mark_shown()
        return record

    def go_back(self) -> bool:
        """Show the previous case again (its answer can be revised). False if there is none."""
        if self.finished and self.n_cases and self.order[-1] in self.answers:
            self.index = self.n_cases - 1
            self._mark_shown()
            return True
        if not self.can_go_back:
            return False
        self.index -= 1
        self._mark_shown()
        return True

    def previous_answer(self) -> dict | None:
        cid = self.current_id
        return None if self.in_practice or cid is None else self.answers.get(cid)

    def skip_practice(self) -> None:
        self.practice_index = len(self.practice_ids)
        self._mark_shown()
