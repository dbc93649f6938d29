"""Stage 03's strongest realism test: the classifier two-sample test (C2ST) with a small CNN.

Can a machine tell these synthetic lesions from real ones? A small convolutional network is
trained to tell two sets of patches apart (real lesions against one generator's patches), with
k-fold cross-fitting: the patches are split into ``n_folds`` folds, balanced by class, and each
fold is scored by a network trained on the other folds only, so every score is a held-out one.
The cross-fitted AUC (the mean of the folds' held-out AUCs) is the test statistic: 0.5 when the two sets are indistinguishable to this
observer, 1 when it separates them perfectly (Lopez-Paz & Oquab, "Revisiting classifier
two-sample tests", ICLR 2017; Kim, Ramdas, Singh & Wasserman, "Classification accuracy as a proxy
for two-sample testing", Ann. Statist. 49(1), 2021).

Reported per test: the cross-fitted AUC with its DeLong (1988) 95% interval, a permutation
p-value for it (labels permuted within each held-out fold, which keeps every fold's network fixed
and needs no retraining: exact for each fold given its network, Kim et al. 2021, sec. 2; the mean
over folds treats the networks as given), the held-out accuracy at P = 0.5 with an
exact binomial test against 0.5, and each fold's AUC. :func:`c2st` also returns every patch's
held-out score (for galleries of what the observer finds most synthetic) and, optionally, a
gradient saliency map (Simonyan, Vedaldi & Zisserman 2014) averaged over the second set's patches.

Randomness: the balanced subsample, the folds, every network's initial weights, batch order and
flips come from streams keyed by (seed, purpose, test label) (:mod:`mammo_lib.feature_space.streams`);
torch's global generator is never drawn from and its thread count is restored afterwards. On a
CPU with a fixed ``n_threads`` a rerun gives the same bytes, unless the CPU-time safety net
(``max_cpu_seconds``) cuts training short, which the result says. Reads and writes no files.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from mammo_lib.auc_stats import accuracy_test
from mammo_lib.feature_space.arrays import FeatureSpaceError, check_patch_array
from mammo_lib.feature_space.c2st.observer import (
    ObserverConfig,
    _as_tensor,
    _saliency,
    _score,
    _train,
    build_observer,
    n_parameters,
    observer_scores,
    train_observer,
)
from mammo_lib.feature_space.c2st.stats import (
    balanced_folds,
    cross_fitted_auc,
    permutation_p_value,
    summarise,
)
from mammo_lib.feature_space.sampling import name_key

__all__ = ["ObserverConfig", "C2STResult", "c2st", "combine_repeats", "build_observer", "n_parameters",
           "train_observer", "observer_scores", "balanced_folds", "cross_fitted_auc", "permutation_p_value"]


@dataclass
class C2STResult:
    """One classifier two-sample test: held-out scores and their statistics.

    Attributes
    ----------
    label : str
        What was compared (a generator name, "null" or "positive").
    names : tuple of str
        The two sets, (negative, positive): the observer's score is P(second set).
    auc : float
        Cross-fitted held-out AUC (mean of the folds' AUCs), second set positive
        (0.5: indistinguishable).
    auc_ci_low, auc_ci_high, auc_se : float
        DeLong 95% interval (clipped to [0, 1]) and standard error (per-fold DeLong variances).
    p_value : float
        One-sided permutation p-value of the AUC (labels permuted within each fold).
    n_permutations : int
    accuracy : dict
        Held-out accuracy at P = 0.5 (:func:`mammo_lib.auc_stats.accuracy_test`).
    fold_aucs : list of float
    pooled_auc : float
        AUC of all held-out scores pooled into one ROC curve (lower when the folds' networks
        score on different scales).
    n_per_set : int
        Patches of each set used (the larger set subsampled to the smaller).
    n_given : tuple of int
        Patches passed in, per set.
    index : int array, shape (2 * n_per_set,)
        Row of each scored patch in its own input array.
    is_second : bool array, shape (2 * n_per_set,)
    fold : int array, shape (2 * n_per_set,)
    score : float array, shape (2 * n_per_set,)
        Held-out P(second set) of each patch.
    epochs : list of int
        Epochs each fold's network trained (fewer than configured when the CPU limit cut in).
    config : ObserverConfig
    saliency : float array, shape (H, W), optional
        Mean absolute input gradient of the logit over the second set's held-out patches.
    mean_image : float array, shape (H, W), optional
        Mean of the second set's scored patches (0-1), to show beside the saliency map.
    cpu_seconds : float
        CPU time of the test (a timing: varies run to run).
    warnings : list of str
    """

    label: str
    names: tuple[str, str]
    auc: float
    auc_ci_low: float
    auc_ci_high: float
    auc_se: float
    p_value: float
    n_permutations: int
    accuracy: dict
    fold_aucs: list[float]
    pooled_auc: float
    n_per_set: int
    n_given: tuple[int, int]
    index: np.ndarray
    is_second: np.ndarray
    fold: np.ndarray
    score: np.ndarray
    epochs: list[int]
    config: ObserverConfig
    saliency: np.ndarray | None = None
    mean_image: np.ndarray | None = None
    cpu_seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def record(self) -> dict:
        """The JSON-ready summary (no per-patch arrays, no timings).

        Returns
        -------
        dict
            ``auc`` {value, ci_low, ci_high, se, method}, ``p_value_permutation``,
            ``n_permutations``, ``accuracy``, ``fold_aucs``, ``n_per_set``, ``n_given``,
            ``sets``, ``epochs_per_fold``, ``observer`` (the config), ``warnings``.
        """
        return {
            "label": self.label, "sets": list(self.names),
            "auc": {"value": self.auc, "ci_low": self.auc_ci_low, "ci_high": self.auc_ci_high,
                    "se": self.auc_se, "pooled": self.pooled_auc, "degenerate": self.degenerate(),
                    "method": "mean of the folds' held-out AUCs; DeLong 95% CI from the folds' DeLong variances"},
            "p_value_permutation": self.p_value, "n_permutations": self.n_permutations,
            "accuracy": self.accuracy, "fold_aucs": self.fold_aucs, "n_per_set": self.n_per_set,
            "n_given": list(self.n_given), "epochs_per_fold": self.epochs,
            "observer": {**asdict(self.config), "widths": list(self.config.widths)},
            "warnings": list(self.warnings),
        }

    def degenerate(self) -> bool:
        """True when every fold separates its two sets perfectly (or every fold inverts them): the
        standard error is then 0 and the interval has zero width; the permutation p-value still
        holds. Folds that disagree are never degenerate (their spread sets the interval)."""
        return bool(self.auc_se == 0.0)

    def pairs_in_100(self) -> int:
        """Of 100 (first-set, second-set) pairs, how many the observer ranks correctly (the AUC
        rounded down: 100 only when every pair is ranked correctly)."""
        return int(np.floor(100 * self.auc + 1e-9))


def c2st(first: np.ndarray, second: np.ndarray, label: str, names: tuple[str, str] = ("real", "synthetic"),
         config: ObserverConfig | None = None, seed: int = 0, n_permutations: int = 1000,
         saliency: bool = False, progress: bool = False, groups_first: np.ndarray | None = None,
         groups_second: np.ndarray | None = None) -> C2STResult:
    """Cross-fitted classifier two-sample test of two sets of patches with the observer CNN.

    Parameters
    ----------
    first, second : uint8 or float array, shape (n, s, s)
        The two sets (uint8 0-255, or float 0-1 such as filtered patches); the second is the
        positive class (the observer's score is P(second)). The larger set is subsampled (keyed
        stream) to the smaller's size, so 0.5 stays the chance level.
    label : str
        Names the test's random streams (a generator name, "null", "positive", ...): the same
        label and seed give the same subsample, folds and networks.
    names : tuple of str
        Names of the two sets, for messages and records.
    config : ObserverConfig, optional
        Architecture and recipe (default :class:`ObserverConfig()`).
    seed : int
        Study seed.
    n_permutations : int
        Permutations of the p-value (>= 1).
    saliency : bool
        Also average each held-out second-set patch's input-gradient magnitude.
    progress : bool
        Print one plain line per fold.
    groups_first, groups_second : str array, shape (n,), optional
        The woman (or image) of each patch: one woman's patches share a fold
        (:func:`balanced_folds`). None: every patch is its own group (independent synthetic
        draws). When there are too few women for the folds, the folds split by patch and the
        result's ``warnings`` say so.

    Returns
    -------
    C2STResult

    Raises
    ------
    FeatureSpaceError
        When a patch array is not (n, s, s) or not finite, the sets differ in patch size, or a set
        is too small for the folds (the message says how many patches each fold needs).

    References
    ----------
    Lopez-Paz & Oquab, ICLR 2017; Kim, Ramdas, Singh & Wasserman, Ann. Statist. 49(1), 2021;
    DeLong, DeLong & Clarke-Pearson, Biometrics 44, 1988.
    """
    import torch


    config = config or ObserverConfig()
    first = check_patch_array(first, f"C2ST {label}: {names[0]} patches")
    second = check_patch_array(second, f"C2ST {label}: {names[1]} patches")
    if first.shape[1:] != second.shape[1:]:
        raise FeatureSpaceError(f"C2ST {label}: {names[0]} patches are {first.shape[1]}x{first.shape[2]}, "
                                f"{names[1]} patches {second.shape[1]}x{second.shape[2]}; both must be one size")
    if n_permutations < 1:
        raise FeatureSpaceError(f"C2ST {label}: n_permutations must be >= 1, got {n_permutations}")
    key = name_key(label)
    for groups, arr, which in ((groups_first, first, names[0]), (groups_second, second, names[1])):
        if groups is not None and len(groups) != len(arr):
            raise FeatureSpaceError(f"C2ST {label}: {len(groups)} group names for {len(arr)} {which} patches")
    if first.shape[1] < config.min_patch_size():
        raise FeatureSpaceError(
            f"C2ST {label}: {first.shape[1]}x{first.shape[1]} patches are too small for the observer's "
            f"{len(config.widths)} blocks (widths {list(config.widths)}, first stride {config.first_stride}), each "
            f"halving the image: they need at least {config.min_patch_size()} pixels; give "
            "fewer widths (c2st_widths) or a first stride of 1")
    warnings = []
    try:
        index, is_second, fold, n = balanced_folds(len(first), len(second), config.n_folds, seed, key,
                                                   groups_first, groups_second)
    except FeatureSpaceError as exc:
        if (groups_first is None and groups_second is None) or "too few images" not in str(exc):
            raise FeatureSpaceError(f"C2ST {label} ({names[0]} vs {names[1]}): {exc}") from None
        # too few women for the folds: split by patch instead, and say what that costs
        index, is_second, fold, n = balanced_folds(len(first), len(second), config.n_folds, seed, key)
        warnings.append(f"C2ST {label}: too few women (or images) to keep each one's patches in one of "
                        f"{config.n_folds} folds, so the folds split them; a network may then learn a woman "
                        "rather than the question, and the null control may fall below 0.5")
    x_all = torch.cat([_as_tensor(first[index[~is_second]]), _as_tensor(second[index[is_second]])])
    y_all = torch.as_tensor(is_second.astype(np.float32))
    score = np.zeros(len(index))
    sal = np.zeros(first.shape[1:]) if saliency else None
    epochs: list[int] = []
    old_threads = torch.get_num_threads()
    torch.set_num_threads(config.n_threads)
    started = time.process_time()
    try:
        for f in range(config.n_folds):
            train, test = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
            model, ep = _train(x_all[train], y_all[train], config, seed, key, f,
                               config.max_cpu_seconds / config.n_folds)
            epochs.append(ep)
            score[test] = _score(model, x_all[test])
            if sal is not None:
                sal += _saliency(model, x_all[test[is_second[test]]])
            if progress:
                print(f"C2ST {label}: fold {f + 1}/{config.n_folds} trained ({ep} epochs)", flush=True)
    finally:
        torch.set_num_threads(old_threads)
    if min(epochs) < config.epochs:
        warnings.append(f"C2ST {label}: the CPU limit ({config.max_cpu_seconds:g} s) stopped training after "
                        f"{min(epochs)} of {config.epochs} epochs: the result now depends on this machine's speed")
    stats = summarise(score, is_second, fold, n_permutations, seed, key)
    if stats["auc_ci_high"] < 0.5 or min(stats["fold_aucs"]) == 0.0:
        warnings.append(f"C2ST {label}: AUC {stats['auc']:.2f} (folds {', '.join(f'{a:.2f}' for a in stats['fold_aucs'])}"
                        "): the observer ranks the sets the wrong way round on held-out patches, which no real "
                        "difference explains; too few patches or women per fold, or something that differs "
                        "between folds: do not read it as realism")
    mean_image = None
    if saliency:
        sal = sal / max(1, int(is_second.sum()))
        mean_image = (x_all[torch.as_tensor(is_second)].squeeze(1).double().mean(0) + 0.5).numpy()
    return C2STResult(label=label, names=tuple(names), n_permutations=n_permutations, n_per_set=n,
                      n_given=(len(first), len(second)), index=index, is_second=is_second, fold=fold,
                      score=score, epochs=epochs, config=config, saliency=sal, mean_image=mean_image,
                      cpu_seconds=time.process_time() - started, warnings=warnings, **stats)


def combine_repeats(results: list[C2STResult], label: str, seed: int = 0) -> C2STResult:
    """One test from several repeats of it on different random splits (the null control's).

    The statistic is the mean of the repeats' cross-fitted AUCs (every fold of every repeat
    weighs alike). The repeats share patches, so their errors are not independent: the standard
    error is the repeats' mean one (the value for perfectly correlated repeats, so the interval is
    never narrower than the truth), the p-value twice the mean of theirs
    (:func:`combined_p_value`), and the accuracy test uses the mean count of one repeat.

    Parameters
    ----------
    results : list of C2STResult
        Repeats of one test (same sets' sizes, same config, different splits), at least one.
    label : str
        The combined test's label.
    seed : int
        The study seed the repeats ran with (keys the permutations, as in :func:`c2st`).

    Returns
    -------
    C2STResult
        ``index``, ``is_second``, ``score`` concatenated over the repeats and ``fold`` offset so
        that every repeat's folds stay distinct (``index`` refers to each repeat's own input).

    Raises
    ------
    ValueError
        When ``results`` is empty.
    """
    if not results:
        raise ValueError(f"C2ST {label}: no repeats to combine")
    if len(results) == 1:
        return results[0]
    first = results[0]
    k = first.config.n_folds
    is_second = np.concatenate([r.is_second for r in results])
    fold = np.concatenate([r.fold + i * k for i, r in enumerate(results)])
    score = np.concatenate([r.score for r in results])
    stats = summarise(score, is_second, fold, 1, seed, 0)  # fold AUCs, pooled AUC; p below
    auc = float(np.mean([r.auc for r in results]))
    se = float(np.mean([r.auc_se for r in results]))
    n_correct = int(round(np.mean([r.accuracy["n_correct"] for r in results])))

    stats.update({"auc": auc, "auc_se": se, "auc_ci_low": max(0.0, auc - 1.959964 * se),
                  "auc_ci_high": min(1.0, auc + 1.959964 * se),
                  "p_value": combined_p_value(results, seed),
                  "accuracy": accuracy_test(n_correct, first.accuracy["n"])})
    return C2STResult(label=label, names=first.names, n_permutations=first.n_permutations, n_per_set=first.n_per_set,
                      n_given=first.n_given, index=np.concatenate([r.index for r in results]), is_second=is_second,
                      fold=fold, score=score, epochs=[e for r in results for e in r.epochs], config=first.config,
                      cpu_seconds=sum(r.cpu_seconds for r in results),
                      warnings=[w for r in results for w in r.warnings], **stats)


def combined_p_value(results: list[C2STResult], seed: int = 0) -> float:
    """A p-value for several repeats of one test that share patches: twice the mean of their
    permutation p-values, valid whatever their dependence (Rüschendorf 1982; Vovk & Wang,
    "Combining p-values via averaging", Biometrika 107(4), 2020). Permuting each repeat on its own
    would treat them as independent, which they are not, and overstate the evidence.

    Parameters
    ----------
    results : list of C2STResult
    seed : int
        Unused (kept for the call's symmetry with :func:`combine_repeats`).

    Returns
    -------
    float
        In (0, 1].
    """
    return float(min(1.0, 2.0 * np.mean([r.p_value for r in results])))
