"""The rating page of the reader study: an ipywidgets app, served to readers with Voila.

    python -m mammo_lib.rating_app serve --run-dir runs/default [--host 127.0.0.1] [--port 8866]

starts Voila on ``notebooks/apps/rate_patches.ipynb`` with the case-set folder passed in the
environment (``MAMMO_CASE_SET_DIR``). Readers see only the widget: an id field, then one patch
at a time on a neutral grey background, six answer buttons (keys 1-6), "Case k of N", a
"Back" button to revise the previous answer, and an end screen. The page never receives the
key: the app opens only the case-set folder and the reader's ratings file, and Voila's file
serving is switched off (every path is denied). Voila itself forwards only widget (comm)
messages from the browser to the kernel, never code to execute. For the strictest blinding,
copy only ``case_set/`` (and ``ratings/``) to the machine that serves the page.

Keys 1-6 come from ``ipyevents`` (a small, well-kept widget library): move the mouse over the
rating area and press a number. Without ipyevents the buttons still work.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
from pathlib import Path

import ipywidgets as widgets
import numpy as np

from mammo_lib import __version__ as APP_VERSION
from mammo_lib import rating_scale
from mammo_lib.reading_session import ReadingSession
from mammo_lib.study_files import (
    ReaderStudyError,
    default_case_set_dir,
    open_case_set,
    validate_reader_id,
)

try:  # keys 1-6; the app degrades to buttons only without it
    from ipyevents import Event as _KeyEvent
except ImportError:  # pragma: no cover - ipyevents is installed with the project
    _KeyEvent = None
KEYS_AVAILABLE = _KeyEvent is not None

# The Voila notebook of the page. In a checkout it is notebooks/apps/rate_patches.ipynb; an
# installed package has no notebooks folder, so ``serve --notebook PATH`` names it explicitly.
CHECKOUT_NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "apps" / "rate_patches.ipynb"
ENV_CASE_SET = "MAMMO_CASE_SET_DIR"
ENV_GUARD = "MAMMO_DOUBLE_ANSWER_GUARD_S"
GREY = "#7f7f7f"

CSS = f"""
<style>
body, .jp-Notebook, .voila-root, #rendered_cells {{ background: {GREY} !important; }}
.mammo-app {{ background: {GREY}; color: #111; font-family: sans-serif; padding: 12px; }}
.mammo-stage {{ background: {GREY}; justify-content: center; min-height: 540px;
                align-items: center; overflow: auto; }}
.mammo-app .widget-html-content {{ font-size: 16px; }}
.mammo-progress .widget-html-content {{ font-size: 20px; font-weight: bold; }}
.mammo-app .widget-button {{ font-size: 15px; }}
.mammo-feedback .widget-html-content {{ font-size: 16px; min-height: 24px; }}
.mammo-image {{ image-rendering: pixelated; outline: 1px solid #505050; }}
</style>
"""


def _apply_window(png: bytes, low: int, high: int) -> bytes:
    """Window/level on an 8-bit grey PNG: grey levels low..high are stretched to 0..255."""
    from PIL import Image

    if low <= 0 and high >= 255:
        return png
    with Image.open(io.BytesIO(png)) as img:
        arr = np.asarray(img.convert("L"), dtype=np.float32)
    high = max(high, low + 1)
    out = np.clip((arr - low) * (255.0 / (high - low)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(out, mode="L").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


class RatingApp:
    """The rating widget. ``app.widget`` is what the page shows.

    Tests drive it in-process: ``app.reader_text.value = "R01"; app.start_button.click()``,
    ``app.option_buttons[0].click()``, ``app.handle_key({"type": "keydown", "key": "3"})``.
    """

    def __init__(self, case_set_dir: str | os.PathLike, double_answer_guard_s: float = 0.3):
        self.case_set = open_case_set(case_set_dir)
        self.guard_s = double_answer_guard_s
        self.session: ReadingSession | None = None
        self.shown_id: str | None = None
        self._raw_png = b""

        self.style = widgets.HTML(CSS)
        # start screen
        self.reader_text = widgets.Text(placeholder="e.g. R01", description="Reader id:",
                                        layout=widgets.Layout(width="320px"))
        self.start_button = widgets.Button(description="Start", button_style="primary")
        self.start_message = widgets.HTML("")
        n = len(self.case_set.case_ids)
        n_practice = len(self.case_set.practice)
        first = (f"{n_practice} practice patches (with feedback, not scored), then {n} scored "
                 "lesion patches" if n_practice else f"{n} lesion patches")
        self.start_screen = widgets.VBox([
            widgets.HTML(f"<h2>Reader study</h2><p>You will see {first}, one at a "
                         "time. For each, choose how confident you are that it is a <b>real</b> "
                         "patch or a <b>synthetic</b> (generated) one: click a button or press a "
                         "key 1-6 with the mouse over the image. Every answer is saved at once; "
                         "you can stop at any time and continue later with the same reader id."
                         "</p>"),
            widgets.HBox([self.reader_text, self.start_button]),
            self.start_message,
        ])
        self.start_button.on_click(self._on_start)
        # rating screen
        self.progress = widgets.HTML("")
        self.progress.add_class("mammo-progress")
        self.image = widgets.Image(format="png", layout=widgets.Layout(width="512px", height="512px"))
        self.image.add_class("mammo-image")
        self.stage = widgets.HBox([self.image], layout=widgets.Layout(width="100%"))
        self.stage.add_class("mammo-stage")
        self.option_buttons = []
        for number, label, _ in rating_scale.OPTIONS:
            b = widgets.Button(description=f"{number}  {label}",
                               layout=widgets.Layout(width="auto", height="44px"),
                               tooltip=f"key {number}")
            b.add_class(f"mammo-option-{number}")
            b.on_click(lambda _btn, k=number: self._on_option(k))
            self.option_buttons.append(b)
        self.back_button = widgets.Button(description="Back: revise previous answer",
                                          icon="arrow-left", layout=widgets.Layout(width="auto"))
        self.back_button.add_class("mammo-back")
        self.back_button.on_click(lambda _b: self._on_back())
        self.zoom = widgets.FloatSlider(value=1.0, min=0.5, max=2.0, step=0.25, description="Zoom",
                                        continuous_update=False, readout_format=".2f")
        self.window = widgets.IntRangeSlider(value=(0, 255), min=0, max=255, description="Window",
                                             continuous_update=False)
        self.reset_view = widgets.Button(description="Reset view")
        self.zoom.observe(lambda _c: self._apply_zoom(), names="value")
        self.window.observe(lambda _c: self._render_image(), names="value")
        self.reset_view.on_click(lambda _b: self._reset_view())
        self.feedback = widgets.HTML("")
        self.feedback.add_class("mammo-feedback")
        self.rating_screen = widgets.VBox([
            self.progress,
            self.stage,
            widgets.HBox(self.option_buttons[:3], layout=widgets.Layout(justify_content="center")),
            widgets.HBox(self.option_buttons[3:], layout=widgets.Layout(justify_content="center")),
            self.feedback,
            widgets.HBox([self.back_button, self.zoom, self.window, self.reset_view]),
        ])
        # end screen
        self.end_message = widgets.HTML("")
        self.end_back_button = widgets.Button(description="Back: revise the last answer",
                                              icon="arrow-left", layout=widgets.Layout(width="auto"))
        self.end_back_button.on_click(lambda _b: self._on_back())
        self.end_screen = widgets.VBox([self.end_message, self.end_back_button])

        self.widget = widgets.VBox([self.style, self.start_screen])
        self.widget.add_class("mammo-app")
        self.key_events = None
        if _KeyEvent is not None:
            self.key_events = _KeyEvent(source=self.widget, watched_events=["keydown"])
            self.key_events.on_dom_event(self.handle_key)

    # -- start
    def _on_start(self, _sender=None) -> None:
        try:
            reader_id = validate_reader_id(self.reader_text.value)
            self.session = ReadingSession(self.case_set, reader_id,
                                          double_answer_guard_s=self.guard_s)
        except ReaderStudyError as exc:
            self.start_message.value = f"<p style='color:#600'><b>Cannot start:</b> {exc}</p>"
            return
        notes = []
        if self.session.problems:
            notes.append("Note: " + " ".join(self.session.problems))
        if self.session.n_answered:
            notes.append(f"Welcome back, {reader_id}: {self.session.n_answered} of "
                         f"{self.session.n_cases} answers were already saved; continuing.")
        self.feedback.value = "<br>".join(notes)
        self.widget.children = [self.style, self.rating_screen]
        self._show_current()

    # -- showing a case
    def _show_current(self) -> None:
        s = self.session
        assert s is not None
        if s.finished:
            self.shown_id = None
            self.end_message.value = (
                f"<h2>Finished: all {s.n_cases} cases are rated.</h2><p>Thank you, "
                f"{s.reader_id}. Your answers are saved; you can close this page.</p>")
            self.widget.children = [self.style, self.end_screen]
            return
        try:
            self._raw_png = s.current_image()
        except ReaderStudyError as exc:
            self.feedback.value = f"<p style='color:#600'><b>Problem:</b> {exc}</p>"
            self.shown_id = None
            return
        if self.widget.children[-1] is not self.rating_screen:
            self.widget.children = [self.style, self.rating_screen]
        self.shown_id = s.current_id
        prev = s.previous_answer()
        self.progress.value = s.progress_text() + (
            f" &nbsp;(revising: your answer was '{prev['label']}')" if prev else "")
        self.back_button.disabled = not s.can_go_back
        self._render_image()

    def _render_image(self) -> None:
        if self._raw_png:
            low, high = self.window.value
            self.image.value = _apply_window(self._raw_png, low, high)

    def _apply_zoom(self) -> None:
        px = f"{int(512 * self.zoom.value)}px"
        self.image.layout.width = px
        self.image.layout.height = px

    def _reset_view(self) -> None:
        self.zoom.value = 1.0
        self.window.value = (0, 255)

    # -- answers
    def _on_option(self, option: int) -> None:
        if self.session is None:
            return
        result = self.session.answer(self.shown_id, option)
        if result is None:
            return
        if "practice" in result:
            verdict = "correct" if result["correct"] else "not correct"
            self.feedback.value = (f"Practice feedback: that patch was <b>{result['practice']}</b> "
                                   f"({verdict}). Practice answers are not scored.")
        else:
            self.feedback.value = ""
        self._show_current()

    def _on_back(self) -> None:
        if self.session is not None and self.session.go_back():
            self.feedback.value = ""
            self._show_current()

    def handle_key(self, event: dict) -> None:
        """ipyevents keydown handler: keys 1-6 answer (auto-repeat ignored)."""
        if event.get("type") != "keydown" or event.get("repeat"):
            return
        key = str(event.get("key", ""))
        if key in {"1", "2", "3", "4", "5", "6"}:
            self._on_option(int(key))


def app_from_environment() -> widgets.Widget:
    """Build the app for the Voila page from ``MAMMO_CASE_SET_DIR`` (a readable message if unset)."""
    case_set_dir = os.environ.get(ENV_CASE_SET)
    if not case_set_dir:
        return widgets.HTML(f"<h3>No case set configured.</h3><p>Start this page with "
                            f"<code>make reader-app</code> (it sets {ENV_CASE_SET}).</p>")
    try:
        app = RatingApp(case_set_dir, double_answer_guard_s=float(os.environ.get(ENV_GUARD, "0.3")))
    except ReaderStudyError as exc:
        return widgets.HTML(f"<h3>The case set cannot be opened</h3><p>{exc}</p>")
    return app.widget


# --------------------------------------------------------------------------- serve CLI
def voila_command(host: str, port: int, notebook: Path = CHECKOUT_NOTEBOOK) -> list[str]:
    """The Voila command line: code hidden (Voila default), no file serving, no browser.

    Parameters
    ----------
    host : str
        Interface to listen on ("127.0.0.1"; "0.0.0.0" for readers' machines).
    port : int
        TCP port.
    notebook : path
        The page's notebook (default: the checkout's ``notebooks/apps/rate_patches.ipynb``).

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
    ]


def serve(case_set_dir: Path, host: str = "127.0.0.1", port: int = 8866,
          double_answer_guard_s: float = 0.3, notebook: Path = CHECKOUT_NOTEBOOK) -> None:
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

    Raises
    ------
    ReaderStudyError
        If the case set is missing or incomplete, or the notebook does not exist.
    """
    notebook = Path(notebook)
    if not notebook.is_file():
        raise ReaderStudyError(
            f"the rating page's notebook {notebook} does not exist: pass --notebook PATH (in a checkout "
            "it is notebooks/apps/rate_patches.ipynb)")
    case_set = open_case_set(case_set_dir)  # clear error for a missing/incomplete case set
    if not case_set.key_path.is_file():
        print(f"warning: no key at {case_set.key_path}; ratings can be collected but not "
              "scored until the key folder is restored", file=sys.stderr)
    case_set.ratings_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env[ENV_CASE_SET] = str(Path(case_set_dir).resolve())
    env[ENV_GUARD] = str(double_answer_guard_s)
    cmd = voila_command(host, port, notebook.resolve())
    print(f"rating page for case set {case_set.case_set_id} ({len(case_set.case_ids)} cases, "
          f"app {APP_VERSION}): http://{host}:{port}/", flush=True)
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
           ) -> tuple[subprocess.Popen, str]:
    """Start ``serve`` in its own process group and wait until the page answers.

    Returns (process, url). Stop it with :func:`stop`. Used by the browser test and the
    latency benchmark; readers use ``make reader-app``.
    """
    import time
    import urllib.error
    import urllib.request

    port = port or free_port(host)
    cmd = [sys.executable, "-m", "mammo_lib.rating_app", "serve", "--case-set-dir",
           str(Path(case_set_dir).resolve()), "--host", host, "--port", str(port),
           "--double-answer-guard", str(double_answer_guard_s), "--notebook", str(Path(notebook).resolve())]
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the reader-study rating page with Voila")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="start Voila on the rating page")
    p.add_argument("--run-dir", default=None, help="run folder (case set under reader_study/case_set)")
    p.add_argument("--case-set-dir", default=None, help="the case_set folder (instead of --run-dir)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8866)
    p.add_argument("--double-answer-guard", type=float, default=0.3,
                   help="seconds after a case appears during which answers are ignored")
    p.add_argument("--notebook", default=str(CHECKOUT_NOTEBOOK),
                   help="the page's Voila notebook (default: this checkout's notebooks/apps/rate_patches.ipynb; "
                        "required when mammo_lib is installed without the checkout)")
    args = parser.parse_args(argv)
    if not args.case_set_dir and not args.run_dir:
        parser.error("give --run-dir or --case-set-dir")
    case_set_dir = Path(args.case_set_dir) if args.case_set_dir else default_case_set_dir(args.run_dir)
    try:
        serve(case_set_dir.resolve(), args.host, args.port, args.double_answer_guard, Path(args.notebook))
    except ReaderStudyError as exc:
        print(f"cannot serve the rating page: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
