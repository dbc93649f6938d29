"""A reader study opened to other hospitals, in-process: invitations with hashed tokens
and the coordinator's command; one live window per reader (lock, take-over, no case answered
twice); returning readers; practice feedback on the practice patch. The same flows in a real
browser are in test_rating_page_study.py."""

from __future__ import annotations

import json

import pytest

from mammo_lib import testing
from mammo_lib.reader_study import case_set as rs
from mammo_lib.reader_study import files as sf
from mammo_lib.reader_study import invitations, readers_cli
from mammo_lib.reader_study.rating_app import RatingApp
from mammo_lib.reader_study.session import ReaderLock, ReadingSession, SessionTakenOver


@pytest.fixture
def case_set(tmp_path):
    testing.write_example_stores(tmp_path, 30, 30, size=16, seed=2)
    return rs.build_case_set(tmp_path, 4, 4, n_practice=2, seed=5, display_scale=2, min_held_out=5)


def _records(cs, reader):
    return [json.loads(line) for line in cs.ratings_path(reader).read_text().splitlines()]


# --------------------------------------------------------------------------- invitations
def test_tokens_are_unguessable_stored_hashed_and_outside_the_case_set(case_set):
    root = case_set.case_set_dir.parent
    tokens = invitations.add_readers(root, ["R01", "R02"])
    assert len(set(tokens.values())) == 2 and all(len(t) >= 32 for t in tokens.values())
    stored = invitations.registry_path(root).read_text()
    assert not any(t in stored for t in tokens.values())
    assert invitations.token_digest(tokens["R01"]) in stored
    assert invitations.registry_path(root).parent.name == "access"
    assert not any(t in p.read_bytes().decode(errors="replace") for p in case_set.case_set_dir.rglob("*")
                   if p.is_file() for t in tokens.values())
    assert invitations.reader_for_token(root, tokens["R02"]) == "R02"
    for bad, message in ((None, "personal link"), ("x" * 32, "not valid for this study"), ("", "personal link")):
        with pytest.raises(invitations.InvitationError, match=message):
            invitations.reader_for_token(root, bad)
    invitations.revoke_reader(root, "R02")
    with pytest.raises(invitations.InvitationError, match="withdrawn"):
        invitations.reader_for_token(root, tokens["R02"])
    with pytest.raises(invitations.InvitationError, match="was revoked on .* --reinstate"):
        invitations.add_readers(root, ["R02"], new_token=True)  # a new link does not undo a revocation
    again = invitations.add_readers(root, ["R02"], reinstate=True)
    assert invitations.reader_for_token(root, again["R02"]) == "R02"
    with pytest.raises(invitations.InvitationError, match="not valid"):
        invitations.reader_for_token(root, tokens["R02"])  # the revoked link never opens again
    history = invitations.load_registry(root)["R02"].history
    assert [h["event"] for h in history] == ["reinstated"] and history[0]["revoked_at"].startswith("20")


@pytest.mark.parametrize("bad, message", [
    ("machine-pixels", "reserved"), ("Machine-x", "reserved"), (" R03 ", "not valid"), ("r01", "only in upper/lower case"),
    ("R01", "already has an invitation"), ("a b", "not valid"), ("R05", "given twice"),
    ("r05", "given twice in this command \\(as 'R05'\\)")])
def test_reader_ids_that_cannot_be_invited(case_set, bad, message):
    root = case_set.case_set_dir.parent
    invitations.add_readers(root, ["R01"])
    before = invitations.registry_path(root).read_bytes()
    with pytest.raises(invitations.InvitationError, match=message):
        invitations.add_readers(root, ["R05", bad])
    assert invitations.registry_path(root).read_bytes() == before, "nothing written on a refusal"


def test_coordinator_command_add_list_revoke_progress(case_set, tmp_path, capsys):
    run = ["--run-dir", str(tmp_path)]
    assert readers_cli.main(["add", "R01", "R02", *run, "--host", "reader.example.org", "--port", "443",
                             "--scheme", "https"]) == 0
    out = capsys.readouterr().out
    links = [line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("  R0")]
    assert len(links) == 2 and links[0].startswith("https://reader.example.org:443/?reader=")
    token = links[0].split("reader=")[1]
    assert invitations.reader_for_token(case_set.case_set_dir.parent, token) == "R01"
    assert readers_cli.main(["add", "machine-spectrum", *run]) == 1
    assert "reserved" in capsys.readouterr().err
    assert readers_cli.main(["revoke", "R02", *run]) == 0
    readers_cli.main(["list", *run])
    listing = capsys.readouterr().out
    assert "R01" in listing and "active" in listing and "R02" in listing and "revoked" in listing
    session = ReadingSession(case_set, "R01", double_answer_guard_s=0)
    session.skip_practice()
    for option in (1, 6, 3):
        session.answer(session.current_id, option)
    table = readers_cli.progress_table(sf.open_case_set(case_set.case_set_dir))
    row = table.set_index("reader").loc["R01"]
    assert (row["answered"], row["of"], row["status"]) == (3, 8, "invited")
    assert row["last activity"].startswith("20") and row["median s per case"] >= 0
    assert table.set_index("reader").loc["R02", "status"] == "revoked"
    assert readers_cli.main(["progress", *run]) == 0
    assert "R01" in capsys.readouterr().out


