"""``serve`` of the rating page (``python -m mammo_lib.reader_study.rating_server serve``, ``rating_app serve``,
``make reader-app``): ``--host`` and ``--port`` are checked by the argument parser before anything
starts; a port that is in use is one line naming host:port and a free port, not a traceback; and
the page is refused while a study run holds the run folder's lock (``mammo_lib.run_lock``).

Nothing is replaced: the real parser, real sockets, a real case set and a real second process
holding the lock. Voila is never started: every ``serve`` call here is made while the port it
would listen on is held by a socket of this test, so a check that fails to refuse ends in the
port-in-use error instead of replacing the test process.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mammo_lib import testing
from mammo_lib.reader_study import case_set as rs
from mammo_lib.reader_study import rating_app, rating_server
from mammo_lib.reader_study.files import ReaderStudyError, default_case_set_dir, open_case_set
from mammo_lib.run_lock import LOCK_NAME

HOST = "127.0.0.1"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny run folder with a real case set at ``<run>/reader_study/case_set``."""
    run = tmp_path_factory.mktemp("run").resolve()
    testing.write_example_stores(run, 30, 30, size=16, seed=2)
    rs.build_case_set(run, 4, 4, n_practice=2, seed=5, display_scale=2, min_held_out=5)
    assert open_case_set(default_case_set_dir(run)).case_ids
    return run


@pytest.fixture
def case_set_dir(run_dir) -> Iterator[Path]:
    """The case set; any lock file a test leaves in the run folder is removed afterwards."""
    yield default_case_set_dir(run_dir)
    (run_dir / LOCK_NAME).unlink(missing_ok=True)


@contextmanager
def listening(host: str = HOST) -> Iterator[int]:
    """A real socket listening on a free port of ``host`` for the duration; yields the port."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@contextmanager
def lock_held_by_another_process(run_dir: Path, command: str) -> Iterator[subprocess.Popen]:
    """A second Python process that holds ``run_dir``'s lock (``run_lock.holding``) until killed."""
    code = ("import sys, time\n"
            "from mammo_lib.run_lock import holding\n"
            f"with holding(sys.argv[1], command={command!r}):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(30)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "held", f"the lock holder did not start: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}"
        yield proc
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()


