"""Stage 03's answer to "can a machine tell them apart?": the CNN two-sample test (:mod:`mammo_lib.feature_space.c2st.two_sample`)
for every generator, with its two controls, where the evidence lies, and what it says in words.

For every generator of the stage's sample (:class:`mammo_lib.feature_space.sampling.GroupSample`): real
lesions against that generator's patches. Beside them, always, two controls on the same data:

- **null**: the real lesions split at random into two halves, one against the other. Both halves
  come from one distribution, so the AUC should be about 0.5; when its 95% interval excludes 0.5
  or it exceeds :data:`NULL_AUC_LIMIT`, the test is not calibrated on this data and every
  statement made from it says so.
- **positive**: real lesions against normal tissue. The observer should tell these apart; if it
  cannot, it is too weak to find anything, and a low AUC for a generator means little.

Then, where the evidence lies: galleries of the patches the observer finds most synthetic and
most real (from the held-out scores), a gradient saliency map averaged over the synthetic
patches, and a frequency sweep: the test rerun after low-pass and high-pass filtering both sets
(:func:`skimage.filters.butterworth`), which says whether the difference lies in the shapes (it
survives low-pass filtering) or in the fine texture (it survives high-pass filtering).

Reads and writes no files: :func:`c2st_record` gives the ``c2st`` entry of
``feature_space/metrics.json`` and :func:`score_table` the per-patch held-out scores that
``feature_space.results.write_results`` saves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from mammo_lib import patch_store, run_folder
from mammo_lib.feature_space.arrays import FeatureSpaceError
from mammo_lib.feature_space.c2st.two_sample import (
    C2STResult,
    ObserverConfig,
    c2st,
    combine_repeats,
)
from mammo_lib.feature_space.sampling import GroupSample, name_key
from mammo_lib.feature_space.streams import rng as stream_rng

#: the null control's AUC above which the test is called not calibrated
NULL_AUC_LIMIT = 0.6
#: the positive control's AUC below which the observer is called too weak to find differences
POSITIVE_AUC_MIN = 0.75
#: test labels of the controls (their random streams are keyed by these; "null" alone reads as a
#: missing value in pandas)
NULL, POSITIVE = "null-control", "positive-control"


@dataclass
class C2STStudy:
    """Every C2ST of one stage-03 run.

    Attributes
    ----------
    by_generator : dict of str to C2STResult
        Real lesions vs each generator, in generator order.
    null, positive : C2STResult or None
        The controls: real half vs real half, real lesions vs normal tissue; None when the data
        are too few to run one (``notes`` says why; the generators' tests still run).
    sweep : pandas.DataFrame
        The frequency sweep (empty when not run): filter, cutoff, auc, ci_low, ci_high,
        p_value, n_per_set.
    sweep_generator : str or None
    null_splits : list of tuple of int arrays
        Per repeat of the null control, the rows of the sample's lesion group in each half.
    null_repeats : list of C2STResult
        The null control's repeats (``null`` is their combination,
        :func:`mammo_lib.feature_space.c2st.two_sample.combine_repeats`).
    positive_rows : tuple of int arrays
        Rows of the sample's lesion and normal groups in the positive control (as many of each
        as the null control's first half).
    config : ObserverConfig
    sweep_results : list of C2STResult
        The frequency sweep's tests, in the rows' order.
    notes : list of str
        Why a control was not run.
    """

    by_generator: dict[str, C2STResult]
    null: C2STResult | None
    positive: C2STResult | None
    sweep: pd.DataFrame
    sweep_generator: str | None
    null_splits: list[tuple[np.ndarray, np.ndarray]]
    null_repeats: list[C2STResult]
    positive_rows: tuple[np.ndarray, np.ndarray]
    config: ObserverConfig
    sweep_results: list[C2STResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def calibrated(self) -> bool | None:
        """True when the null control is about 0.5 (CI holds 0.5 and AUC <= :data:`NULL_AUC_LIMIT`);
        None when it could not be run (``notes`` says why)."""
        n = self.null
        if n is None:
            return None
        return bool(n.auc_ci_low <= 0.5 <= n.auc_ci_high and n.auc <= NULL_AUC_LIMIT)

    def sensitive(self) -> bool | None:
        """True when the positive control reaches :data:`POSITIVE_AUC_MIN`; None when it could not
        be run."""
        if self.positive is None:
            return None
        return bool(self.positive.auc >= POSITIVE_AUC_MIN)

    def cpu_seconds(self) -> float:
        """CPU seconds of every test (a timing)."""
        return float(sum(r.cpu_seconds for r in self.all_results()))

    def all_results(self) -> list[C2STResult]:
        """Generators' tests, then the controls (each null repeat), then the sweep's tests."""
        controls = [*self.null_repeats, *([self.positive] if self.positive is not None else [])]
        return [*self.by_generator.values(), *controls, *self.sweep_results]


def filter_patches(patches: np.ndarray, cutoff: float, high_pass: bool) -> np.ndarray:
    """Butterworth-filtered patches (scikit-image), float 0-1 scale.

    Parameters
    ----------
    patches : uint8 array, shape (n, s, s)
    cutoff : float
        Cut-off as a fraction of the sampling frequency, in (0, 0.5) (0.5 is Nyquist; for a
        128-pixel patch, 0.05 keeps about 6 cycles across the patch).
    high_pass : bool
        High-pass (keep the fine texture) instead of low-pass (keep the shapes).

    Returns
    -------
    float32 array, shape (n, s, s)
        Low-pass: in about [0, 1]; high-pass: centred near 0.5 (the observer centres its input,
        so only the filtered content matters).

    Raises
    ------
    FeatureSpaceError
        When ``cutoff`` is not in (0, 0.5).
    """
    from skimage.filters import butterworth

    if not 0.0 < float(cutoff) < 0.5:
        raise FeatureSpaceError(f"frequency sweep cut-off {cutoff!r} must be in (0, 0.5) (a fraction of the "
                                "sampling frequency; 0.5 is Nyquist)")
    x = np.asarray(patches, dtype=np.float32) / 255.0
    out = butterworth(x, cutoff_frequency_ratio=float(cutoff), high_pass=high_pass, order=2.0, channel_axis=0,
                      npad=16)
    out = out.astype(np.float32)
    return out + 0.5 if high_pass else out


def _subsample(n: int, limit: int, seed: int, purpose_label: str) -> np.ndarray:

    if n <= limit:
        return np.arange(n)
    return np.sort(stream_rng(seed, "c2st_folds", name_key(purpose_label)).permutation(n)[:limit])


def frequency_sweep(real: np.ndarray, synthetic: np.ndarray, lowpass: list[float], highpass: list[float],
                    config: ObserverConfig, seed: int = 0, max_per_set: int = 100, n_permutations: int = 1000,
                    progress: bool = False, groups_real: np.ndarray | None = None
                    ) -> tuple[pd.DataFrame, list[C2STResult]]:
    """The C2ST AUC after low-pass and high-pass filtering both sets at several cut-offs.

    Every point (the unfiltered one included) starts from the same subsample of at most
    ``max_per_set`` patches of each set, so the points differ in the filter (and in their own
    keyed folds and networks), not in the patches.

    Parameters
    ----------
    real, synthetic : uint8 array, shape (n, s, s)
    lowpass, highpass : list of float
        Cut-offs (fractions of the sampling frequency, in (0, 0.5)) of each filter kind.
    config : ObserverConfig
    seed : int
    max_per_set : int
        Patches of each set at most (keyed subsample).
    n_permutations : int
    progress : bool
    groups_real : str array, shape (len(real),), optional
        Source image of each real patch (folds grouped by image).

    Returns
    -------
    table : pandas.DataFrame
        One row per point: filter ("none", "low-pass", "high-pass"), cutoff (NaN for none),
        cycles_per_patch, auc, ci_low, ci_high, p_value, n_per_set.
    results : list of C2STResult

    Raises
    ------
    FeatureSpaceError
        As :func:`filter_patches` and :func:`mammo_lib.feature_space.c2st.two_sample.c2st`.
    """
    keep = _subsample(len(real), max_per_set, seed, "sweep-real")
    real = real[keep]
    groups_real = None if groups_real is None else np.asarray(groups_real)[keep]
    synthetic = synthetic[_subsample(len(synthetic), max_per_set, seed, "sweep-synthetic")]
    size = real.shape[1]
    points = [("none", None)] + [("low-pass", c) for c in lowpass] + [("high-pass", c) for c in highpass]
    rows, results = [], []
    for kind, cutoff in points:
        if cutoff is None:
            a, b, label = real, synthetic, "sweep-none"
        else:
            a, b = (filter_patches(p, cutoff, kind == "high-pass") for p in (real, synthetic))
            label = f"sweep-{kind}-{cutoff:g}"
        r = c2st(a, b, label, config=config, seed=seed, n_permutations=n_permutations, progress=progress,
                 groups_first=groups_real)
        results.append(r)
        rows.append({"filter": kind, "cutoff": np.nan if cutoff is None else float(cutoff),
                     "cycles_per_patch": np.nan if cutoff is None else round(float(cutoff) * size, 1),
                     "auc": r.auc, "ci_low": r.auc_ci_low, "ci_high": r.auc_ci_high, "p_value": r.p_value,
                     "n_per_set": r.n_per_set})
    return pd.DataFrame(rows), results


def null_halves(n: int, seed: int, repeat: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A random split of ``n`` real lesions into two halves (keyed ``"c2st_null_split"`` stream).

    Parameters
    ----------
    n : int
    seed : int
    repeat : int
        Which repeat of the null control (each its own split).

    Returns
    -------
    tuple of two sorted int arrays
        Of sizes floor(n / 2) and n - floor(n / 2).
    """
    perm = stream_rng(seed, "c2st_null_split", repeat).permutation(n) if repeat else \
        stream_rng(seed, "c2st_null_split").permutation(n)
    return np.sort(perm[: n // 2]), np.sort(perm[n // 2:])


def source_groups(run_dir: str | os.PathLike, sample: GroupSample) -> np.ndarray:
    """The woman (or, failing that, the image) every patch of a stage-03 sample comes from, for
    folds that keep one woman's patches together.

    One lesion is often seen in two views (CC and MLO) of one breast: with one view in a training
    fold and the other scored, the observer learns the lesion, not the question, and the null
    control falls below 0.5 (measured on the phantom: AUC 0.43 grouped by image, 0.50 by woman).

    Parameters
    ----------
    run_dir : path
        The run folder whose ``patches/lesion.zarr`` and ``patches/normal.zarr`` the sample was
        drawn from (their manifests' ``patient_id``, else ``image_id``).
    sample : GroupSample

    Returns
    -------
    str array, shape (len(sample),)
        ``patient:<patient_id>`` (or ``image:<image_id>`` for a manifest without patients) of
        each real patch; a synthetic patch is its own group, ``patch:<patch_id>``.

    Raises
    ------
    mammo_lib.patch_store.PatchStoreError
        When a store is missing or broken.
    """

    ids = sample.patch_ids.astype(str)
    out = np.array([f"patch:{p}" for p in ids], dtype=object)
    for group, path in (("lesion", run_folder.lesion_store_path(run_dir)),
                        ("normal", run_folder.normal_store_path(run_dir))):
        manifest = patch_store.open_patch_store(path).manifest
        column = "patient_id" if "patient_id" in manifest.columns else "image_id"
        owners = dict(zip(manifest["patch_id"].astype(str), manifest[column].fillna("").astype(str), strict=True))
        prefix = "patient" if column == "patient_id" else "image"
        for i in np.flatnonzero(sample.groups == group):
            if owners.get(ids[i]):
                out[i] = f"{prefix}:{owners[ids[i]]}"
    return out.astype(str)


def check_parameters(n_permutations: int, null_repeats_n: int, sweep_lowpass, sweep_highpass,
                     sweep_max_per_set: int, sweep_folds: int) -> None:
    """Check the C2ST study's settings before any network trains.

    Parameters
    ----------
    n_permutations, null_repeats_n, sweep_lowpass, sweep_highpass, sweep_max_per_set, sweep_folds
        As :func:`run_c2st_study` (notebook 03's ``c2st_permutations``, ``c2st_null_repeats``,
        ``c2st_sweep_lowpass``, ``c2st_sweep_highpass``, ``c2st_sweep_max_per_set``,
        ``c2st_sweep_folds``).

    Raises
    ------
    FeatureSpaceError
        Naming the notebook parameter and its allowed range.
    """
    problems = []
    if int(n_permutations) < 1:
        problems.append(f"c2st_permutations = {n_permutations} (allowed: >= 1)")
    if int(null_repeats_n) < 1:
        problems.append(f"c2st_null_repeats = {null_repeats_n} (allowed: >= 1)")
    for name, cutoffs in (("c2st_sweep_lowpass", sweep_lowpass), ("c2st_sweep_highpass", sweep_highpass)):
        bad = [c for c in (cutoffs or []) if not 0.0 < float(c) < 0.5]
        if bad:
            problems.append(f"{name} = {list(cutoffs)}: {bad} outside (0, 0.5) (fractions of the sampling "
                            "frequency; 0.5 is Nyquist)")
    if sweep_lowpass or sweep_highpass:
        if int(sweep_folds) < 2:
            problems.append(f"c2st_sweep_folds = {sweep_folds} (allowed: >= 2)")
        elif int(sweep_max_per_set) < 2 * int(sweep_folds):
            problems.append(f"c2st_sweep_max_per_set = {sweep_max_per_set} (allowed: >= {2 * int(sweep_folds)}, "
                            f"2 patches per fold and set with {sweep_folds} folds)")
    if problems:
        raise FeatureSpaceError("C2ST settings out of range: " + "; ".join(problems))


def run_c2st_study(sample: GroupSample, config: ObserverConfig | None = None, seed: int = 0,
                   n_permutations: int = 1000, sweep_lowpass: list[float] | None = None,
                   sweep_highpass: list[float] | None = None, sweep_max_per_set: int = 100,
                   progress: bool = False, images: np.ndarray | None = None, null_repeats_n: int = 2,
                   sweep_folds: int | None = None) -> C2STStudy:
    """The C2ST of every generator, both controls and (for the first generator) the frequency sweep.

    Parameters
    ----------
    sample : GroupSample
        Stage 03's sample: real lesions, each generator's patches, normal tissue.
    config : ObserverConfig, optional
    seed : int
    n_permutations : int
    sweep_lowpass, sweep_highpass : list of float, optional
        Cut-offs of the frequency sweep (:func:`frequency_sweep`); both empty or None: no sweep.
    sweep_max_per_set : int
    progress : bool
        One plain line per fold and test.
    images : str array, shape (len(sample),), optional
        The woman or image each patch comes from (:func:`source_groups`): folds keep each
        group's patches together. None: every patch its own group.
    null_repeats_n : int
        Random half-splits of the null control, its AUC their mean (>= 1; each one costs a test
        of half the real lesions): one split's AUC has a standard error of about 0.03 on 161
        patches per half, the mean of two about 0.025.
    sweep_folds : int, optional
        Folds of the frequency sweep's tests (default: the config's).

    Returns
    -------
    C2STStudy

    Raises
    ------
    FeatureSpaceError
        When a group is too small for the folds (the message names the test, the sizes and what
        each fold needs), or as :func:`mammo_lib.feature_space.c2st.two_sample.c2st`.

    References
    ----------
    Lopez-Paz & Oquab, ICLR 2017; Kim, Ramdas, Singh & Wasserman, Ann. Statist. 2021.
    """
    config = config or ObserverConfig()
    check_parameters(n_permutations, null_repeats_n, sweep_lowpass, sweep_highpass, sweep_max_per_set,
                     config.n_folds if sweep_folds is None else sweep_folds)
    lesion, normal = sample.of("lesion"), sample.of("normal")
    images = np.asarray(sample.patch_ids if images is None else images).astype(str)
    img_lesion, img_normal = images[sample.groups == "lesion"], images[sample.groups == "normal"]
    by_generator = {}
    for name in sample.generator_names():
        img_syn = images[(sample.groups == "synthetic") & (sample.generators == name)]
        by_generator[name] = c2st(lesion, sample.of("synthetic", name), name, names=("real", name),
                                  config=config, seed=seed, n_permutations=n_permutations, saliency=True,
                                  progress=progress, groups_first=img_lesion, groups_second=img_syn)
    notes: list[str] = []
    null_splits, null_repeats = [], []
    try:
        for r in range(null_repeats_n):
            half_a, half_b = null_halves(len(lesion), seed, r)
            null_repeats.append(c2st(lesion[half_a], lesion[half_b], NULL if r == 0 else f"{NULL}-{r}",
                                     names=("real half A", "real half B"), config=config, seed=seed,
                                     n_permutations=n_permutations, progress=progress,
                                     groups_first=img_lesion[half_a], groups_second=img_lesion[half_b]))
            null_splits.append((half_a, half_b))
        null = combine_repeats(null_repeats, NULL, seed)
    except FeatureSpaceError as exc:
        null, null_splits, null_repeats = None, [], []
        notes.append(f"null control not run: {exc}")
    # the positive control at the null control's size, so the two controls are read alike
    n_ctrl = len(lesion) // 2
    pos_l = _subsample(len(lesion), n_ctrl, seed, "positive-lesion")
    pos_n = _subsample(len(normal), n_ctrl, seed, "positive-normal")
    try:
        positive = c2st(lesion[pos_l], normal[pos_n], POSITIVE, names=("real lesion", "normal tissue"),
                        config=config, seed=seed, n_permutations=n_permutations, progress=progress,
                        groups_first=img_lesion[pos_l], groups_second=img_normal[pos_n])
    except FeatureSpaceError as exc:
        positive = None
        notes.append(f"positive control not run: {exc}")
    sweep, sweep_results, sweep_generator = pd.DataFrame(), [], None
    if sweep_lowpass or sweep_highpass:
        sweep_generator = sample.generator_names()[0]
        sweep_config = config if sweep_folds is None else replace(config, n_folds=int(sweep_folds))
        try:
            sweep, sweep_results = frequency_sweep(lesion, sample.of("synthetic", sweep_generator),
                                                   list(sweep_lowpass or []), list(sweep_highpass or []), sweep_config,
                                                   seed=seed, max_per_set=sweep_max_per_set,
                                                   n_permutations=n_permutations, progress=progress,
                                                   groups_real=img_lesion)
        except FeatureSpaceError as exc:
            sweep, sweep_results, sweep_generator = pd.DataFrame(), [], None
            notes.append(f"frequency sweep not run: {exc}")
    return C2STStudy(by_generator=by_generator, null=null, positive=positive, sweep=sweep,
                     sweep_generator=sweep_generator, null_splits=null_splits, null_repeats=null_repeats,
                     positive_rows=(pos_l, pos_n), notes=notes,
                     config=config,
                     sweep_results=sweep_results)