# --------------------------------------------------------------------------- the page, in-process
def test_page_identifies_the_reader_by_the_token_alone(case_set):
    tokens = invitations.add_readers(case_set.case_set_dir.parent, ["R01"])
    refused = RatingApp(case_set.case_set_dir, token="not-a-token")
    assert refused.widget.children[-1] is refused.message_screen and "not valid" in refused.message.value
    assert RatingApp(case_set.case_set_dir).widget.children[-1].children[0].value.startswith("<h2>Reader study")
    app = RatingApp(case_set.case_set_dir, token=tokens["R01"], double_answer_guard_s=0)
    app.reader_text.value = "R02"  # typing has no effect: the token decides
    app.start_button.click()
    assert app.session.reader_id == "R01" and "New reader R01" in app.feedback.value


def test_typed_ids_refuse_machine_observers_and_case_clashes(case_set):
    app = RatingApp(case_set.case_set_dir, double_answer_guard_s=0)
    app.reader_text.value = "machine-pixels"
    app.start_button.click()
    assert app.session is None and "reserved for machine observers" in app.start_message.value
    first = ReadingSession(case_set, "R01", double_answer_guard_s=0)
    first.skip_practice()
    first.answer(first.current_id, 2)
    app.reader_text.value = " r01 "
    app.start_button.click()
    assert app.session is None and "only in upper/lower case" in app.start_message.value
    app.reader_text.value = "R01"
    app.start_button.click()
    assert "Welcome back, R01: 1 of 8 done" in app.feedback.value


def test_second_window_is_told_takes_over_and_nothing_is_answered_twice(case_set):
    a = RatingApp(case_set.case_set_dir, double_answer_guard_s=0)
    a.reader_text.value = "R01"
    a.start_button.click()
    a.session.skip_practice()
    a._show_current()
    a.option_buttons[0].click()
    b = RatingApp(case_set.case_set_dir, double_answer_guard_s=0)
    b.reader_text.value = "R01"
    b.start_button.click()
    assert b.widget.children[-1] is b.busy_screen and "open in another window" in b.busy_message.value
    b.take_over_button.click()
    assert b.progress.value == "Case 2 of 8"
    a.option_buttons[1].click()  # the first window lost the lock: it stops, nothing is written
    assert a.widget.children[-1] is a.message_screen and "Continued in another window" in a.message.value
    b.option_buttons[2].click()
    records = _records(case_set, "R01")
    assert [r["event"] for r in records] == ["answer", "answer"] and records[1]["option"] == 3
    assert b.progress.value == "Case 3 of 8"


def test_a_case_answered_elsewhere_is_not_answered_again(case_set):
    """Without the lock (e.g. a lock file deleted by hand), the file is re-read before each write."""
    s1 = ReadingSession(case_set, "R01", double_answer_guard_s=0)
    s2 = ReadingSession(case_set, "R01", double_answer_guard_s=0)
    for s in (s1, s2):
        s.skip_practice()
    shown = s2.current_id
    s1.answer(s1.current_id, 1)
    assert s2.answer(shown, 6) is None and s2.conflicts == 1 and s2.current_id != shown
    s2.answer(s2.current_id, 4)
    events = [(r["case_id"], r["event"]) for r in _records(case_set, "R01")]
    assert len(events) == 2 and len({c for c, _ in events}) == 2 and {e for _, e in events} == {"answer"}


def test_lock_is_free_when_stale_or_its_process_is_gone(case_set):
    clock = [1000.0]
    first = ReaderLock(case_set.ratings_dir, "R01", stale_s=30, clock=lambda: clock[0])
    assert first.acquire()
    second = ReaderLock(case_set.ratings_dir, "R01", stale_s=30, clock=lambda: clock[0])
    assert not second.acquire() and second.other_live()
    clock[0] += 31
    assert not second.other_live() and second.acquire() and not first.held()
    info = json.loads(second.path.read_text())
    second.path.write_text(json.dumps(dict(info, session="gone", pid=2**22 + 12345)))
    assert not first.other_live(), "a lock of a process that no longer exists is free"
    session = ReadingSession(case_set, "R01", double_answer_guard_s=0, lock=first)
    session.skip_practice()
    with pytest.raises(SessionTakenOver):
        session.answer(session.current_id, 1)
    assert not case_set.ratings_path("R01").exists()


def test_practice_feedback_stays_on_the_practice_patch(case_set):
    app = RatingApp(case_set.case_set_dir, double_answer_guard_s=0)
    app.reader_text.value = "R09"
    app.start_button.click()
    patch = app.image.value
    app.option_buttons[5].click()
    assert app.image.value == patch and "Practice feedback: this patch is" in app.feedback.value
    assert app.answer_area.children == (app.next_box,)
    app.option_buttons[0].click()  # ignored until "Next"
    assert app.progress.value.startswith("Practice case 1 of 2")
    app.next_button.click()
    assert app.progress.value.startswith("Practice case 2 of 2") and app.feedback.value == ""
    app.option_buttons[0].click()
    app.next_button.click()
    assert app.widget.children[-1] is app.practice_over_screen
    assert "The <b>8 scored cases</b> start now" in app.practice_over_message.value
    app.begin_button.click()
    assert app.progress.value == "Case 1 of 8" and not case_set.ratings_path("R09").exists()
