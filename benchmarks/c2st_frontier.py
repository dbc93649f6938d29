"""The frontier of realism against training time: C2ST AUC per candidate, CPU budget and seed.

Helpers of ``bench_dcgan_quality.py`` (issue 21); not a benchmark itself (no ``bench_`` prefix):

- :func:`snapshot_iterations`: the iterations at which a candidate has trained 1, 2, 4, ...
  CPU minutes, from its measured CPU seconds per iteration; one training run to the last of
  them keeps a checkpoint at each (``train_dcgan(..., on_checkpoint=...)``), so a 60-minute run
  gives every shorter point of the frontier. A snapshot is exactly what a run of that many
  iterations would have saved when nothing in training depends on the run's length: true for
  every option but ``instance_noise`` without ``instance_noise_iterations``, which anneals over
  the whole run (:func:`snapshot_caveat` warns; use separate ``--budget`` runs for such
  candidates, or a fixed annealing horizon).
- :func:`read_records` / :func:`frontier_table`: the JSON lines that ``--record`` appends (one
  per scored candidate, budget and seed, plus the null control), as the table of C2ST AUC per
  dataset, candidate and seed over the budgets, C2ST first;
- :func:`frontier_figure`: that table as a figure, one panel per dataset: C2ST AUC against the
  measured training CPU minutes (log scale), one line per candidate (seed 0), the other seeds as points,
  the real-vs-real null and the issue's targets as horizontal lines.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

# the frontier's budgets, CPU minutes of one thread (issue 21)
FRONTIER_MINUTES = (1, 2, 4, 8, 16, 32, 60)
# issue 21's targets: profile -> (CPU minutes, {dataset: C2ST AUC at most})
TARGETS = {"default": (8, {"phantom": 0.80, "mias": 0.70}), "long": (60, {"phantom": 0.70, "mias": 0.65})}


def snapshot_iterations(minutes: list[float], seconds_per_iteration: float) -> tuple[int, dict[int, float]]:
    """The checkpoint interval and the iterations at which each budget is reached.

    Parameters
    ----------
    minutes : list of float
        CPU budgets in minutes, ascending, each a whole multiple of the first.
    seconds_per_iteration : float
        Measured CPU seconds of one training iteration (> 0).

    Returns
    -------
    every : int
        Iterations per first budget: the checkpoint interval of the run.
    marks : dict
        Iteration -> budget in minutes, one per budget (iteration = ``every`` times the budget
        over the first budget).

    Raises
    ------
    ValueError
        When the budgets are not ascending multiples of the first or the cost is not positive.
    """
    if seconds_per_iteration <= 0:
        raise ValueError(f"CPU seconds per iteration must be > 0, got {seconds_per_iteration}")
    first = minutes[0]
    ratios = [m / first for m in minutes]
    if any(abs(r - round(r)) > 1e-9 for r in ratios) or sorted(set(ratios)) != ratios:
        raise ValueError(f"frontier budgets {minutes} must ascend, each a whole multiple of the first")
    every = max(1, int(round(first * 60 / seconds_per_iteration)))
    return every, {every * int(round(r)): m for r, m in zip(ratios, minutes, strict=True)}


def snapshot_caveat(config: dict) -> str | None:
    """Why a snapshot of this candidate's run is not the run of that length.

    Parameters
    ----------
    config : dict
        TrainConfig fields of the candidate.

    Returns
    -------
    str or None
        The reason (instance noise annealed over the whole run), or None when every snapshot is
        exactly the shorter run.
    """
    if float(config.get("instance_noise", 0) or 0) > 0 and not config.get("instance_noise_iterations"):
        return ("instance noise anneals over the whole run, so a snapshot is not the shorter run "
                "(train that budget with --budget instead)")
    return None


def read_records(paths: list[str | Path]) -> list[dict]:
    """Every JSON line of the record files (``--record``), in order.

    Parameters
    ----------
    paths : list of str or Path

    Returns
    -------
    list of dict

    Raises
    ------
    SystemExit
        When a line is not JSON (the message names the file and line).
    """
    records = []
    for path in paths:
        for n, line in enumerate(Path(path).read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise SystemExit(f"{path}, line {n}: not a JSON record ({exc})") from exc
    return records


def _latest(records: list[dict]) -> dict[tuple, dict]:
    """Keep the last record per (dataset, candidate, seed, budget): a rerun replaces the earlier line."""
    out: dict[tuple, dict] = {}
    for r in records:
        out[(r["dataset"], r["name"], int(r["seed"]), round(float(r["budget_cpu_s"]) / 60.0, 3))] = r
    return out


def frontier_table(records: list[dict]) -> list[str]:
    """The frontier as text lines: per dataset, the null line per seed, then one line per candidate and
    seed with its C2ST AUC [95% CI] at every budget it was scored at (``*`` a snapshot of a longer run).

    Parameters
    ----------
    records : list of dict
        From :func:`read_records`.

    Returns
    -------
    list of str
    """
    latest = _latest(records)
    budgets = sorted({k[3] for k in latest if k[1] != "null"})
    lines = []
    for dataset in sorted({k[0] for k in latest}):
        lines.append(f"== {dataset}: C2ST AUC (held-out, 4 folds; lower is better, 0.5 the floor) by training CPU "
                     "minutes (nominal: a budget became iterations by a probe of the CPU s per iteration; each "
                     "cell also gives the iterations and the measured training CPU s); * a snapshot of a "
                     "longer run ==")
        lines.append(f"{'candidate':<28} {'seed':>4} | " + " | ".join(f"{b:>6g} min: AUC, it, CPU" for b in budgets))
        for (ds, name, seed, _), r in sorted(latest.items()):
            if ds == dataset and name == "null":
                lines.append(f"{'null: real vs real':<28} {seed:>4} | c2st {r['c2st']:.3f} "
                             f"[{r['c2st_lo']:.3f}, {r['c2st_hi']:.3f}]")
        keys = sorted({(k[1], k[2]) for k in latest if k[0] == dataset and k[1] != "null"})
        for name, seed in keys:
            cells = []
            for b in budgets:
                r = latest.get((dataset, name, seed, b))
                cells.append(f"{r['c2st']:6.3f}{'*' if r.get('snapshot_of') else ' '} {r['iterations']:>5}it {r['cpu_s']:4.0f}s"
                             if r else f"{'-':>6}{'':>15}")
            lines.append(f"{name:<28} {seed:>4} | " + " | ".join(cells))
        for name in sorted({k[0] for k in keys}):
            cells, several = [], False
            for b in budgets:
                aucs = [r["c2st"] for (ds, n, _, m), r in latest.items() if ds == dataset and n == name and m == b]
                several |= len(aucs) > 1
                cells.append(f"{np.median(aucs):6.3f} (n {len(aucs)}){'':>8}" if len(aucs) > 1 else f"{'':>22}")
            if several:
                lines.append(f"{name + ': median of seeds':<33} | " + " | ".join(cells))
        lines.append("")
    return [line.rstrip() for line in lines]


def frontier_figure(records: list[dict], path: str | Path, highlight: dict[str, str] | None = None) -> Path:
    """Save the frontier figure: C2ST AUC against training CPU minutes, one panel per dataset.

    Parameters
    ----------
    records : list of dict
        From :func:`read_records`.
    path : str or Path
        The PNG to write.
    highlight : dict, optional
        Candidate name -> label in the legend (e.g. ``{"chosen": "default profile before issue 21"}``);
        other candidates keep their names.

    Returns
    -------
    Path
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mammo_lib.plotting import save_figure

    latest = _latest(records)
    datasets = sorted({k[0] for k in latest})
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.2 * len(datasets), 4.6), squeeze=False, sharey=True)
    names = sorted({k[1] for k in latest if k[1] != "null"})
    colours = dict(zip(names, plt.cm.tab10(np.linspace(0, 1, 10))[: len(names)], strict=False))
    for ax, dataset in zip(axes[0], datasets, strict=True):
        series: dict[str, dict[int, list]] = defaultdict(lambda: defaultdict(list))
        for (ds, name, seed, minutes), r in sorted(latest.items()):
            if ds != dataset:
                continue
            if name == "null":
                ax.axhline(r["c2st"], color="grey", lw=1, ls=":",
                           label=f"real vs real (null), seed {seed}: {r['c2st']:.2f}")
                continue
            cpu = float(r.get("cpu_s") or "nan")  # measured CPU minutes where known, else the nominal budget
            series[name][seed].append((cpu / 60 if np.isfinite(cpu) else minutes, r["c2st"], r["c2st_lo"],
                                       r["c2st_hi"]))
        for name, by_seed in series.items():
            label = (highlight or {}).get(name, name)
            for seed, pts in sorted(by_seed.items()):
                m, auc, lo, hi = map(np.array, zip(*sorted(pts), strict=True))
                style = dict(color=colours[name], marker="o" if seed == 0 else "^", ms=5 if seed == 0 else 6)
                if len(m) > 1:
                    ax.plot(m, auc, lw=1.6 if seed == 0 else 0.8, ls="-" if seed == 0 else "--", **style,
                            label=f"{label} (seed {seed})")
                else:
                    ax.plot(m, auc, ls="none", **style, label=f"{label} (seed {seed})")
                ax.vlines(m, lo, hi, color=colours[name], lw=0.8, alpha=0.6)
        for profile, (minutes, goals) in TARGETS.items():
            if dataset in goals:
                ax.plot([0.9, minutes], [goals[dataset]] * 2, color="black", lw=0.9,
                        ls="--" if profile == "default" else "-.")
                ax.annotate(f"{profile} target <= {goals[dataset]:.2f} ({minutes} min)", (minutes, goals[dataset]),
                            xytext=(-4, 3), textcoords="offset points", ha="right", fontsize=7)
        ax.set_xscale("log", base=2)
        ax.set_xticks(FRONTIER_MINUTES, [str(m) for m in FRONTIER_MINUTES])
        ax.set_xlim(0.85, 70)
        ax.set_ylim(0.4, 1.02)
        ax.set_xlabel("training CPU minutes, as measured (one thread)")
        ax.set_title(f"{dataset}: held-out C2ST AUC (0.5 = indistinguishable)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    axes[0][0].set_ylabel("C2ST AUC, real vs synthetic (95% CI)")
    fig.tight_layout()
    saved = save_figure(fig, path)
    plt.close(fig)
    return saved
