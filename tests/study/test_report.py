"""The study report opens offline in a real browser (Debian's headless Chromium through
Playwright) with every image loaded, and the bitwise rerun check finds what differs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mammo_lib.study.report import build_report
from mammo_lib.study.verify import compare_run_folders, notebook_without_timings

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


# --- the first result: "Can a machine tell them apart?" -----------------------------------

def _held_out(label: str, names: tuple[str, str], shift: float, n: int = 40, seed: int = 0):
    """A C2ST result from chosen held-out scores (the second set's logits shifted by ``shift``),
    with its statistics computed by the study's own code (no network is trained)."""
    import numpy as np

    from mammo_lib.feature_space.c2st.observer import ObserverConfig
    from mammo_lib.feature_space.c2st.stats import summarise
    from mammo_lib.feature_space.c2st.two_sample import C2STResult

    rng = np.random.default_rng(seed)
    is_second = np.repeat([False, True], n)
    score = 1.0 / (1.0 + np.exp(-(rng.normal(size=2 * n) + shift * is_second)))
    fold = np.tile(np.arange(4), n // 2)
    stats = summarise(score, is_second, fold, 200, seed, 7)
    return C2STResult(label=label, names=names, n_permutations=200, n_per_set=n, n_given=(n, n),
                      index=np.concatenate([np.arange(n), np.arange(n)]), is_second=is_second, fold=fold,
                      score=score, epochs=[10] * 4, config=ObserverConfig(), **stats)


def _c2st_record(null_shift: float, positive_shift: float, n: int = 40) -> dict:
    """The ``c2st`` entry stage 03 writes (:func:`mammo_lib.feature_space.c2st.records.c2st_record`), for one
    generator "dcgan" that the observer tells apart, and controls as asked."""
    import numpy as np
    import pandas as pd

    from mammo_lib.feature_space.c2st.observer import ObserverConfig
    from mammo_lib.feature_space.c2st.records import c2st_record
    from mammo_lib.feature_space.c2st.study import C2STStudy
    from mammo_lib.feature_space.sampling import GroupSample

    groups = np.array(["lesion"] * n + ["synthetic"] * n + ["normal"] * n)
    sample = GroupSample(patches=np.zeros((3 * n, 4, 4), np.uint8), groups=groups,
                         patch_ids=np.array([f"{g}-{i}" for i, g in enumerate(groups)]),
                         generators=np.where(groups == "synthetic", "dcgan", ""))
    null = _held_out("null", ("real half A", "real half B"), null_shift, n // 2, seed=1)
    study = C2STStudy(by_generator={"dcgan": _held_out("dcgan", ("real", "dcgan"), 4.0, n)}, null=null,
                      null_repeats=[null],
                      positive=_held_out("positive", ("real lesion", "normal tissue"), positive_shift, n // 2,
                                         seed=2),
                      sweep=pd.DataFrame(), sweep_generator=None,
                      null_splits=[(np.arange(n // 2), np.arange(n // 2))],
                      positive_rows=(np.arange(n // 2), np.arange(n // 2)), config=ObserverConfig())
    return c2st_record(study, sample)


def _png(path: Path, colour: tuple[int, int, int]) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (6, 4), colour).save(path)


FIGURES = {"c2st_verdict": (200, 0, 0), "c2st_gallery_dcgan": (0, 200, 0), "c2st_saliency_dcgan": (0, 0, 200),
           "c2st_frequency_sweep": (200, 200, 0), "fig2_tsne": (0, 200, 200), "fig2_tsne_cnn": (200, 0, 200)}


def _readability(pixels_readable: bool) -> dict:
    return {"pixels": {"space": "raw-pixel", "readable": pixels_readable,
                       "sentence": "PIXELS-SENTENCE: in this raw-pixel t-SNE real lesions are "
                                   + ("told" if pixels_readable else "not told") + " from normal tissue."},
            "cnn": {"space": "lesion-CNN", "readable": True, "sentence": "CNN-SENTENCE: the picture can show it."}}


def _write_run(root: Path, c2st: dict | None, readers: dict[str, str], pixels_readable: bool | None) -> Path:
    """A run folder as the stages leave it: run.json, stage 03's metrics and figures, stage 05's metrics."""
    root.mkdir(parents=True)
    (root / "run.json").write_text(json.dumps({
        "profile": "default", "seed": 0,
        "notebooks": [{"notebook": "01_extract_patches.ipynb", "status": "ok", "parameters": {"source_kind": "phantom"}}]}))
    metrics = {"metrics_by_generator": {"dcgan": {"pixels": {
        "one_nn_accuracy": {"value": 0.53, "ci_low": 0.49, "ci_high": 0.57},
        "frechet_distance": {"value": 30.0, "real_split_half": 35.0, "real_half_vs_synthetic_half": 100.0}}}}}
    if c2st is not None:
        metrics["c2st"] = c2st
    if pixels_readable is not None:
        metrics["tsne_readability"] = _readability(pixels_readable)
    (root / "feature_space").mkdir()
    (root / "feature_space" / "metrics.json").write_text(json.dumps(metrics))
    (root / "feature_space" / "metrics_table.csv").write_text(
        "feature_space,generator,metric,value,ci_low,ci_high,reference,note\n"
        "pixels,dcgan,1-NN accuracy real vs synthetic,0.53,0.49,0.57,0.5 = indistinguishable,\n")
    for stem, colour in FIGURES.items():
        _png(root / "feature_space" / "figures" / f"{stem}.png", colour)
    aucs = {"dr-a": 0.613, "machine-cnn": 0.947, "machine-pixels": 0.512}
    roc = {"reader_kind": readers, "readers": {
        r: {"reader_kind": k, "n_cases": 150, "auc": aucs[r], "accuracy": {"estimate": 0.6},
            "auc_delong": {"ci_low": aucs[r] - 0.05, "ci_high": aucs[r] + 0.04}} for r, k in readers.items()}}
    (root / "roc").mkdir()
    (root / "roc" / "metrics.json").write_text(json.dumps(roc))
    return root


def _between(page: str, start: str, end: str) -> str:
    i = page.index(start)
    return page[i:page.index(end, i)]


def _words(fragment: str) -> str:
    """What a reader sees: tags removed, entities resolved, white space collapsed."""
    import html
    import re

    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def _uri(run: Path, stem: str) -> str:
    from mammo_lib.study.report import png_data_uri

    return png_data_uri(run / "feature_space" / "figures" / f"{stem}.png")


@pytest.fixture(scope="module")
def uncalibrated_run(tmp_path_factory):
    """A run whose null control fails, with a human reader, machine-cnn and a baseline machine reader."""
    c2st = _c2st_record(null_shift=-2.0, positive_shift=3.0)
    assert c2st["calibrated"] is False and c2st["sensitive"] is True
    run = _write_run(tmp_path_factory.mktemp("c2st") / "run", c2st,
                     {"dr-a": "human", "machine-cnn": "machine", "machine-pixels": "machine"}, pixels_readable=False)
    return run, c2st, build_report(run).read_text()


def test_the_machine_verdict_is_the_first_result_with_its_numbers_and_controls(uncalibrated_run):
    run, c2st, page = uncalibrated_run
    first = page.index('id="machine"')
    assert "Can a machine tell them apart?" in page[first:first + 200]
    assert first < page.index('id="cannot-say"') < page.index('id="paper"') < page.index('id="realism"')
    box = _between(page, 'id="machine"', "</section>")
    words = _words(box)
    test = c2st["by_generator"]["dcgan"]
    auc = test["auc"]
    assert f"{auc['value']:.3f}" in words and f"[{auc['ci_low']:.3f}, {auc['ci_high']:.3f}]" in words
    assert f"{test['accuracy']['estimate']:.3f}" in words
    assert " ".join(test["verdict"].split()) in words
    assert " ".join(c2st["controls_text"].split()) in words
    for control in ("null", "positive"):
        a = c2st["controls"][control]["auc"]
        assert f"{a['value']:.3f}" in words and f"[{a['ci_low']:.3f}, {a['ci_high']:.3f}]" in words
    assert "The test is not calibrated on this data" in words
    assert "too weak" not in words
    assert _uri(run, "c2st_verdict") in box


def test_human_readers_and_machine_cnn_stand_beside_the_machine(uncalibrated_run):
    _, _, page = uncalibrated_run
    beside = _words(_between(page, "Readers beside the machine", "</section>"))
    assert "dr-a human" in beside and "0.613 [0.563, 0.653]" in beside
    assert "machine-cnn machine" in beside and "0.947" in beside
    assert "machine-pixels" not in beside  # a baseline, not the observer the study leads with
    assert "No human has rated" not in beside


def test_no_page_claims_a_machine_is_a_stronger_test_than_a_person(uncalibrated_run, tmp_path):
    _, _, page = uncalibrated_run
    machines_only = build_report(_write_run(tmp_path / "m", _c2st_record(0.0, 3.0), {"machine-cnn": "machine"},
                                            pixels_readable=True)).read_text()
    assert "No human has rated yet" in _words(machines_only)
    for text in (page, machines_only):
        assert "stronger test than" not in _words(text).lower()


def test_the_paper_table_has_a_c2st_row(uncalibrated_run):
    _, c2st, page = uncalibrated_run
    paper = _words(_between(page, 'id="paper"', 'id="tsne"'))
    auc = c2st["by_generator"]["dcgan"]["auc"]
    row = paper[paper.index("can a machine tell them apart?"):]
    assert row.split("CI]")[1].strip().startswith("not measured")
    assert f"dcgan: AUC {auc['value']:.3f} [{auc['ci_low']:.3f}, {auc['ci_high']:.3f}]" in row
    assert "not calibrated on this data" in row


def test_realism_metrics_lead_with_the_strong_measure_when_the_weak_one_disagrees(uncalibrated_run):
    _, c2st, page = uncalibrated_run
    realism = _words(_between(page, 'id="realism"', 'id="readers"'))
    assert "the strong and the weak measures disagree" in realism
    assert "the 1-NN accuracy is 0.53 in raw pixels" in realism
    assert "Fréchet" not in realism.split("disagree")[1].split(".")[0]  # 100 is far above its yardstick 35
    assert realism.index("C2ST held-out AUC") < realism.index("1-NN accuracy real vs synthetic")


def test_galleries_saliency_and_sweep_are_key_figures_with_captions(uncalibrated_run):
    run, _, page = uncalibrated_run
    figures = _between(page, 'id="figures"', 'id="realism"')
    for stem, hint in (("c2st_gallery_dcgan", "most synthetic"), ("c2st_saliency_dcgan", "gradient"),
                       ("c2st_frequency_sweep", "high-pass")):
        src = _uri(run, stem)
        assert src in figures, stem
        caption = _words(figures[figures.index(src):].split("</figcaption>")[0] + "</figcaption>")
        assert hint in caption, (stem, caption)
    assert "dcgan" in _words(figures)


def test_an_unreadable_pixel_tsne_is_said_and_the_cnn_tsne_stands_beside_it(uncalibrated_run):
    run, _, page = uncalibrated_run
    tsne = _between(page, 'id="tsne"', 'id="figures"')
    assert "PIXELS-SENTENCE" in tsne and "CNN-SENTENCE" in tsne
    assert _uri(run, "fig2_tsne") in tsne and _uri(run, "fig2_tsne_cnn") in tsne


def test_a_failed_positive_control_says_the_observer_is_too_weak(tmp_path):
    c2st = _c2st_record(null_shift=0.0, positive_shift=0.2)
    assert c2st["calibrated"] is True and c2st["sensitive"] is False
    run = _write_run(tmp_path / "run", c2st, {"machine-pixels": "machine"}, pixels_readable=True)
    page = build_report(run).read_text()
    box = _words(_between(page, 'id="machine"', "</section>"))
    assert "The observer is too weak on this data" in box
    assert "not calibrated" not in box
    assert "No human has rated this run's case set yet" in box
    tsne = _between(page, 'id="tsne"', 'id="figures"')
    assert _uri(run, "fig2_tsne") in tsne and _uri(run, "fig2_tsne_cnn") not in tsne


def test_an_older_run_without_the_test_still_renders_and_says_so(tmp_path):
    run = _write_run(tmp_path / "run", None, {"machine-pixels": "machine"}, pixels_readable=None)
    page = build_report(run).read_text()
    box = _words(_between(page, 'id="machine"', "</section>"))
    assert "The CNN two-sample test was not run in this run" in box
    paper = _words(_between(page, 'id="paper"', 'id="tsne"'))
    assert "not measured not run in this run" in paper
    assert "did not measure whether its t-SNE" in _words(_between(page, 'id="tsne"', 'id="figures"'))
    assert "disagree" not in _words(_between(page, 'id="realism"', 'id="readers"'))


def test_headline_results_of_stage_03_carry_the_c2st_and_its_controls(uncalibrated_run, tmp_path):
    from mammo_lib.study.results import headline_results

    run, c2st, _ = uncalibrated_run
    got = headline_results(run, "03_feature_space")["c2st"]
    assert got["generator"] == "dcgan" and got["auc"] == c2st["by_generator"]["dcgan"]["auc"]["value"]
    assert got["null_auc"] == c2st["controls"]["null"]["auc"]["value"] < 0.5
    assert got["positive_auc"] == c2st["controls"]["positive"]["auc"]["value"] > 0.75
    assert got["calibrated"] is False and got["ci_low"] > 0.5
    old = _write_run(tmp_path / "old", None, {}, pixels_readable=None)
    assert "c2st" not in headline_results(old, "03_feature_space")


def test_with_several_generators_each_generators_machine_cnn_stands_beside_its_test(tmp_path):
    from mammo_lib.study.report_c2st import readers_beside

    test = {"auc": {"value": 0.99, "ci_low": 0.98, "ci_high": 1.0}, "n_per_set": 100}
    c2st = {"by_generator": {"dcgan": test, "mine": test}}
    readers = {f"machine-cnn-{g}": {"reader_kind": "machine", "auc": 0.9 if g == "dcgan" else 0.7, "n_cases": 40,
                                    "auc_delong": {"ci_low": 0.8, "ci_high": 1.0}} for g in ("dcgan", "mine")}
    readers["machine-pixels-dcgan"] = {"reader_kind": "machine", "auc": 0.5, "n_cases": 40}
    roc = {"by_generator": {g: {"readers": readers} for g in ("dcgan", "mine")}}
    (tmp_path / "roc").mkdir()
    (tmp_path / "roc" / "metrics.json").write_text(json.dumps(roc))
    table = readers_beside(tmp_path, c2st)
    cnn = table[table["observer"].str.startswith("machine-cnn")]
    assert cnn[["generator", "observer"]].values.tolist() == [["dcgan", "machine-cnn-dcgan"], ["mine", "machine-cnn-mine"]]
    assert "machine-pixels-dcgan" not in set(table["observer"])


def test_the_c2st_table_leaves_out_controls_too_small_to_run():
    """A small run (e.g. the smoke phantom at an unlucky seed) skips the controls: the report says
    why in a note instead of failing."""
    from mammo_lib.study import report_c2st

    test = {"auc": {"value": 0.9, "ci_low": 0.8, "ci_high": 1.0}, "sets": ["real", "dcgan"], "n_per_set": 8}
    table = report_c2st.test_table({"by_generator": {"dcgan": test}, "controls": {"null": None, "positive": None},
                                    "notes": ["null control: too few lesions"]})
    assert list(table["test"]) == ["dcgan"] and list(table["AUC"]) == ["0.900"]
    assert report_c2st.control_alarms({"controls": {"null": None}, "notes": ["null control: too few lesions"]}) == [
        "Not run on this data: null control: too few lesions"]
