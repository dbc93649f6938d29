"""The rating page of the reader study: an ipywidgets app, served to readers with Voila
(:mod:`mammo_lib.reader_study.rating_server`; ``python -m mammo_lib.reader_study.rating_app serve`` is the same command).

Who the reader is: with invitations (:mod:`mammo_lib.reader_study.invitations`) the personal link's token
alone identifies the reader, and a missing, unknown or revoked token gets a polite refusal and no
case; without invitations (a study on one machine) the reader types an id, and ids of machine
observers are refused. Then: "New reader" or "Welcome back, k of N done"; practice cases with
feedback shown on the practice patch itself and a "Next" button; a screen saying the scored cases
start now and how many; one patch at a time on neutral grey, six answer buttons (keys 1-6 with
the mouse over the page), "Back" to revise the previous answer, and an end screen.

One live window per reader (:class:`mammo_lib.reader_study.session.ReaderLock`): a second window is
told the reader is open elsewhere and may take over; the first then stops before writing.
The page never receives the key. Keys 1-6 come from ``ipyevents`` (without it the buttons work).
"""

from __future__ import annotations

import html
import io
import os
import sys
import threading
from urllib.parse import parse_qs

import ipywidgets as widgets
import numpy as np

from mammo_lib import rating_scale
from mammo_lib.reader_study.files import (
    ReaderStudyError,
    open_case_set,
    read_ratings,
    validate_reader_id,
)
from mammo_lib.reader_study.invitations import (
    RESERVED_PREFIX,
    InvitationError,
    load_registry,
    reader_for_token,
)
from mammo_lib.reader_study.rating_server import ENV_CASE_SET, ENV_GUARD
from mammo_lib.reader_study.rating_server import (
    main as main,  # ``python -m mammo_lib.reader_study.rating_app serve ...``
)
from mammo_lib.reader_study.session import ReaderLock, ReadingSession, SessionTakenOver

try:  # keys 1-6; the app degrades to buttons only without it
    from ipyevents import Event as _KeyEvent
except ImportError:  # pragma: no cover - ipyevents is installed with the project
    _KeyEvent = None
KEYS_AVAILABLE = _KeyEvent is not None

GREY = "#7f7f7f"
PAGE_TITLE = "Reader study: real or synthetic?"

