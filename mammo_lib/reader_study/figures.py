"""Figures of stage 04 (the designer's view of the reader study): the balance of the case set,
example cases as readers see them, and the ratings per option; saved as
``<run_dir>/reader_study/figures/<name>.png`` by :func:`save_figures`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from mammo_lib.plotting import patch_grid, save_figure
from mammo_lib.reader_study.case_set import case_set_balance, option_counts, read_png
from mammo_lib.reader_study.files import CaseSet
from mammo_lib.run_folder import figures_dir


def plot_case_set_balance(case_set: CaseSet):
    """Horizontal bars of :func:`case_set_balance` (a matplotlib Figure): real red, the (first)
    generator green, further generators in colours of their own."""
    import matplotlib.pyplot as plt

    balance = case_set_balance(case_set)
    fig, ax = plt.subplots(figsize=(6, 3 if len(balance) <= 2 else 2 + 0.5 * len(balance)))
    others = ["#2980b9", "#8e44ad", "#f39c12", "#16a085", "#7f8c8d", "#d35400", "#2c3e50"]
    colors = ["#c0392b", "#27ae60"] + [others[k % len(others)] for k in range(len(balance) - 2)]
    balance.T.plot.barh(ax=ax, color=colors)
    ax.set_xlabel("patches")
    ax.set_title(f"Case set {case_set.case_set_id}: balance")
    fig.tight_layout()
    return fig


def plot_example_cases(case_set: CaseSet, n: int = 12):
    """The first ``n`` cases by opaque id, as the page shows them (no truth)."""

    examples = case_set.case_ids[:n]
    images = [read_png(case_set.image_path(c)) for c in examples]
    fig = patch_grid(images, ncols=6, labels=examples, ax_size=2.0, title="Example cases (blinded)")
    fig.subplots_adjust(hspace=0.25)
    return fig


def plot_ratings_per_option(case_set: CaseSet):
    """Bars of :func:`option_counts` per reader; None when nobody has rated yet."""
    import matplotlib.pyplot as plt

    counts = option_counts(case_set)
    if not len(counts):
        return None
    fig, ax = plt.subplots(figsize=(8, 4.2))
    counts.T.plot.bar(ax=ax)
    ax.legend(title="reader", loc="upper center")
    ax.set_ylabel("cases")
    ax.set_title("Ratings per option")
    ax.tick_params(axis="x", labelrotation=30)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    fig.tight_layout()
    return fig


FIGURES = {"case_set_balance": plot_case_set_balance, "example_cases": plot_example_cases,
           "ratings_per_option": plot_ratings_per_option}


def save_figures(case_set: CaseSet, run_dir: str | os.PathLike, names: Sequence[str] = tuple(FIGURES)) -> dict[str, Path]:
    """Draw stage-04 figures and save them as ``<run_dir>/reader_study/figures/<name>.png``.

    Parameters
    ----------
    case_set : CaseSet
    run_dir : path
    names : sequence of str
        Keys of :data:`FIGURES` (a figure with nothing to show, e.g. ratings before any rating,
        is left out).

    Returns
    -------
    dict
        name -> path of the PNG.
    """
    import matplotlib.pyplot as plt


    out = {}
    for name in names:
        fig = FIGURES[name](case_set)
        if fig is not None:
            out[name] = save_figure(fig, figures_dir(run_dir, "reader_study") / f"{name}.png")
            plt.close(fig)
    return out
