"""The headline results of each stage, read from the files the stage wrote.

The study runner stores them in ``run.json`` (``results``) after each notebook, and a notebook
rerun interactively does the same (:func:`mammo_lib.study.provenance.record_interactive_rerun`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mammo_lib.fileio import read_json_or_empty
from mammo_lib.patch_store import PatchStoreError
from mammo_lib.run_folder import synthetic_stores


def manifest_rows(store: Path) -> int | None:
    manifest = store / "manifest.csv"
    if not manifest.exists():
        return None
    with open(manifest, encoding="utf-8") as fh:
        return max(0, sum(1 for _ in fh) - 1)


def generator_stores(run_dir: Path) -> dict[str, Path]:
    """``{generator name: store}`` of the run (:func:`mammo_lib.run_folder.synthetic_stores`),
    empty when stage 02 has not run or a store cannot be read."""

    try:
        return synthetic_stores(run_dir)
    except (FileNotFoundError, ValueError, PatchStoreError):
        return {}


def _pick(data: dict, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def c2st_headline(fs: dict) -> dict | None:
    """The CNN two-sample test's headline: its first generator's held-out AUC with the 95% CI, the
    null and positive controls' AUCs and whether the controls passed (None when it was not run).

    Parameters
    ----------
    fs : dict
        Stage 03's ``feature_space/metrics.json``.

    Returns
    -------
    dict or None
        ``generator``, ``auc``, ``ci_low``, ``ci_high``, ``p_value_permutation``, ``null_auc``,
        ``positive_auc``, ``calibrated``, ``sensitive``.
    """
    c2st = fs.get("c2st")
    if not isinstance(c2st, dict) or not c2st.get("by_generator"):
        return None
    generator, test = next(iter(c2st["by_generator"].items()))
    return {"generator": generator, "auc": _pick(test, "auc", "value"), "ci_low": _pick(test, "auc", "ci_low"),
            "ci_high": _pick(test, "auc", "ci_high"), "p_value_permutation": test.get("p_value_permutation"),
            "null_auc": _pick(c2st, "controls", "null", "auc", "value"),
            "positive_auc": _pick(c2st, "controls", "positive", "auc", "value"),
            "calibrated": c2st.get("calibrated"), "sensitive": c2st.get("sensitive")}


def _feature_space_results(run_dir: Path) -> dict:
    fs = read_json_or_empty(run_dir / "feature_space" / "metrics.json")
    by_generator = fs.get("metrics_by_generator") or ({"dcgan": fs["metrics"]} if fs.get("metrics") else {})
    out: dict[str, Any] = {"tsne_kl": _pick(fs, "tsne", "kl_divergence")}
    c2st = c2st_headline(fs)
    if c2st is not None:
        out["c2st"] = c2st
    for generator, spaces in by_generator.items():
        out[generator] = {space: {"one_nn_accuracy": _pick(m, "one_nn_accuracy", "value"),
                                  "precision": _pick(m, "prdc", "precision", "value"),
                                  "recall": _pick(m, "prdc", "recall", "value"),
                                  "frechet_distance": _pick(m, "frechet_distance", "value")}
                          for space, m in (spaces or {}).items() if isinstance(m, dict)}
    return out


def headline_results(run_dir: Path, stem: str) -> dict:
    """The headline figures of one stage, for ``run.json``'s ``results`` (empty when unknown).

    Parameters
    ----------
    run_dir : pathlib.Path
        The run folder.
    stem : str
        The notebook's stem, e.g. ``"03_feature_space"``.

    Returns
    -------
    dict
        Stage 01: patch counts and skipped files; 02: iterations, the device (and whether it ran
        under mixed precision) and synthetic patches; 03: t-SNE
        KL, the CNN two-sample test (``c2st``: :func:`c2st_headline`, when it ran) and, per generator
        and feature space, 1-NN accuracy, precision, recall and Fréchet distance; 04: the
        case set; 05: each reader's accuracy and AUC and the MRMC reader-averaged AUC.
    """
    if stem.startswith("01"):
        ext = read_json_or_empty(run_dir / "patches" / "extraction.json")
        counts = ext.get("counts") or {}
        return {k: counts.get(k) for k in ("images", "images_used", "images_skipped", "lesion_patches",
                                           "normal_patches") if k in counts}
    if stem.startswith("02"):
        summary = read_json_or_empty(run_dir / "dcgan" / "training_summary.json")
        out = {k: summary.get(k) for k in ("iterations_done", "stopped", "device_name", "amp") if k in summary}
        out["synthetic_patches"] = {name: manifest_rows(s) for name, s in generator_stores(run_dir).items()}
        return out
    if stem.startswith("03"):
        return _feature_space_results(run_dir)
    if stem.startswith("04"):
        study = read_json_or_empty(run_dir / "reader_study" / "case_set" / "study.json")
        return {k: study.get(k) for k in ("case_set_id", "n_real", "n_synthetic") if k in study}
    if stem.startswith("05"):
        roc = read_json_or_empty(run_dir / "roc" / "metrics.json")
        out = {r: {"kind": s.get("reader_kind"), "accuracy": _pick(s, "accuracy", "estimate"), "auc": s.get("auc")}
               for r, s in (roc.get("readers") or {}).items()}
        mrmc = {label: _pick(res, "RRRC", "single_modality") for label, res in (roc.get("mrmc") or {}).items()}
        return {"readers": out, "mrmc_rrrc": mrmc}
    return {}
