"""Serving the rating page: Voila on ``notebooks/apps/rate_patches.ipynb`` with the case set
passed in the environment, file serving off, idle kernels shut down.

    python -m mammo_lib.reader_study.rating_server serve --run-dir runs/default [--host 127.0.0.1] [--port 8866]
    python -m mammo_lib.reader_study.rating_app serve ...          (the same command)

The page never receives the key: the kernel opens only the case set, the reader's ratings file
and the invitation registry, and Voila's file serving is switched off (every path is denied).
Voila forwards only widget (comm) messages from the browser to the kernel, never code. A kernel
whose page has been closed is shut down after ``--cull-idle`` seconds (Jupyter server's kernel
culling: idle and with no open connection), so visits do not leave kernels behind.

Serving beyond this machine (``--host 0.0.0.0``) requires invitations (``mammo-readers add``):
without them anyone reaching the page could type any reader id. Put the page behind an HTTPS
reverse proxy when readers connect from other hospitals (see the README).
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

from mammo_lib import __version__ as APP_VERSION
from mammo_lib.checkout import NOTEBOOK_DIR
from mammo_lib.reader_study.files import ReaderStudyError, default_case_set_dir, open_case_set
from mammo_lib.reader_study.invitations import load_registry
from mammo_lib.run_lock import LOCK_NAME, describe_holder, live_holder

# The Voila notebook of the page. In a checkout it is notebooks/apps/rate_patches.ipynb; an
# installed package has no notebooks folder, so ``serve --notebook PATH`` names it explicitly.
CHECKOUT_NOTEBOOK = NOTEBOOK_DIR / "apps" / "rate_patches.ipynb"
ENV_CASE_SET = "MAMMO_CASE_SET_DIR"
ENV_GUARD = "MAMMO_DOUBLE_ANSWER_GUARD_S"
DEFAULT_CULL_IDLE_S = 300
LOOPBACK = ("127.0.0.1", "localhost", "::1")
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
HOST_RULE = ("an IP address (127.0.0.1, 0.0.0.0, ::1) or a host name such as localhost or "
             "reader.example.org, without scheme, port or path")


def port_argument(text: str) -> int:
    """``--port``: a whole number from 1 to 65535 (argparse ``type``).

    Parameters
    ----------
    text : str

    Returns
    -------
    int

    Raises
    ------
    argparse.ArgumentTypeError
        Naming the allowed values (argparse prefixes the option's name).
    """
    try:
        port = int(str(text).strip(), 10)
    except ValueError:
        port = None
    if port is None or not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 65535, not {text!r}")
    return port


def host_argument(text: str) -> str:
    """``--host``: an IP address or a host name (argparse ``type``); ``[::1]`` is taken as ``::1``.

    Parameters
    ----------
    text : str

    Returns
    -------
    str

    Raises
    ------
    argparse.ArgumentTypeError
        If it is empty, has spaces, a scheme, port or path, or is no valid address or host name.
    """
    host = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    if host and len(host) <= 253 and all(_HOST_LABEL.match(label) for label in labels) \
            and not labels[-1].isdigit():
        return host
    raise argparse.ArgumentTypeError(f"must be {HOST_RULE}; got {text!r}")


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def _port_free(host: str, port: int) -> bool:
    try:
        check_can_listen(host, port)
    except ReaderStudyError:
        return False
    return True


def check_can_listen(host: str, port: int) -> None:
    """Bind ``host:port`` as the server will (SO_REUSEADDR, every address of ``host``) and let go.

    Parameters
    ----------
    host : str
    port : int

    Raises
    ------
    ReaderStudyError
        One line naming ``host:port`` and what to do: the port is in use (with a free port to try
        instead), needs privileges, the address is not this machine's, or the name does not resolve.
    """
    where = _url(host, port)[len("http://"):-1]
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ReaderStudyError(f"cannot listen on {where}: the host name {host!r} does not resolve on this "
                               f"machine ({exc.strerror}); use 127.0.0.1 or 0.0.0.0") from None
    for family, kind, proto, _name, address in infos:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
        except OSError as exc:
            raise ReaderStudyError(_bind_failure(where, host, port, exc)) from None


def _bind_failure(where: str, host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        spare = next((p for p in range(port + 1, min(port + 50, 65536)) if _port_free(host, p)), None)
        hint = (f"choose another port, e.g. --port {spare} (make reader-app READER_PORT={spare})" if spare
                else "choose another port with --port (make reader-app READER_PORT=...)")
        return (f"cannot listen on {where}: the port is already in use (another rating page or program); "
                f"stop that one or {hint}")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"cannot listen on {where}: ports below 1024 need administrator rights; use e.g. --port 8866"
    if exc.errno == errno.EADDRNOTAVAIL:
        return (f"cannot listen on {where}: {host} is not an address of this machine; use 127.0.0.1, "
                f"0.0.0.0 or one of this machine's addresses")
    return f"cannot listen on {where}: {exc.strerror or exc}"


def voila_command(host: str, port: int, notebook: Path = CHECKOUT_NOTEBOOK,
                  cull_idle_s: float = DEFAULT_CULL_IDLE_S) -> list[str]:
    """The Voila command line: code hidden (Voila default), no file serving, no browser.

    Parameters
    ----------
    host : str
        Interface to listen on ("127.0.0.1"; "0.0.0.0" for readers' machines).
    port : int
        TCP port.
    notebook : path
        The page's notebook (default: the checkout's ``notebooks/apps/rate_patches.ipynb``).
    cull_idle_s : float
        Seconds after which a kernel with no open page and no activity is shut down (checked
        every ``max(1, cull_idle_s / 5)`` seconds).

    Returns
    -------
    list of str
    """
    return [
        sys.executable, "-m", "voila", str(notebook),
        "--no-browser", f"--port={port}", f"--Voila.ip={host}", "--Voila.port_retries=0",
        "--theme=light", "--show_tracebacks=False", "--strip_sources=True",
        "--VoilaConfiguration.file_allowlist=^$",
        "--VoilaConfiguration.file_denylist=.*",
        f"--MappingKernelManager.cull_idle_timeout={int(cull_idle_s)}",
        f"--MappingKernelManager.cull_interval={max(1, int(cull_idle_s // 5))}",
        "--MappingKernelManager.cull_connected=False",
    ]


def check_no_run_in_progress(case_set_dir: str | os.PathLike) -> None:
    """Refuse to serve a case set while a study run holds its run folder (it may be rebuilding the
    case set the page would show).

    Parameters
    ----------
    case_set_dir : str or os.PathLike
        ``<run>/reader_study/case_set`` (a case set outside a run folder is not checked).

    Raises
    ------
    ReaderStudyError
        When a live process holds ``<run>/run.lock`` (:mod:`mammo_lib.run_lock`), naming it.
    """

    run_dir = Path(case_set_dir).resolve().parent.parent
    holder = live_holder(run_dir) if (run_dir / LOCK_NAME).exists() else None
    if holder is not None:
        raise ReaderStudyError(f"a study run holds {run_dir} ({describe_holder(holder)}) and may be rewriting the "
                               "case set; start the rating page when it has finished")


def serve(case_set_dir: Path, host: str = "127.0.0.1", port: int = 8866,
          double_answer_guard_s: float = 0.3, notebook: Path = CHECKOUT_NOTEBOOK,
          cull_idle_s: float = DEFAULT_CULL_IDLE_S) -> None:
    """Check the case set, then replace this process with Voila serving the rating page.

    Parameters
    ----------
    case_set_dir : path
        The ``case_set`` folder (ratings go to its sibling ``ratings/``).
    host, port
        Where Voila listens.
    double_answer_guard_s : float
        Seconds after a case appears during which answers are ignored (double clicks).
    notebook : path
        The page's Voila notebook.
    cull_idle_s : float
        Idle kernels (page closed) are shut down after this many seconds.

    Raises
    ------
    ReaderStudyError
        If the case set is missing or incomplete, the notebook does not exist, ``host`` is not
        a loopback address and nobody has been invited (typed reader ids only on this machine),
        or ``host:port`` cannot be listened on (:func:`check_can_listen`; e.g. the port is in use),
        or a study run holds the run folder (:func:`check_no_run_in_progress`).
    """
    notebook = Path(notebook)
    if not notebook.is_file():
        raise ReaderStudyError(
            f"the rating page's notebook {notebook} does not exist: pass --notebook PATH (in a checkout "
            "it is notebooks/apps/rate_patches.ipynb)")
    check_no_run_in_progress(case_set_dir)
    case_set = open_case_set(case_set_dir)  # clear error for a missing/incomplete case set
    if host not in LOOPBACK and not load_registry(case_set.case_set_dir.parent):
        raise ReaderStudyError(
            f"serving on {host} lets anyone who reaches the page rate as any reader id: invite the readers "
            f"first (mammo-readers add R01 R02 --run-dir ...), then send each their personal link")
    if not case_set.key_path.is_file():
        print(f"warning: no key at {case_set.key_path}; ratings can be collected but not "
              "scored until the key folder is restored", file=sys.stderr)
    check_can_listen(host, port)
    case_set.ratings_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env[ENV_CASE_SET] = str(Path(case_set_dir).resolve())
    env[ENV_GUARD] = str(double_answer_guard_s)
    cmd = voila_command(host, port, notebook.resolve(), cull_idle_s)
    print(f"rating page for case set {case_set.case_set_id} ({len(case_set.case_ids)} cases, "
          f"app {APP_VERSION}): {_url(host, port)}", flush=True)
    os.chdir(notebook.resolve().parent)
    os.execvpe(cmd[0], cmd, env)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now (for tests and the benchmark)."""
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def launch(case_set_dir: str | os.PathLike, host: str = "127.0.0.1", port: int | None = None,
           double_answer_guard_s: float = 0.3, log_path: str | os.PathLike | None = None,
           timeout_s: float = 60.0, notebook: str | os.PathLike = CHECKOUT_NOTEBOOK,
           cull_idle_s: float = DEFAULT_CULL_IDLE_S) -> tuple[subprocess.Popen, str]:
    """Start ``serve`` in its own process group and wait until the page answers.

    Returns (process, url). Stop it with :func:`stop`. Used by the browser test and the
    latency benchmark; readers use ``make reader-app``.
    """
    import time
    import urllib.error
    import urllib.request

    port = port or free_port(host)
    cmd = [sys.executable, "-m", "mammo_lib.reader_study.rating_server", "serve", "--case-set-dir",
           str(Path(case_set_dir).resolve()), "--host", host, "--port", str(port),
           "--double-answer-guard", str(double_answer_guard_s), "--notebook", str(Path(notebook).resolve()),
           "--cull-idle", str(cull_idle_s)]
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            cwd=str(Path(notebook).resolve().parent))
    url = f"http://{host}:{port}/"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the rating server exited with code {proc.returncode} (log: {log_path})")
        try:
            with urllib.request.urlopen(url + "api/kernelspecs", timeout=2):
                return proc, url
        except urllib.error.HTTPError:  # any HTTP answer means the server is up
            return proc, url
        except OSError:
            time.sleep(0.3)
    stop(proc)
    raise RuntimeError(f"the rating server did not answer at {url} within {timeout_s} s")


