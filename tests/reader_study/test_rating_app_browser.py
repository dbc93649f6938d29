"""End-to-end test of the rating page in a real browser: Voila on 127.0.0.1 (started by the
``serve`` command) driven by Debian's headless Chromium through Playwright.

A reader enters an id, rates cases with clicks, a double click and keys 1-6, revises one
answer; the server is killed and restarted, the page reloaded, the reader resumes and
finishes. The ratings file must hold every answer exactly once, and neither the page nor any
websocket text frame may ever contain the key (truth column, key path, patch ids, stores).
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mammo_lib import testing
from mammo_lib.reader_study import case_set as rs
from mammo_lib.reader_study import files as sf
from mammo_lib.reader_study import rating_app, rating_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT = Path("/tmp/rating_page.png")
GUARD_S = 0.3
# keys 1-6 need the ipyevents widget library; without it the page works with buttons only
HAVE_KEYS = rating_app.KEYS_AVAILABLE

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


def _require_browser():
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (Debian package 'chromium'; `make browser` installs it)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("python package 'playwright' is missing (`pip install -e .[dev]`)")


def _progress(page) -> str:
    return page.inner_text(".mammo-progress").strip()


def _wait_change(page, before: str, timeout_ms: int = 10000) -> str:
    page.wait_for_function(
        "b => { const p = document.querySelector('.mammo-progress');"
        " const e = document.querySelector('.mammo-app h2');"
        " return (e && e.innerText.startsWith('Finished')) || (p && p.innerText.trim() !== b); }",
        arg=before, timeout=timeout_ms)
    time.sleep(GUARD_S + 0.05)  # a deliberate answer comes after the double-answer guard
    return _progress(page) if page.query_selector(".mammo-progress:visible") else "finished"


def test_rate_kill_restart_resume_in_chromium(tmp_path):
    _require_browser()
    from playwright.sync_api import sync_playwright

    testing.write_example_stores(tmp_path, 16, 16, size=32, seed=3)
    cs = rs.build_case_set(tmp_path, 5, 5, n_practice=0, seed=11)
    key = sf.load_key(cs)
    n = len(cs.case_ids)
    secrets = ["key.csv", str(cs.key_path.parent), "truth", "lesion.zarr", "synthetic.zarr",
               "held_out", *key["patch_id"]]
    seen_text: list[str] = []
    log = tmp_path / "voila.log"
    port = rating_server.free_port()
    proc, url = rating_server.launch(cs.case_set_dir, port=port, log_path=log,
                                  double_answer_guard_s=GUARD_S)
    try:
        # Voila serves no files: the key (or anything else) cannot be fetched by path
        for probe in (f"voila/files/{cs.key_path}", "voila/files/../../key/key.csv",
                      f"files/{cs.key_path}"):
            try:
                with urllib.request.urlopen(url + probe, timeout=5) as resp:
                    body = resp.read().decode(errors="replace")
                    assert "truth" not in body and "synthetic-0" not in body, probe
            except urllib.error.HTTPError as exc:
                assert exc.code in (403, 404), probe
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1100, "height": 900})
            page = context.new_page()
            page.on("websocket", lambda ws: ws.on("framereceived", lambda f: seen_text.append(
                f if isinstance(f, str) else bytes(f).decode("utf-8", errors="replace"))))

            page.goto(url)
            page.wait_for_selector("text=Reader id", timeout=60000)
            # no reader id, then a bad one: cannot start
            page.click("button:has-text('Start')")
            page.wait_for_selector("text=Cannot start", timeout=10000)
            page.fill(".widget-text input", "not a valid id!")
            page.click("button:has-text('Start')")
            page.wait_for_selector("text=is not valid", timeout=10000)
            assert not page.query_selector(".mammo-progress:visible")

            page.fill(".widget-text input", "R07")
            page.click("button:has-text('Start')")
            page.wait_for_selector(".mammo-progress:visible", timeout=20000)
            time.sleep(GUARD_S + 0.05)
            progress = _progress(page)
            assert progress == f"Case 1 of {n}"
            page.screenshot(path=str(SCREENSHOT))
            # two answers by click
            for option in (1, 6):
                page.click(f".mammo-option-{option}")
                progress = _wait_change(page, progress)
            assert progress == f"Case 3 of {n}"
            # a double click records one answer
            page.dblclick(".mammo-option-2")
            progress = _wait_change(page, progress)
            time.sleep(0.5)
            assert _progress(page) == f"Case 4 of {n}"
            # keys 1-6 with the mouse over the image
            page.hover(".mammo-image")
            for key in ("3", "5"):
                if HAVE_KEYS:
                    page.keyboard.press(key)
                else:
                    page.click(f".mammo-option-{key}")
                progress = _wait_change(page, progress)
            assert progress == f"Case 6 of {n}"
            # go back and revise the previous answer
            page.click(".mammo-back")
            progress = _wait_change(page, progress)
            assert progress.startswith(f"Case 5 of {n}") and "revising" in progress
            page.click(".mammo-option-4")
            progress = _wait_change(page, progress)
            assert progress == f"Case 6 of {n}"
            seen_text.append(page.content())

            # the server dies (kill) and is started again on the same port; the tab reloads
            rating_server.stop(proc)
            proc, url = rating_server.launch(cs.case_set_dir, port=port, log_path=log,
                                          double_answer_guard_s=GUARD_S)
            page.reload()
            page.wait_for_selector("text=Reader id", timeout=60000)
            page.fill(".widget-text input", "R07")
            page.click("button:has-text('Start')")
            page.wait_for_selector(".mammo-progress:visible", timeout=20000)
            time.sleep(GUARD_S + 0.05)
            progress = _progress(page)
            assert progress == f"Case 6 of {n}", "did not resume at the first unanswered case"
            assert "Welcome back" in page.inner_text(".mammo-feedback")
            # rate the rest: clicks and keys alternate
            page.hover(".mammo-image")
            for i in range(n - 5):
                if i % 2 and HAVE_KEYS:
                    page.keyboard.press(str(1 + i % 6))
                else:
                    page.click(f".mammo-option-{1 + i % 6}")
                progress = _wait_change(page, progress)
                if progress != "finished":
                    page.hover(".mammo-image")
            page.wait_for_selector("text=Finished: all", timeout=10000)
            seen_text.append(page.content())
            browser.close()
    finally:
        rating_server.stop(proc)

    lines = cs.ratings_path("R07").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    answers = [r["case_id"] for r in records if r["event"] == "answer"]
    revises = [r for r in records if r["event"] == "revise"]
    assert sorted(answers) == sorted(cs.case_ids), "every case answered exactly once"
    assert len(revises) == 1 and revises[0]["option"] == 4
    assert len(records) == n + 1
    assert answers == cs.reader_order("R07"), "answers follow the reader's own order"
    assert [r["option"] for r in records[:2]] == [1, 6]
    assert {r["case_set_id"] for r in records} == {cs.case_set_id}
    assert all(r["reader_kind"] == "human" and r["app_version"] for r in records)
    # the truth never reached the browser
    blob = "\n".join(seen_text)
    assert len(seen_text) > 10
    for secret in secrets:
        assert secret not in blob, f"the page or a websocket frame contained {secret!r}"
    assert '"real"' not in blob and '"synthetic"' not in blob
