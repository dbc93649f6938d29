"""The study report opens offline in a real browser (Debian's headless Chromium through
Playwright) with every image loaded, and the bitwise rerun check finds what differs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mammo_lib.report import build_report
from mammo_lib.verify import compare_run_folders, notebook_without_timings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def open_offline(page_url: str, screenshot: Path | None = None) -> dict:
    """Load a page with every non-file request blocked; return what loaded and what was blocked."""
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (Debian package 'chromium'; `make browser` installs it)")
    pytest.importorskip("playwright.sync_api", reason="python package 'playwright' is missing")
    from playwright.sync_api import sync_playwright

    blocked: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})

            def route(r):
                if r.request.url.startswith(("file:", "data:")):
                    r.continue_()
                else:
                    blocked.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.goto(page_url, wait_until="load")
            images = page.eval_on_selector_all(
                "img", "els => els.map(e => ({src: e.src.slice(0, 40), ok: e.complete && e.naturalWidth > 0}))")
            links = page.eval_on_selector_all("a[href$='.html']", "els => els.map(e => e.getAttribute('href'))")
            title = page.title()
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return {"images": images, "blocked": blocked, "links": links, "title": title}


@pytest.mark.browser
def test_report_of_the_smoke_study_opens_offline_with_every_image(smoke_run):
    index = smoke_run / "report" / "index.html"
    assert index.exists(), "make study must end by writing the report"
    seen = open_offline(index.as_uri(), screenshot=Path("/tmp/report_smoke.png"))
    assert seen["blocked"] == [], f"the report asked the network for {seen['blocked']}"
    assert len(seen["images"]) >= 4 and all(img["ok"] for img in seen["images"]), seen["images"]
    assert seen["title"].startswith("mammo-synth-study report")
    notebooks = sorted(p.name for p in smoke_run.glob("[0-9][0-9]_*.ipynb"))
    assert sorted(seen["links"]) == [n.replace(".ipynb", ".html") for n in notebooks]
    text = index.read_text()
    for needle in ("built-in phantom", "No human has rated yet", "paper observer 1", "Obuchowski-Rockette",
                   "fig2_tsne", "git commit"):
        assert needle in text, needle
    first = open_offline((smoke_run / "report" / seen["links"][0]).as_uri())
    assert first["blocked"] == [] and all(img["ok"] for img in first["images"])
    page = (smoke_run / "report" / seen["links"][0]).read_text()
    assert "<details class=\"mammo-code\">" in page and "<script src=" not in page


def test_report_of_a_folder_that_is_no_run_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        build_report(tmp_path)


def test_compare_run_folders_ignores_only_timings(tmp_path):
    import nbformat

    a, b = tmp_path / "a", tmp_path / "b"
    for root, t in ((a, "2026-01-01T00:00:00"), (b, "2026-02-02T00:00:00")):
        (root / "x").mkdir(parents=True)
        (root / "x" / "data.csv").write_text("1,2\n")
        (root / "timings.json").write_text(json.dumps({"started": t}))
        (root / "x" / "timings.json").write_text(json.dumps({"seconds": t}))
        nb = nbformat.v4.new_notebook()
        cell = nbformat.v4.new_code_cell("1", id="c1")  # source cells keep their ids
        cell.metadata["papermill"] = {"start_time": t, "duration": 1.0, "status": "completed"}
        cell.metadata["execution"] = {"iopub.execute_input": t}
        nb.cells = [cell]
        nb.metadata["papermill"] = {"start_time": t, "end_time": t, "duration": 2.0, "parameters": {"seed": 0}}
        nbformat.write(nb, root / "01_x.ipynb")
    assert notebook_without_timings(a / "01_x.ipynb") == notebook_without_timings(b / "01_x.ipynb")
    same = compare_run_folders(a, b)
    assert same["identical"] and same["n_compared"] == 2
    (b / "x" / "data.csv").write_text("1,3\n")
    (b / "extra.txt").write_text("")
    nb = nbformat.read(b / "01_x.ipynb", 4)
    nb.metadata["papermill"]["parameters"]["seed"] = 1
    nbformat.write(nb, b / "01_x.ipynb")
    diff = compare_run_folders(a, b)
    assert not diff["identical"] and diff["differing"] == ["01_x.ipynb", "x/data.csv"]
    assert diff["only_in_rerun"] == ["extra.txt"] and diff["only_here"] == []
