"""A reader's session through a case set (stage 04, the reading side): practice cases with
feedback, the reader's own case order, answers appended to ``ratings/<reader>.jsonl`` the moment
they are given, going back to revise, and resuming at the first unanswered case.

No widgets here: the rating page (:mod:`mammo_lib.reader_study.rating_app`) drives a session, and so do the
tests. The session opens only the case set and the reader's own ratings file, never the key.

One live session per reader: a :class:`ReaderLock` (``ratings/.<reader>.lock``, a session id and a
heartbeat) tells a second window that the reader is open elsewhere, which may take over; the
window that lost the lock stops (:class:`SessionTakenOver`) before writing anything. The ratings
file is re-read before every write, so a case another window has just answered is never
answered again as ``answer``.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from mammo_lib import rating_scale
from mammo_lib.clock import now_iso
from mammo_lib.fileio import atomic_write_text
from mammo_lib.reader_study.files import (
    CaseSet,
    RatingsWriter,
    ReaderStudyError,
    make_record,
    read_ratings,
    validate_reader_id,
)


class SessionTakenOver(ReaderStudyError):
    """This window's session lost its lock: the reader continued in another window."""


def _alive(info: dict) -> bool:
    """False only when the lock's kernel ran on this host and its process is gone."""
    if info.get("host") != socket.gethostname() or not isinstance(info.get("pid"), int):
        return True
    try:
        os.kill(info["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ReaderLock:
    """Who holds a reader right now: ``ratings/.<reader>.lock`` = {session, heartbeat (Unix s),
    host, pid of the kernel}.

    A lock is free when its heartbeat is older than ``stale_s`` seconds (its window was closed and
    its kernel shut down) or its kernel process on this host no longer exists (a crash or a
    restarted server). Parameters: ``ratings_dir`` (path), ``reader_id`` (str), ``stale_s``
    (seconds), ``clock`` (seconds since the epoch, for tests).
    """

    def __init__(self, ratings_dir: str | Path, reader_id: str, stale_s: float = 30.0,
                 clock: Callable[[], float] = time.time):
        self.path = Path(ratings_dir) / f".{validate_reader_id(reader_id)}.lock"
        self.session = uuid.uuid4().hex
        self.stale_s = stale_s
        self.clock = clock

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def held(self) -> bool:
        """True while this session owns the lock."""
        return self._read().get("session") == self.session

    def other_live(self) -> bool:
        """True when another session holds the lock and its heartbeat is fresh."""
        info = self._read()
        fresh = self.clock() - float(info.get("heartbeat", 0)) < self.stale_s
        return bool(info) and info.get("session") != self.session and fresh and _alive(info)

    def acquire(self, take_over: bool = False) -> bool:
        """Take the lock unless another live session holds it (``take_over``: take it anyway)."""
        if self.other_live() and not take_over:
            return False
        self.beat(force=True)
        return True

    def beat(self, force: bool = False) -> bool:
        """Refresh the heartbeat if this session still holds the lock (or ``force``)."""
        if not force and not self.held():
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps({"session": self.session, "heartbeat": self.clock(),
                                                 "host": socket.gethostname(), "pid": os.getpid()}))
        return True

    def release(self) -> None:
        """Remove the lock if this session holds it."""
        if self.held():
            self.path.unlink(missing_ok=True)


class ReadingSession:
    """One reader's progress through a case set (no widgets: the app drives it, tests too).

    Practice cases come first (feedback, not written to the ratings file), unless the reader
    already answered scored cases. Then the reader's own order; answering moves to the first
    unanswered case; ``go_back`` shows the previous case again so its answer can be revised.
    """

    def __init__(self, case_set: CaseSet, reader_id: str, reader_kind: str = "human",
                 double_answer_guard_s: float = 0.3, clock: Callable[[], float] = time.monotonic,
                 lock: ReaderLock | None = None):
        self.case_set = case_set
        self.lock = lock
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
        self.shown_at = now_iso("milliseconds")
        self.shown_clock = clock()
        self.revising = False
        self.ignored = 0
        self.conflicts = 0
        self.revising = False
        self.returning = bool(self.answers)  # this reader had answered before this session

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
        self.shown_at = now_iso("milliseconds")
        self.shown_clock = self.clock()
        self.revising = not self.in_practice and self.current_id in self.answers

    def refresh(self) -> None:
        """Re-read this reader's ratings file (another window may have written to it)."""
        self.answers = read_ratings(self.path, self.case_set).last_per_case()

    # -- actions
    def answer(self, shown_id: str | None, option: int) -> dict | None:
        """Record ``option`` for the case ``shown_id`` and move on.

        Parameters
        ----------
        shown_id : str or None
            The case (or practice) id the page showed when the answer was given.
        option : int
            1-6.

        Returns
        -------
        dict or None
            The written record (for practice, ``{"practice": truth, "called": ..., "correct": ...}``),
            or None when the answer is ignored: it is for a case no longer shown, it came within
            the double-answer guard after the case appeared (a double click, a bounced key), or
            another window of this reader answered the case meanwhile (``conflicts`` counts those;
            the session moves to the first unanswered case).

        Raises
        ------
        SessionTakenOver
            If this session's lock was taken by another window (nothing is written).
        ValueError
            If ``option`` is not 1-6.
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
            truth = self.case_set.practice_truth(shown_id)
            called = "real" if rating_scale.option_value(option) > rating_scale.THRESHOLD else "synthetic"
            self.practice_index += 1
            self._mark_shown()
            return {"practice": truth, "called": called, "correct": truth == called}
        if self.lock is not None and not self.lock.held():
            raise SessionTakenOver(f"reader {self.reader_id} continued in another window; this one has stopped")
        self.refresh()
        if shown_id in self.answers and not self.revising:  # answered in another window meanwhile
            self.conflicts += 1
            self.index = self.first_unanswered()
            self._mark_shown()
            return None
        event = "revise" if shown_id in self.answers else "answer"
        record = make_record(self.reader_id, self.reader_kind, self.case_set.case_set_id,
                             shown_id, option, self.shown_at, event=event)
        self.writer.append(record)
        if self.lock is not None:
            self.lock.beat()
        self.answers[shown_id] = record
        self.index = self.first_unanswered()
        self._mark_shown()
        return record

    def welcome_text(self) -> str:
        """"New reader ..." or "Welcome back ..., k of N done" (plain text)."""
        if self.returning:
            return (f"Welcome back, {self.reader_id}: {self.n_answered} of {self.n_cases} done; "
                    "continuing where you stopped.")
        return f"New reader {self.reader_id}: {self.n_cases} cases to rate."

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