def _finished_pid() -> int:
    """The PID of a process that has run and been reaped (no longer exists)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    assert proc.wait(10) == 0
    return proc.pid


def _write_lock(run_dir: Path, pid: int, host: str) -> None:
    (run_dir / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": host, "started": "2026-01-01T00:00:00+00:00",
                                                 "command": "python -m mammo_lib.study.runner --name crashed"}) + "\n")


# --- the parser ------------------------------------------------------------------------------------

def test_rating_app_serve_is_the_rating_server_entry_point():
    assert rating_app.main is rating_server.main


@pytest.mark.parametrize("port", ["0", "65536", "-1", "99999", "http", "", "8866.0", "80:80"])
@pytest.mark.parametrize("entry", [rating_server.main, rating_app.main], ids=["rating_server", "rating_app"])
def test_bad_port_is_refused_by_the_parser(tmp_path, capsys, port, entry):
    cwd = os.getcwd()
    with pytest.raises(SystemExit) as stop:
        entry(["serve", "--run-dir", str(tmp_path), f"--port={port}"])
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert f"argument --port: must be a whole number from 1 to 65535, not {port!r}" in err
    assert err.startswith("usage: python -m mammo_lib.reader_study.rating_server")
    # nothing started: serve() would have returned 1 for this empty folder, not exit 2, and
    # would have changed the working directory had it gone on to Voila
    assert list(tmp_path.iterdir()) == [] and os.getcwd() == cwd


@pytest.mark.parametrize("host", ["", " ", "http://reader.example.org", "reader.example.org:8866", "a b",
                                  "bad_host!", "999.1.1.1", "host/path", "-leading-dash.org", "x" * 64])
def test_bad_host_is_refused_by_the_parser(tmp_path, capsys, host):
    cwd = os.getcwd()
    with pytest.raises(SystemExit) as stop:
        rating_server.main(["serve", "--run-dir", str(tmp_path), f"--host={host}"])
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert (f"argument --host: must be an IP address (127.0.0.1, 0.0.0.0, ::1) or a host name such as "
            f"localhost or reader.example.org, without scheme, port or path; got {host!r}") in err
    assert list(tmp_path.iterdir()) == [] and os.getcwd() == cwd


def test_bad_values_are_refused_by_build_parser_itself(capsys):
    parser = rating_server.build_parser()
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["serve", "--run-dir", "x", "--port", "70000"])
    assert stop.value.code == 2 and "argument --port: must be a whole number from 1 to 65535, not '70000'" \
        in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["serve", "--run-dir", "x", "--host", "https://x.org"])
    assert stop.value.code == 2 and "argument --host: must be an IP address" in capsys.readouterr().err


def test_neither_run_dir_nor_case_set_dir_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stop:
        rating_server.main(["serve", "--port", "8866"])
    assert stop.value.code == 2 and "give --run-dir or --case-set-dir" in capsys.readouterr().err


@pytest.mark.parametrize("host, parsed", [("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "0.0.0.0"), ("::1", "::1"),
                                          ("[::1]", "::1"), ("localhost", "localhost"),
                                          ("reader.example.org", "reader.example.org")])
@pytest.mark.parametrize("port", ["1", "8866", "65535", " 8080 "])
def test_good_host_and_port_are_accepted(host, parsed, port):
    args = rating_server.build_parser().parse_args(["serve", "--run-dir", "x", "--host", host, "--port", port])
    assert (args.host, args.port) == (parsed, int(port))
    assert isinstance(args.host, str) and isinstance(args.port, int)


def test_defaults_parse_to_loopback_and_8866():
    args = rating_server.build_parser().parse_args(["serve", "--run-dir", "x"])
    assert (args.command, args.host, args.port, args.run_dir, args.case_set_dir) == \
        ("serve", "127.0.0.1", 8866, "x", None)
    assert (args.double_answer_guard, args.cull_idle) == (0.3, 300)
    assert Path(args.notebook) == rating_server.CHECKOUT_NOTEBOOK


# --- a port in use ---------------------------------------------------------------------------------

_IN_USE = (r"cannot listen on 127\.0\.0\.1:{port}: the port is already in use \(another rating page or "
           r"program\); stop that one or choose another port, e.g\. --port (\d+) "
           r"\(make reader-app READER_PORT=\1\)")


def test_a_port_in_use_is_one_clear_line_naming_a_free_port(case_set_dir, capsys):
    cwd = os.getcwd()
    with listening() as port:
        with pytest.raises(ReaderStudyError) as refused:
            rating_server.check_can_listen(HOST, port)
        found = re.fullmatch(_IN_USE.format(port=port), str(refused.value))
        assert found, str(refused.value)
        spare = int(found[1])
        assert spare > port
        rating_server.check_can_listen(HOST, spare)  # the suggested port really is free

        with pytest.raises(ReaderStudyError) as refused_serve:
            rating_server.serve(case_set_dir, HOST, port)
        assert re.fullmatch(_IN_USE.format(port=port), str(refused_serve.value)), str(refused_serve.value)

        assert rating_server.main(["serve", "--run-dir", str(case_set_dir.parent.parent), "--host", HOST,
                                   "--port", str(port)]) == 1
        captured = capsys.readouterr()
        err = captured.err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        assert re.fullmatch("cannot serve the rating page: " + _IN_USE.format(port=port), err), err
        assert "rating page for case set" not in captured.out  # refused before announcing the URL
    assert os.getcwd() == cwd  # serve changes directory only right before starting Voila
    rating_server.check_can_listen(HOST, port)  # the socket is closed: the port can be listened on again


# --- a study run holds the run folder --------------------------------------------------------------

def test_serve_is_refused_while_another_process_holds_the_run_folder(run_dir, case_set_dir, capsys):
    with listening() as port, lock_held_by_another_process(run_dir, "study run under test") as holder:
        lock = json.loads((run_dir / LOCK_NAME).read_text())
        assert (lock["pid"], lock["host"]) == (holder.pid, socket.gethostname())

        expected = (f"a study run holds {run_dir} (PID {holder.pid} on {socket.gethostname()} since "
                    f"{lock['started']} (study run under test)) and may be rewriting the case set; "
                    "start the rating page when it has finished")
        with pytest.raises(ReaderStudyError) as refused:
            rating_server.check_no_run_in_progress(case_set_dir)
        assert str(refused.value) == expected
        with pytest.raises(ReaderStudyError) as refused_serve:
            rating_server.serve(case_set_dir, HOST, port)
        assert str(refused_serve.value) == expected  # before the port check: the lock comes first

        assert rating_server.main(["serve", "--run-dir", str(run_dir), "--port", str(port)]) == 1
        err = capsys.readouterr().err.strip()
        assert err == f"cannot serve the rating page: {expected}"
        assert holder.poll() is None, "the holder was still running throughout"

    # the holder was killed (SIGKILL: no release): its lock file is left behind, naming a dead PID,
    # and no longer blocks the page
    assert json.loads((run_dir / LOCK_NAME).read_text())["pid"] == holder.pid
    rating_server.check_no_run_in_progress(case_set_dir)


def test_a_lock_whose_holder_is_dead_does_not_block(run_dir, case_set_dir):
    _write_lock(run_dir, _finished_pid(), socket.gethostname())
    rating_server.check_no_run_in_progress(case_set_dir)  # no error
    with listening() as port:  # serve gets past the lock check and stops at the (held) port
        with pytest.raises(ReaderStudyError, match=rf"^cannot listen on 127\.0\.0\.1:{port}: the port is already"):
            rating_server.serve(case_set_dir, HOST, port)


def test_a_lock_of_a_live_process_or_another_host_blocks(run_dir, case_set_dir):
    parent = os.getppid()  # alive while this test runs
    _write_lock(run_dir, parent, socket.gethostname())
    with pytest.raises(ReaderStudyError, match=rf"a study run holds .* \(PID {parent} on "):
        rating_server.check_no_run_in_progress(case_set_dir)
    _write_lock(run_dir, _finished_pid(), "another-host.example.org")  # cannot be checked from here
    with pytest.raises(ReaderStudyError, match=r"\(PID \d+ on another-host\.example\.org since "):
        rating_server.check_no_run_in_progress(case_set_dir)


def test_a_case_set_outside_a_run_folder_with_no_lock_is_not_blocked(tmp_path):
    rating_server.check_no_run_in_progress(tmp_path / "loose" / "case_set")  # no run.lock anywhere: no error
