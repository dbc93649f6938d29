"""The study coordinator's command, ``mammo-readers`` (``mammo-study readers``), run as a user runs
it: one id twice in one command, a revoked reader, a reader who already has a link, and the
options that take them on (``--reinstate``, ``--new-token``). Each refusal is one line on stderr,
exit status 1, and leaves the registry as it was."""

from __future__ import annotations

import re

import pytest

from mammo_lib import testing
from mammo_lib.reader_study import case_set as rs
from mammo_lib.reader_study import invitations, readers_cli

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d UTC"


@pytest.fixture
def study(tmp_path):
    testing.write_example_stores(tmp_path, 30, 30, size=16, seed=2)
    cs = rs.build_case_set(tmp_path, 4, 4, n_practice=2, seed=5, display_scale=2, min_held_out=5)
    return cs.case_set_dir.parent, ["--run-dir", str(tmp_path)]


def _run(capsys, *argv):
    code = readers_cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _links(out):
    return {m[1]: m[2] for m in re.finditer(r"^  (\S+): \S+\?reader=(\S+)$", out, re.MULTILINE)}


def _refused_in_one_line(code, out, err):
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("mammo-readers add: ")
    assert err.rstrip().endswith("; nothing was changed")
    return err


def test_one_id_twice_in_one_command_refuses_the_whole_command(study, capsys):
    root, run = study
    err = _refused_in_one_line(*_run(capsys, "add", "R01", "R02", "R02", *run))
    assert "reader id 'R02' is given twice in this command; give each reader once" in err
    assert not invitations.registry_path(root).exists(), "nothing written, not even R01"
    err = _refused_in_one_line(*_run(capsys, "add", "R03", "r03", *run))
    assert "reader id 'r03' is given twice in this command (as 'R03')" in err
    assert _run(capsys, "add", "R01", *run)[0] == 0
    before = invitations.registry_path(root).read_bytes()
    err = _refused_in_one_line(*_run(capsys, "add", "R01", "R01", "--new-token", *run))
    assert "given twice" in err and invitations.registry_path(root).read_bytes() == before


def test_a_revoked_reader_is_refused_until_reinstated_and_the_revocation_stays_recorded(study, capsys):
    root, run = study
    first = _links(_run(capsys, "add", "R02", *run)[1])["R02"]
    code, out, _ = _run(capsys, "revoke", "R02", *run)
    assert code == 0 and "revoked R02" in out and "--reinstate" in out
    before = invitations.registry_path(root).read_bytes()
    for extra in ([], ["--new-token"]):
        err = _refused_in_one_line(*_run(capsys, "add", "R02", *extra, *run))
        assert re.search(f"reader 'R02' was revoked on {STAMP}; to let them rate again run "
                         r"'mammo-readers add R02 --reinstate' \(a new link; the revocation stays in the "
                         r"registry\), or invite them under a new id", err), err
    assert invitations.registry_path(root).read_bytes() == before
    code, out, _ = _run(capsys, "add", "R02", "--reinstate", *run)
    assert code == 0 and "reinstated R02 (the revocation stays recorded in the registry)" in out
    assert invitations.reader_for_token(root, _links(out)["R02"]) == "R02"
    with pytest.raises(invitations.InvitationError, match="not valid"):
        invitations.reader_for_token(root, first)  # the revoked link never opens again
    listing = _run(capsys, "list", *run)[1]
    assert re.search(f"R02 +added {STAMP}  active; revoked {STAMP}, reinstated {STAMP}", listing), listing
    assert _run(capsys, "revoke", "R02", *run)[0] == 0
    code, out, _ = _run(capsys, "revoke", "R02", *run)
    assert code == 0 and re.search(f"R02 was already revoked on {STAMP}; nothing to do", out)
    history = invitations.load_registry(root)["R02"].history
    assert [h["event"] for h in history] == ["reinstated"], "each revocation and reinstatement is kept"


def test_an_active_reader_already_has_an_invitation(study, capsys):
    root, run = study
    old = _links(_run(capsys, "add", "R01", *run)[1])["R01"]
    added = invitations.load_registry(root)["R01"].added_at
    err = _refused_in_one_line(*_run(capsys, "add", "R01", "R04", *run))
    assert re.search(f"reader 'R01' already has an invitation \\(since {STAMP}\\); its link was shown only when "
                     r"it was made: run 'mammo-readers add R01 --new-token' for a new link \(the old one stops "
                     r"working\)", err), err
    assert "R04" not in invitations.load_registry(root)
    err = _refused_in_one_line(*_run(capsys, "add", "R01", "--reinstate", *run))
    assert "reader 'R01' is not revoked" in err and "--new-token" in err
    err = _refused_in_one_line(*_run(capsys, "add", "R09", "--reinstate", *run))
    assert "reader 'R09' was never invited" in err
    code, out, _ = _run(capsys, "add", "R01", "R04", "--new-token", *run)
    assert code == 0 and "invited R04; new link for R01 (the old link no longer opens the page)" in out
    links = _links(out)
    assert invitations.reader_for_token(root, links["R01"]) == "R01"
    with pytest.raises(invitations.InvitationError):
        invitations.reader_for_token(root, old)
    reader = invitations.load_registry(root)["R01"]
    assert reader.added_at == added and [h["event"] for h in reader.history] == ["new_token"]


def test_new_token_and_reinstate_together_and_bad_link_options_are_usage_errors(study, capsys):
    _, run = study
    with pytest.raises(SystemExit) as stop:
        readers_cli.main(["add", "R01", "--new-token", "--reinstate", *run])
    assert stop.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    for option, value, message in (("--port", "0", "argument --port: must be a whole number from 1 to 65535"),
                                   ("--port", "https", "argument --port: must be a whole number"),
                                   ("--host", "https://reader.example.org", "argument --host: must be an IP")):
        with pytest.raises(SystemExit) as stop:
            readers_cli.main(["add", "R01", option, value, *run])
        assert stop.value.code == 2 and message in capsys.readouterr().err
