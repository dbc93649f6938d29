"""The rating page opened to readers at other hospitals, in a real browser: Voila
started by ``rating_server.launch`` and Debian's headless Chromium driven by Playwright.

* an invitation link opens the page for its reader; an unknown token and a machine observer's id
  are refused with no case shown; the page has a proper title;
* practice: feedback on the practice patch itself with "Next", then a "practice is over" screen;
* the rating screen fits a 1366x768 screen with the browser's toolbars (viewport 1366x657);
* the same reader in a second tab is told, takes over, and no case is answered twice;
* a returning reader on a new device is welcomed back with k of N done;
* the kernel of a closed page is shut down (culling).

Screenshots of every screen go to /tmp/rating_screens/ (look at them).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from test_rating_app_browser import CHROMIUM, CHROMIUM_ARGS, _require_browser

from mammo_lib import testing
from mammo_lib.reader_study import case_set as rs
from mammo_lib.reader_study import invitations, rating_server

SHOTS = Path("/tmp/rating_screens")
VIEWPORT = {"width": 1366, "height": 657}  # a 1366x768 screen minus the browser's toolbars
GUARD_S = 0.3

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def _kernels_of(pid: int) -> list[int]:
    """Process ids of ipykernel processes below ``pid`` (Linux /proc)."""
    parent, cmd = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmd[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, IndexError, ValueError):
                continue

    def below(p: int) -> bool:
        while p in parent and p > 1:
            p = parent[p]
            if p == pid:
                return True
        return False

    return [p for p, c in cmd.items() if "ipykernel" in c and below(p)]


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def _progress(page) -> str:
    return page.inner_text(".mammo-progress").strip()


def _answer(page, option: int) -> str:
    before = _progress(page)
    page.click(f".mammo-option-{option}")
    page.wait_for_function(
        "b => { const p = document.querySelector('.mammo-progress');"
        " return !p || p.offsetParent === null || p.innerText.trim() !== b"
        " || document.querySelector('.mammo-next') !== null; }", arg=before, timeout=10000)
    time.sleep(GUARD_S + 0.05)
    return _progress(page) if page.query_selector(".mammo-progress:visible") else ""


def _wait_progress(page, test_js: str) -> None:
    page.wait_for_function(f"() => {{ const p = document.querySelector('.mammo-progress');"
                           f" return p !== null && ({test_js})(p.innerText); }}", timeout=10000)


def _open(context, url: str, expect: str):
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector(expect, timeout=60000)
    return page


@pytest.fixture
def study(tmp_path):
    _require_browser()
    testing.write_example_stores(tmp_path, 24, 24, size=32, seed=3)
    cs = rs.build_case_set(tmp_path, 4, 4, n_practice=2, seed=11, display_scale=4)
    tokens = invitations.add_readers(cs.case_set_dir.parent, ["R01", "R02"])
    proc, url = rating_server.launch(cs.case_set_dir, log_path=tmp_path / "voila.log",
                                     double_answer_guard_s=GUARD_S, cull_idle_s=4)
    yield cs, tokens, proc, url
    rating_server.stop(proc)


def test_invitation_practice_layout_and_refusals(study):
    from playwright.sync_api import sync_playwright

    cs, tokens, proc, url = study
    n = len(cs.case_ids)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=VIEWPORT)
        # refusals: no token, an unknown one, a machine observer's id
        for name, query in (("refused_no_token", ""), ("refused_unknown_token", "?reader=abc123"),
                            ("refused_machine_id", "?reader=machine-pixels")):
            page = _open(context, url + query, "text=cannot be opened")
            assert not page.query_selector(".mammo-image") and not page.query_selector(".mammo-start")
            _shot(page, name)
            page.close()
        # the personal link
        page = _open(context, f"{url}?reader={tokens['R01']}", "text=new reader, 8 cases")
        assert page.title() == "Reader study: real or synthetic?"
        assert not page.query_selector(".widget-text input:not([disabled])"), "no id to type"
        _shot(page, "start_invited")
        page.click(".mammo-start")
        page.wait_for_selector(".mammo-progress:visible", timeout=20000)
        time.sleep(GUARD_S + 0.05)
        assert _progress(page).startswith("Practice case 1 of 2")
        assert "New reader R01" in page.inner_text(".mammo-feedback")
        src = page.get_attribute("img.mammo-image", "src")
        _answer(page, 6)
        page.wait_for_selector(".mammo-next", timeout=10000)
        assert "Practice feedback: this patch is" in page.inner_text(".mammo-feedback")
        assert page.get_attribute("img.mammo-image", "src") == src, "feedback is shown on the practice patch"
        _shot(page, "practice_feedback")
        page.click(".mammo-next")
        _wait_progress(page, "p => p.includes('2 of 2')")
        time.sleep(GUARD_S + 0.05)
        _answer(page, 1)
        page.wait_for_selector(".mammo-next", timeout=10000)
        page.click(".mammo-next")
        page.wait_for_selector("text=Practice is over", timeout=10000)
        assert f"{n} scored cases" in page.inner_text(".mammo-practice-over")
        _shot(page, "practice_over")
        page.click(".mammo-begin")
        _wait_progress(page, f"p => p.trim() === 'Case 1 of {n}'")
        time.sleep(GUARD_S + 0.05)
        _shot(page, "rating_1366x768")
        for selector in [f".mammo-option-{k}" for k in range(1, 7)] + [".mammo-back", "img.mammo-image"]:
            box = page.locator(selector).bounding_box()
            assert box["y"] >= 0 and box["y"] + box["height"] <= VIEWPORT["height"], f"{selector} below the fold"
        assert page.locator("img.mammo-image").bounding_box()["height"] >= 300, "the patch stays large"
        assert _answer(page, 2) == f"Case 2 of {n}"
        assert not cs.ratings_path("R01").read_text().count("practice"), "practice is not scored"
        browser.close()
    records = [json.loads(line) for line in cs.ratings_path("R01").read_text().splitlines()]
    assert len(records) == 1 and records[0]["reader"] == "R01" and records[0]["shown_at"] < records[0]["answered_at"]


def test_two_tabs_returning_reader_and_kernel_culling(study):
    from playwright.sync_api import sync_playwright

    cs, tokens, proc, url = study
    n = len(cs.case_ids)
    link = f"{url}?reader={tokens['R02']}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        first = browser.new_context(viewport=VIEWPORT)
        a = _open(first, link, "text=new reader")
        a.click(".mammo-start")
        a.wait_for_selector(".mammo-progress:visible", timeout=20000)
        time.sleep(GUARD_S + 0.05)
        for _ in range(2):  # practice
            _answer(a, 3)
            a.click(".mammo-next")
            time.sleep(GUARD_S + 0.05)
        a.wait_for_selector("text=Practice is over")
        a.click(".mammo-begin")
        _wait_progress(a, "p => p.startsWith('Case 1')")
        time.sleep(GUARD_S + 0.05)
        _answer(a, 1)
        # a second tab (another device) of the same reader
        second = browser.new_context(viewport=VIEWPORT)
        b = _open(second, link, f"text=Welcome back, reader R02: 1 of {n} done")
        b.click(".mammo-start")
        b.wait_for_selector("text=open in another window", timeout=20000)
        _shot(b, "second_window_busy")
        b.click(".mammo-take-over")
        b.wait_for_selector(".mammo-progress:visible", timeout=20000)
        time.sleep(GUARD_S + 0.05)
        assert _progress(b) == f"Case 2 of {n}"
        assert f"Welcome back, R02: 1 of {n} done" in b.inner_text(".mammo-feedback")
        _shot(b, "second_window_took_over")
        a.click(".mammo-option-4")  # the first tab has lost the reader: it stops, writes nothing
        a.wait_for_selector("text=Continued in another window", timeout=10000)
        _shot(a, "first_window_stopped")
        for k in range(n - 1):
            _answer(b, 1 + k % 6)
        b.wait_for_selector("text=Finished: all", timeout=10000)
        _shot(b, "finished")
        records = [json.loads(line) for line in cs.ratings_path("R02").read_text().splitlines()]
        answers = [r["case_id"] for r in records if r["event"] == "answer"]
        assert sorted(answers) == sorted(cs.case_ids) and len(records) == n, "no case answered twice"
        # kernels of closed pages are shut down
        assert len(_kernels_of(proc.pid)) >= 2
        first.close()
        second.close()
        deadline = time.monotonic() + 60
        while _kernels_of(proc.pid) and time.monotonic() < deadline:
            time.sleep(1)
        assert _kernels_of(proc.pid) == [], "idle kernels of closed pages were not shut down"
        browser.close()
    assert os.path.exists(cs.ratings_path("R02"))