def stop(proc: subprocess.Popen, timeout_s: float = 15.0) -> None:
    """Stop a server started by :func:`launch`: SIGTERM to its process group, then SIGKILL."""
    import signal

    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    except ProcessLookupError:
        pass


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m mammo_lib.reader_study.rating_server serve`` (also ``rating_app serve``).

    ``--host`` and ``--port`` are checked here (:func:`host_argument`, :func:`port_argument`), so a
    bad value stops the command with a usage message before anything starts.

    Returns
    -------
    argparse.ArgumentParser
    """
    parser = argparse.ArgumentParser(prog="python -m mammo_lib.reader_study.rating_server",
                                     description="Serve the reader-study rating page with Voila")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="start Voila on the rating page")
    p.add_argument("--run-dir", default=None, help="run folder (case set under reader_study/case_set)")
    p.add_argument("--case-set-dir", default=None, help="the case_set folder (instead of --run-dir)")
    p.add_argument("--host", default="127.0.0.1", type=host_argument,
                   help="interface to listen on: 127.0.0.1 (this machine), 0.0.0.0 (all; needs invitations) "
                        "or a host name")
    p.add_argument("--port", type=port_argument, default=8866, help="TCP port, 1-65535 (default 8866)")
    p.add_argument("--double-answer-guard", type=float, default=0.3,
                   help="seconds after a case appears during which answers are ignored")
    p.add_argument("--notebook", default=str(CHECKOUT_NOTEBOOK),
                   help="the page's Voila notebook (default: this checkout's notebooks/apps/rate_patches.ipynb; "
                        "required when mammo_lib is installed without the checkout)")
    p.add_argument("--cull-idle", type=float, default=DEFAULT_CULL_IDLE_S,
                   help="seconds after which the kernel of a closed page is shut down")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m mammo_lib.reader_study.rating_server serve``.

    Parameters
    ----------
    argv : list of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        1 with a one-line message on stderr when the page cannot be served; on success the
        process becomes Voila and does not return. Bad options exit with status 2 (argparse).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.case_set_dir and not args.run_dir:
        parser.error("give --run-dir or --case-set-dir")
    case_set_dir = Path(args.case_set_dir) if args.case_set_dir else default_case_set_dir(args.run_dir)
    try:
        serve(case_set_dir.resolve(), args.host, args.port, args.double_answer_guard, Path(args.notebook),
              args.cull_idle)
    except ReaderStudyError as exc:
        print(f"cannot serve the rating page: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