CSS = f"""
<style>
body, .jp-Notebook, .voila-root, #rendered_cells {{ background: {GREY} !important; }}
body {{ margin: 0; }}
.jp-Cell, .jp-OutputArea-output, .jp-Notebook {{ padding: 0 !important; margin: 0 !important; }}
.mammo-app {{ background: {GREY}; color: #111; font-family: sans-serif; padding: 6px 12px; }}
.mammo-stage {{ background: {GREY}; justify-content: center; align-items: center; overflow: auto; }}
.mammo-app .widget-html-content {{ font-size: 16px; }}
.mammo-progress .widget-html-content {{ font-size: 19px; font-weight: bold; line-height: 26px; }}
.mammo-app .widget-button {{ font-size: 15px; }}
.mammo-feedback .widget-html-content {{ font-size: 16px; min-height: 22px; line-height: 22px;
                                          text-align: center; }}
.mammo-practice-feedback {{ background: #f4f1d0; border-radius: 4px; padding: 2px 10px; }}
.mammo-image {{ image-rendering: pixelated; outline: 1px solid #505050; object-fit: contain; }}
.mammo-fit {{ height: min(512px, calc(100vh - 245px)) !important;
               width: min(512px, calc(100vh - 245px)) !important; }}
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


def _button(description: str, css: str, style: str = "", width: str = "auto") -> widgets.Button:
    b = widgets.Button(description=description, button_style=style, layout=widgets.Layout(width=width))
    b.add_class(css)
    return b


class RatingApp:
    """The rating widget. ``app.widget`` is what the page shows.

    Tests drive it in-process: ``app.reader_text.value = "R01"; app.start_button.click()``,
    ``app.option_buttons[0].click()``, ``app.handle_key({"type": "keydown", "key": "3"})``,
    ``app.next_button.click()`` (after practice feedback), ``app.begin_button.click()`` (after the
    practice), ``app.take_over_button.click()`` (reader open elsewhere).

    Parameters
    ----------
    case_set_dir : path
    double_answer_guard_s : float
        Seconds after a case appears during which answers are ignored.
    token : str, optional
        The token of the personal link. When invitations exist it is required and alone decides
        who the reader is; without invitations it is ignored and the reader types an id.
    stale_s : float
        A window whose heartbeat is older than this (seconds) no longer holds its reader.
    """

    def __init__(self, case_set_dir: str | os.PathLike, double_answer_guard_s: float = 0.3,
                 token: str | None = None, stale_s: float = 30.0):
        self.case_set = open_case_set(case_set_dir)
        self.guard_s = double_answer_guard_s
        self.stale_s = stale_s
        self.session: ReadingSession | None = None
        self.lock: ReaderLock | None = None
        self.shown_id: str | None = None
        self.awaiting_next = False
        self._raw_png = b""
        self._stop_heartbeat = threading.Event()
        self.invited = bool(load_registry(self.case_set.case_set_dir.parent))
        self.reader_id: str | None = None  # set by a valid personal link
        self.style = widgets.HTML(CSS)
        self._build_start_screen()
        self._build_rating_screen()
        self._build_other_screens()
        self.widget = widgets.VBox([self.style, self.start_screen])
        self.widget.add_class("mammo-app")
        self.key_events = None
        if _KeyEvent is not None:
            self.key_events = _KeyEvent(source=self.widget, watched_events=["keydown"])
            self.key_events.on_dom_event(self.handle_key)
        if self.invited:
            self._identify_by_token(token)

    # -- building
    def _intro(self) -> str:
        n, n_practice = len(self.case_set.case_ids), len(self.case_set.practice)
        first = (f"{n_practice} practice patches (with feedback, not scored), then {n} scored "
                 "lesion patches" if n_practice else f"{n} lesion patches")
        return (f"<h2>Reader study</h2><p>You will see {first}, one at a time. For each, choose how "
                "confident you are that it is a <b>real</b> patch or a <b>synthetic</b> (generated) one: "
                "click a button or press a key 1-6 with the mouse over the page. Every answer is saved at "
                "once; you can stop at any time and continue later.</p>")

    def _build_start_screen(self) -> None:
        self.reader_text = widgets.Text(placeholder="e.g. R01", description="Reader id:",
                                        layout=widgets.Layout(width="320px"))
        self.start_button = _button("Start", "mammo-start", "primary", "120px")
        self.start_message = widgets.HTML("")
        self.start_message.add_class("mammo-start-message")
        self.start_button.on_click(self._on_start)
        self.start_screen = widgets.VBox([widgets.HTML(self._intro()),
                                          widgets.HBox([self.reader_text, self.start_button]),
                                          self.start_message])

    def _build_rating_screen(self) -> None:
        self.progress = widgets.HTML("")
        self.progress.add_class("mammo-progress")
        self.image = widgets.Image(format="png", layout=widgets.Layout(width="512px", height="512px"))
        self.image.add_class("mammo-image")
        self.image.add_class("mammo-fit")
        self.stage = widgets.HBox([self.image], layout=widgets.Layout(width="100%"))
        self.stage.add_class("mammo-stage")
        self.option_buttons = []
        for number, label, _ in rating_scale.OPTIONS:
            b = widgets.Button(description=f"{number}  {label}", tooltip=f"key {number}",
                               layout=widgets.Layout(width="auto", height="40px"))
            b.add_class(f"mammo-option-{number}")
            b.on_click(lambda _btn, k=number: self._on_option(k))
            self.option_buttons.append(b)
        self.options_box = widgets.VBox([
            widgets.HBox(self.option_buttons[:3], layout=widgets.Layout(justify_content="center")),
            widgets.HBox(self.option_buttons[3:], layout=widgets.Layout(justify_content="center"))])
        self.next_button = _button("Next", "mammo-next", "primary", "160px")
        self.next_button.on_click(lambda _b: self._on_next())
        self.next_box = widgets.HBox([self.next_button], layout=widgets.Layout(justify_content="center"))
        self.answer_area = widgets.VBox([self.options_box])
        self.back_button = _button("Back: revise previous answer", "mammo-back")
        self.back_button.icon = "arrow-left"
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
            self.progress, self.stage, self.feedback, self.answer_area,
            widgets.HBox([self.back_button, self.zoom, self.window, self.reset_view])])

    def _build_other_screens(self) -> None:
        self.end_message = widgets.HTML("")
        self.end_back_button = _button("Back: revise the last answer", "mammo-end-back", width="260px")
        self.end_back_button.icon = "arrow-left"
        self.end_back_button.on_click(lambda _b: self._on_back())
        self.end_screen = widgets.VBox([self.end_message, self.end_back_button])
        self.practice_over_message = widgets.HTML("")
        self.begin_button = _button("Start the scored cases", "mammo-begin", "primary", "240px")
        self.begin_button.on_click(lambda _b: self._on_begin())
        self.practice_over_screen = widgets.VBox([self.practice_over_message, self.begin_button])
        self.practice_over_screen.add_class("mammo-practice-over")
        self.busy_message = widgets.HTML("")
        self.take_over_button = _button("Continue here (take over)", "mammo-take-over", "warning", "260px")
        self.take_over_button.on_click(lambda _b: self._on_take_over())
        self.busy_screen = widgets.VBox([self.busy_message, self.take_over_button])
        self.busy_screen.add_class("mammo-busy")
        self.message = widgets.HTML("")
        self.message_screen = widgets.VBox([self.message])
        self.message_screen.add_class("mammo-message")

    def _screen(self, screen: widgets.Widget) -> None:
        if self.widget.children[-1] is not screen:
            self.widget.children = [self.style, screen]

    # -- who is reading
    def _identify_by_token(self, token: str | None) -> None:
        try:
            self.reader_id = reader_for_token(self.case_set.case_set_dir.parent, token)
        except InvitationError as exc:
            text = html.escape(str(exc))  # may hold what the visitor typed into the address
            self.message.value = (f"<h2>Reader study</h2><p><b>Sorry, this page cannot be opened.</b> "
                                  f"{text[:1].upper() + text[1:]}.</p>")
            self._screen(self.message_screen)
            return
        self.reader_text.value = self.reader_id
        self.reader_text.disabled = True
        done = len(read_ratings(self.case_set.ratings_path(self.reader_id), self.case_set).last_per_case())
        n = len(self.case_set.case_ids)
        hello = (f"Welcome back, reader <b>{self.reader_id}</b>: {done} of {n} done." if done
                 else f"Reader <b>{self.reader_id}</b>: new reader, {n} cases to rate.")
        self.start_screen.children = [self.start_screen.children[0], widgets.HTML(f"<p>{hello}</p>"),
                                      widgets.HBox([self.start_button]), self.start_message]

    def _typed_reader_id(self) -> str:
        reader_id = validate_reader_id(self.reader_text.value)
        if reader_id.lower().startswith(RESERVED_PREFIX):
            raise ReaderStudyError(f"reader id {reader_id!r} is reserved for machine observers; use your own id")
        known = [p.stem for p in self.case_set.ratings_dir.glob("*.jsonl")]
        clash = [k for k in known if k.lower() == reader_id.lower() and k != reader_id]
        if clash:
            raise ReaderStudyError(f"reader id {reader_id!r} differs from the existing reader {clash[0]!r} only in "
                                   "upper/lower case; if that is you, type it exactly")
        return reader_id

    def _on_start(self, _sender=None) -> None:
        try:
            if self.invited and self.reader_id is None:
                raise ReaderStudyError("this page needs your personal link; open the link you were sent")
            reader_id = self.reader_id if self.invited else self._typed_reader_id()
            self.session = ReadingSession(self.case_set, reader_id, double_answer_guard_s=self.guard_s)
        except ReaderStudyError as exc:
            self.session = None
            self.start_message.value = f"<p style='color:#600'><b>Cannot start:</b> {html.escape(str(exc))}</p>"
            return
        self.lock = ReaderLock(self.case_set.ratings_dir, reader_id, stale_s=self.stale_s)
        self.session.lock = self.lock
        if self.session.finished:
            self._show_current()
            return
        if not self.lock.acquire():
            self.busy_message.value = (
                f"<h2>Reader {reader_id} is open in another window</h2><p>Only one window per reader can "
                "rate. Close the other window, or continue here: the other window then stops, and no answer "
                "is lost or given twice.</p>")
            self._screen(self.busy_screen)
            return
        self._begin_session()

    def _on_take_over(self) -> None:
        if self.lock is not None and self.session is not None:
            self.lock.acquire(take_over=True)
            self.session.refresh()
            self.session.index = self.session.first_unanswered()
            self._begin_session()

    def _begin_session(self) -> None:
        s = self.session
        notes = [s.welcome_text()] + (["Note: " + " ".join(s.problems)] if s.problems else [])
        self.feedback.value = "<br>".join(notes)
        self._start_heartbeat()
        self._show_current()

    def _start_heartbeat(self) -> None:
        self._stop_heartbeat.set()
        stop = self._stop_heartbeat = threading.Event()
        lock, period = self.lock, max(1.0, self.stale_s / 3)

        def beat() -> None:
            while not stop.wait(period) and lock.beat():
                pass

        threading.Thread(target=beat, daemon=True, name="mammo-reader-heartbeat").start()

    # -- showing a case
    def _show_current(self) -> None:
        s = self.session
        if s.finished:
            self.shown_id = None
            self.end_message.value = (
                f"<h2>Finished: all {s.n_cases} cases are rated.</h2><p>Thank you, "
                f"{s.reader_id}. Your answers are saved; you can close this page.</p>")
            self._screen(self.end_screen)
            self._stop_heartbeat.set()
            if self.lock is not None:
                self.lock.release()
            return
        try:
            self._raw_png = s.current_image()
        except ReaderStudyError as exc:
            self.feedback.value = f"<p style='color:#600'><b>Problem:</b> {html.escape(str(exc))}</p>"
            self.shown_id = None
            return
        self._screen(self.rating_screen)
        self.answer_area.children = [self.options_box]
        self.awaiting_next = False
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
        if self.zoom.value == 1.0:
            self.image.add_class("mammo-fit")
        else:
            self.image.remove_class("mammo-fit")

    def _reset_view(self) -> None:
        self.zoom.value = 1.0
        self.window.value = (0, 255)

    # -- answers
    def _on_option(self, option: int) -> None:
        if self.session is None or self.awaiting_next:
            return
        try:
            result = self.session.answer(self.shown_id, option)
        except SessionTakenOver:
            self._stopped()
            return
        if result is None:
            if self.session.conflicts and self.shown_id != self.session.current_id:
                self.feedback.value = "That case was answered in another window; here is the next one."
                self._show_current()
            return
        if "practice" in result:
            self._practice_feedback(result)
            return
        self.feedback.value = ""
        self._show_current()

    def _practice_feedback(self, result: dict) -> None:
        verdict = "correct" if result["correct"] else "not correct"
        self.feedback.value = (f"<span class='mammo-practice-feedback'>Practice feedback: this patch is "
                               f"<b>{result['practice']}</b>; you said {result['called']} ({verdict}). "
                               "Practice answers are not scored.</span>")
        self.answer_area.children = [self.next_box]
        self.awaiting_next = True
        self.shown_id = None

    def _on_next(self) -> None:
        s = self.session
        if s is None or not self.awaiting_next:
            return
        self.awaiting_next = False
        self.feedback.value = ""
        if s.in_practice:
            self._show_current()
            return
        self.practice_over_message.value = (
            f"<h2>Practice is over</h2><p>The <b>{s.n_cases} scored cases</b> start now. From here on no "
            "feedback is shown and every answer is recorded.</p>")
        self._screen(self.practice_over_screen)

    def _on_begin(self) -> None:
        if self.session is not None:
            self.session.skip_practice()
            self._show_current()

    def _on_back(self) -> None:
        s = self.session
        if s is None:
            return
        if s.finished and self.lock is not None and not self.lock.acquire():
            self.end_message.value += "<p><b>This reader is open in another window; revise there.</b></p>"
            return
        if s.go_back():
            self._start_heartbeat()
            self.feedback.value = ""
            self._show_current()

    def _stopped(self) -> None:
        self._stop_heartbeat.set()
        self.shown_id = None
        self.message.value = (f"<h2>Continued in another window</h2><p>Reader {self.session.reader_id} is now "
                              "rating in another window, so this one has stopped. Nothing was lost; you can "
                              "close this page.</p>")
        self._screen(self.message_screen)

    def handle_key(self, event: dict) -> None:
        """ipyevents keydown handler: keys 1-6 answer, Enter goes on after feedback (auto-repeat ignored)."""
        if event.get("type") != "keydown" or event.get("repeat"):
            return
        key = str(event.get("key", ""))
        if key in {"1", "2", "3", "4", "5", "6"}:
            self._on_option(int(key))
        elif key == "Enter" and self.awaiting_next:
            self._on_next()


def app_from_environment() -> widgets.Widget:
    """Build the app for the Voila page from ``MAMMO_CASE_SET_DIR`` and the page's query string
    (``?reader=<token>``, which Voila passes to the kernel as ``QUERY_STRING``)."""
    case_set_dir = os.environ.get(ENV_CASE_SET)
    if not case_set_dir:
        return widgets.HTML(f"<h3>No case set configured.</h3><p>Start this page with "
                            f"<code>make reader-app</code> (it sets {ENV_CASE_SET}).</p>")
    token = parse_qs(os.environ.get("QUERY_STRING", "")).get("reader", [None])[0]
    try:
        app = RatingApp(case_set_dir, double_answer_guard_s=float(os.environ.get(ENV_GUARD, "0.3")), token=token)
    except ReaderStudyError as exc:
        return widgets.HTML(f"<h3>The case set cannot be opened</h3><p>{exc}</p>")
    return app.widget


if __name__ == "__main__":
    sys.exit(main())
