"""Latency of the rating page: time from a click on an answer button to the next case being
displayed in the browser (new image loaded and painted, "Case k of N" updated).

Voila serves a case set of 128x128 patches at display scale 4 (512x512 PNGs, as in the default
study) on 127.0.0.1; Debian's headless Chromium clicks through the cases with Playwright. The
reference measured in the same run is the kernel-side work of one answer in-process (append +
fsync the ratings line, load and send the next PNG), so the ratio shows what the transport and
the browser add. Target: median < 150 ms.

    .venv/bin/python benchmarks/bench_rating_latency.py [--quick] [--cases 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mammo_lib import testing
from mammo_lib.reader_study import case_set as rs
from mammo_lib.reader_study import rating_app, rating_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TARGET_MS = 150.0

MEASURE_JS = """
async (option) => {
  const prog = document.querySelector('.mammo-progress');
  const img = document.querySelector('img.mammo-image');
  const before = prog.innerText;
  return await new Promise((resolve) => {
    let tText = null, tImg = null;
    const done = () => {
      if (tText === null || tImg === null) return;
      requestAnimationFrame(() => resolve(performance.now() - t0));
    };
    new MutationObserver((_, obs) => {
      if (tText === null && prog.innerText !== before) { tText = performance.now(); obs.disconnect(); done(); }
    }).observe(prog, {subtree: true, childList: true, characterData: true});
    img.addEventListener('load', () => { tImg = performance.now(); done(); }, {once: true});
    const t0 = performance.now();
    document.querySelector('.mammo-option-' + option).click();
  });
}
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def in_process_reference(case_set_dir: Path, n: int) -> list[float]:
    """Kernel-side time of one answer: the same handler, no browser."""
    app = rating_app.RatingApp(case_set_dir, double_answer_guard_s=0)
    app.reader_text.value = "bench_ref"
    app.start_button.click()
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        app.option_buttons[i % 6].click()
        times.append((time.perf_counter() - t0) * 1000)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 cases instead of 50")
    parser.add_argument("--cases", type=int, default=50)
    args = parser.parse_args(argv)
    n = 10 if args.quick else args.cases
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("playwright is not installed: pip install playwright")
        return 1
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing (Debian package chromium)")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        testing.write_example_stores(run_dir, n + 10, n + 10, size=128, seed=0)
        cs = rs.build_case_set(run_dir, n // 2 + 1, n - n // 2 + 1, seed=0, display_scale=4)
        reference = in_process_reference(cs.case_set_dir, n)
        proc, url = rating_server.launch(cs.case_set_dir, double_answer_guard_s=0.0,
                                      log_path=run_dir / "voila.log")
        latencies: list[float] = []
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1100, "height": 900})
                page.goto(url)
                page.wait_for_selector("text=Reader id", timeout=60000)
                page.fill(".widget-text input", "bench")
                page.click("button:has-text('Start')")
                page.wait_for_selector(".mammo-progress:visible", timeout=20000)
                time.sleep(0.5)
                for i in range(n):
                    latencies.append(float(page.evaluate(MEASURE_JS, 1 + i % 6)))
                    time.sleep(0.05)
                browser.close()
        finally:
            rating_server.stop(proc)
    med, p90 = statistics.median(latencies), percentile(latencies, 0.9)
    ref = statistics.median(reference)
    print(f"click -> next case displayed, {n} cases (Voila + headless Chromium, 512x512 PNG):")
    print(f"  median {med:.1f} ms   p90 {p90:.1f} ms   min {min(latencies):.1f}   max {max(latencies):.1f}")
    print(f"  reference (same handler in-process, no browser): median {ref:.1f} ms")
    print(f"  ratio browser / in-process: {med / ref:.1f}x")
    print(f"  ratio median / target {TARGET_MS:.0f} ms: {med / TARGET_MS:.2f} "
          f"({'meets' if med < TARGET_MS else 'misses'} the target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
