"""Stage 03: the paper's t-SNE of real lesions, synthetic lesions and normal tissue (Fig. 2),
plus a small learned feature space, outliers and the embedding table.

The paper (sec. 4.1) embeds 500 patches per group, raw 128x128 pixels flattened, perplexity
250, 4,000 iterations. Everything here defaults to exactly that.

t-SNE backends (``run_tsne(backend=...)``):

- ``"exact-torch"`` (default): our own exact t-SNE in PyTorch. The affinities P are computed
  as scikit-learn's Barnes-Hut TSNE does (k = min(n-1, 3*perplexity+1) nearest neighbours on
  squared Euclidean distances, per-point binary search on the perplexity, P + P^T normalised),
  and the optimisation follows scikit-learn's schedule exactly (PCA init scaled to std 1e-4,
  early exaggeration 12 for 250 iterations with momentum 0.5, then momentum 0.8, learning rate
  'auto' = max(N / 12 / 4, 50), delta-bar-delta gains with min_gain 0.01, the same stopping
  checks every 50 iterations), but the gradient is the *exact* dense one, fused and vectorised
  over all N^2 pairs. In the paper's regime (N = 1,500, perplexity 250 -> ~750 neighbours, an
  almost dense P) a dense N^2 gradient is cheaper than a Barnes-Hut tree walk and has no
  approximation error. Chosen as the default by measurement (``benchmarks/bench_tsne.py``):
  on the paper configuration it ran about 6x faster than scikit-learn's Barnes-Hut (and ~3x
  faster than openTSNE) on this 2-core CPU, final KL within 0.1% of scikit-learn's (see
  ``BENCHMARK_NOTE``). It runs on one thread by default (deterministic, and faster than two
  when the cores are shared) and on a CUDA GPU when torch sees one.
  It needs O(N^2) memory and time per step, so it is refused above ``EXACT_TORCH_MAX_POINTS``.
- ``"sklearn"``: ``sklearn.manifold.TSNE`` (Barnes-Hut, angle 0.5), the reference.
- ``"opentsne"``: openTSNE with the FFT-interpolated gradient; the scalable path
  (:func:`embed_large`) for tens of thousands of patches.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mammo_lib import fileio, patch_store, run_folder
from mammo_lib.lesion_classes import normalise_lesion_classes, select_lesion_rows

PAPER_N_PER_GROUP = 500
PAPER_PERPLEXITY = 250.0
PAPER_N_ITER = 4000
BACKENDS = ("exact-torch", "sklearn", "opentsne")
DEFAULT_BACKEND = "exact-torch"
EXACT_TORCH_MAX_POINTS = 12_000
EARLY_EXAGGERATION = 12.0
EXPLORATION_N_ITER = 250
GROUP_ORDER = ("lesion", "synthetic", "normal")
# the paper's legend (Fig. 2): ORG = real lesions, GAN = synthetic lesions, NORM_TIS = normal tissue
GROUP_LEGEND = {"lesion": "ORG", "synthetic": "GAN", "normal": "NORM_TIS"}
GROUP_STYLE = {
    "lesion": dict(marker="x", color="red", s=22, linewidths=1.0),
    "synthetic": dict(marker="o", facecolors="none", edgecolors="green", s=22, linewidths=0.9),
    "normal": dict(marker="^", facecolors="none", edgecolors="purple", s=22, linewidths=0.9),
}
BENCHMARK_NOTE = (
    "benchmarks/bench_tsne.py, paper configuration (1,500 x 16,384 phantom-like patches, perplexity 250, "
    "4,000 iterations all forced), one run on the shared 2-core CPU, 2026-11-24: sklearn Barnes-Hut 338.8 s "
    "KL 0.8374; openTSNE FFT 146.4 s KL 0.8398; exact-torch 53.7 s KL 0.8370 (time ratio to sklearn 0.158, "
    "KL -0.05%). Scalable path: 30,000 patches (PCA 50 + openTSNE FFT, perplexity 50, 750 iterations) 104.5 s"
)


class FeatureSpaceError(ValueError):
    """Bad input or parameters for the feature-space stage; the message says what to do."""


# ----------------------------------------------------------------------------- input


def check_patch_array(patches: np.ndarray, name: str) -> np.ndarray:
    """Validate one group's patches: shape (n, s, s), finite values; returns the array."""
    arr = np.asarray(patches)
    if arr.ndim != 3 or arr.shape[1] != arr.shape[2]:
        raise FeatureSpaceError(f"{name}: patches must have shape (n, size, size), got {arr.shape}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        bad = int(np.sum(~np.all(np.isfinite(arr.reshape(len(arr), -1)), axis=1)))
        raise FeatureSpaceError(
            f"{name}: {bad} patch(es) contain NaN or infinite values; fix or drop them "
            "(patch_store.write_patch_store refuses them, so this array did not come from a store)"
        )
    if arr.dtype.kind not in "uif":
        raise FeatureSpaceError(f"{name}: patches must be numeric, got dtype {arr.dtype}")
    return arr


@dataclass
class GroupSample:
    """The patches the t-SNE uses: one row per patch, in group order lesion, synthetic, normal."""

    patches: np.ndarray  # uint8 (n, s, s)
    groups: np.ndarray  # str (n,)
    patch_ids: np.ndarray  # str (n,)
    sources: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    lesion_classes: list[str] | None = None  # the real lesion classes sampled (None: all)

    def __len__(self) -> int:
        return len(self.patches)

    def of(self, group: str) -> np.ndarray:
        return self.patches[self.groups == group]


def sample_groups(
    group_patches: dict[str, np.ndarray],
    n_per_group: int = PAPER_N_PER_GROUP,
    seed: int = 0,
    group_ids: dict[str, np.ndarray] | None = None,
    sources: dict[str, str] | None = None,
) -> GroupSample:
    """Draw ``n_per_group`` patches per group without replacement (all when fewer, with a warning).

    Patches are converted to uint8 (floats must lie in [0, 1]); all groups must have the same
    patch size, because the t-SNE compares raw pixels.
    """
    if n_per_group < 1:
        raise FeatureSpaceError(f"n_per_group must be >= 1, got {n_per_group}")
    missing = [g for g in GROUP_ORDER if g not in group_patches]
    if missing:
        raise FeatureSpaceError(f"groups {missing} are missing; expected {list(GROUP_ORDER)}")
    sources = sources or {g: g for g in GROUP_ORDER}
    sizes = {}
    for g in GROUP_ORDER:
        arr = check_patch_array(group_patches[g], sources.get(g, g))
        sizes[g] = arr.shape[1]
        if len(arr) == 0:
            raise FeatureSpaceError(f"{sources.get(g, g)}: group {g!r} has no patches")
    if len(set(sizes.values())) > 1:
        detail = ", ".join(f"{g} {sizes[g]}x{sizes[g]} ({sources.get(g, g)})" for g in GROUP_ORDER)
        raise FeatureSpaceError(
            f"groups have different patch sizes: {detail}; the t-SNE compares raw pixels, so "
            "extract (notebook 01) and generate (notebook 02) patches of one size"
        )
    rng = np.random.default_rng(seed)
    out_p, out_g, out_id, notes = [], [], [], []
    for g in GROUP_ORDER:
        arr = np.asarray(group_patches[g])
        ids = np.asarray(group_ids[g]).astype(str) if group_ids and g in group_ids else np.array(
            [f"{g}-{i:06d}" for i in range(len(arr))]
        )
        n = len(arr)
        if n < n_per_group:
            msg = (
                f"group {g!r} has only {n} patches (< {n_per_group} requested): using all {n}"
                f" ({sources.get(g, g)})"
            )
            warnings.warn(msg, stacklevel=2)
            notes.append(msg)
            idx = np.arange(n)
        else:
            idx = np.sort(rng.choice(n, size=n_per_group, replace=False))
        sel = arr[idx]
        if sel.dtype != np.uint8:
            sel = patch_store.to_uint8(sel.astype(np.float64))
        out_p.append(sel)
        out_g.append(np.full(len(idx), g))
        out_id.append(ids[idx])
    return GroupSample(
        patches=np.concatenate(out_p),
        groups=np.concatenate(out_g),
        patch_ids=np.concatenate(out_id),
        sources=dict(sources),
        warnings=notes,
    )


def load_groups(run_dir: str | os.PathLike, n_per_group: int = PAPER_N_PER_GROUP, seed: int = 0,
                lesion_classes: list[str] | None = None) -> GroupSample:
    """Open the three stores of a run folder and sample ``n_per_group`` patches from each.

    The real "lesion" group is drawn only from the patches whose ``lesion_class`` is in
    ``lesion_classes`` (None: every class; the paper used ``["mass"]``). An unknown class or a
    filter that leaves no patch is an error naming the store and its class counts.
    """
    classes = normalise_lesion_classes(lesion_classes)
    paths = {
        "lesion": run_folder.lesion_store_path(run_dir),
        "synthetic": run_folder.synthetic_store_path(run_dir),
        "normal": run_folder.normal_store_path(run_dir),
    }
    stores = {g: patch_store.open_patch_store(p) for g, p in paths.items()}
    sizes = {g: s.patch_size for g, s in stores.items()}
    if len(set(sizes.values())) > 1:
        detail = ", ".join(f"{paths[g]}: {sizes[g]}x{sizes[g]}" for g in GROUP_ORDER)
        raise FeatureSpaceError(
            f"patch stores have different patch sizes ({detail}); rerun notebooks 01/02 with one patch size"
        )
    candidates = {g: np.arange(len(s)) for g, s in stores.items()}
    candidates["lesion"] = select_lesion_rows(stores["lesion"].manifest, classes, paths["lesion"],
                                              purpose="for the real lesion group")
    sources = {g: str(p) for g, p in paths.items()}
    if classes is not None:
        sources["lesion"] += f" (lesion classes: {', '.join(classes)})"
    rng = np.random.default_rng(seed)
    patches, ids = {}, {}
    for g in GROUP_ORDER:
        store, rows = stores[g], candidates[g]
        n = len(rows)
        idx = rows if n <= n_per_group else rows[np.sort(rng.choice(n, size=n_per_group, replace=False))]
        patches[g] = store.load(idx)
        ids[g] = store.manifest["patch_id"].to_numpy().astype(str)[idx]
    sample = sample_groups(patches, n_per_group=n_per_group, seed=seed, group_ids=ids, sources=sources)
    sample.lesion_classes = classes
    return sample


def flatten_pixels(patches: np.ndarray) -> np.ndarray:
    """Raw pixels flattened to (n, s*s) float32 in [0, 1] -- the paper's t-SNE input."""
    arr = check_patch_array(patches, "patches")
    flat = arr.reshape(len(arr), -1).astype(np.float32)
    if arr.dtype == np.uint8:
        flat /= 255.0
    return flat


# ----------------------------------------------------------------------------- t-SNE


def resolve_perplexity(perplexity: float, n_points: int, policy: str = "clamp") -> tuple[float, str | None]:
    """Check the perplexity against the number of points.

    t-SNE needs about 3 * perplexity neighbours per point, so the perplexity must be at most
    (n - 1) / 3. ``policy="clamp"`` (the default, so a small data set still gives a picture)
    lowers it to floor((n - 1) / 3) and returns a warning text (also issued as a Python
    warning); ``policy="raise"`` raises with advice instead. Fewer than 4 points always raise.
    """
    if not perplexity > 0:
        raise FeatureSpaceError(f"perplexity must be > 0, got {perplexity}")
    if n_points < 4:
        raise FeatureSpaceError(
            f"t-SNE needs at least 4 points, got {n_points}: add patches to the stores"
        )
    limit = math.floor((n_points - 1) / 3)
    if perplexity <= limit:
        return float(perplexity), None
    advice = (
        f"perplexity {perplexity:g} is too large for {n_points} points (at most (n-1)/3 = {limit}); "
        f"use more patches per group or a perplexity <= {limit}"
    )
    if policy == "raise":
        raise FeatureSpaceError(advice)
    if policy != "clamp":
        raise FeatureSpaceError(f"unknown perplexity policy {policy!r}; use 'clamp' or 'raise'")
    msg = f"{advice}; clamped to {limit}"
    warnings.warn(msg, stacklevel=2)
    return float(limit), msg


@dataclass
class TSNEResult:
    """A 2-D embedding and how it was made."""

    embedding: np.ndarray  # float64 (n, 2)
    kl_divergence: float
    n_iter: int
    backend: str
    perplexity: float
    seconds: float
    params: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _sq_distances(x: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (float64, exact zeros on the diagonal)."""
    x64 = np.asarray(x, dtype=np.float64)
    sq = np.einsum("ij,ij->i", x64, x64)
    d = sq[:, None] + sq[None, :] - 2.0 * (x64 @ x64.T)
    np.maximum(d, 0.0, out=d)
    np.fill_diagonal(d, 0.0)
    return d


def binary_search_perplexity(sq_dist: np.ndarray, perplexity: float, n_steps: int = 100,
                             tol: float = 1e-5) -> np.ndarray:
    """Conditional probabilities p_{j|i} (rows sum to 1) whose entropy matches log(perplexity).

    ``sq_dist`` is (n, k): squared distances of each point to its k neighbours. The bisection on
    the precision beta follows scikit-learn's ``_binary_search_perplexity`` (start 1, double or
    halve until bracketed, 100 steps, tolerance 1e-5 on the entropy), vectorised over all rows;
    distances are shifted by the row minimum for numerical safety (the result is unchanged).
    """
    d = np.asarray(sq_dist, dtype=np.float64)
    d = d - d.min(axis=1, keepdims=True)
    n = len(d)
    target = math.log(perplexity)
    beta = np.ones(n)
    beta_min = np.full(n, -np.inf)
    beta_max = np.full(n, np.inf)
    active = np.ones(n, dtype=bool)
    p = np.empty_like(d)
    for _ in range(n_steps):
        rows = np.flatnonzero(active)
        if rows.size == 0:
            break
        pr = np.exp(-d[rows] * beta[rows, None])
        s = np.maximum(pr.sum(axis=1), 1e-8)
        pr /= s[:, None]
        p[rows] = pr
        entropy = np.log(s) + beta[rows] * np.einsum("ij,ij->i", d[rows], pr)
        diff = entropy - target
        done = np.abs(diff) <= tol
        up = (diff > 0) & ~done
        down = (diff <= 0) & ~done
        r_up, r_down = rows[up], rows[down]
        beta_min[r_up] = beta[r_up]
        beta[r_up] = np.where(np.isinf(beta_max[r_up]), beta[r_up] * 2.0, (beta[r_up] + beta_max[r_up]) / 2.0)
        beta_max[r_down] = beta[r_down]
        beta[r_down] = np.where(np.isinf(beta_min[r_down]), beta[r_down] / 2.0, (beta[r_down] + beta_min[r_down]) / 2.0)
        active[rows[done]] = False
    return p


def joint_probabilities(x: np.ndarray, perplexity: float) -> np.ndarray:
    """Dense symmetric P (n, n), sum 1, as scikit-learn's Barnes-Hut TSNE computes it.

    k = min(n - 1, floor(3 * perplexity + 1)) nearest neighbours on squared Euclidean
    distances, conditional P by perplexity bisection, then P = (P + P^T) / sum.
    """
    n = len(x)
    d = _sq_distances(x)
    np.fill_diagonal(d, np.inf)
    k = min(n - 1, int(3.0 * perplexity + 1))
    nn = np.argpartition(d, k - 1, axis=1)[:, :k] if k < n - 1 else np.argsort(d, axis=1)[:, :k]
    nn_d = np.take_along_axis(d, nn, axis=1)
    cond = binary_search_perplexity(nn_d.astype(np.float32).astype(np.float64), perplexity)
    p = np.zeros((n, n), dtype=np.float64)
    np.put_along_axis(p, nn, cond, axis=1)
    p = p + p.T
    p /= max(p.sum(), np.finfo(np.float64).eps)
    return p


def pca_init(x: np.ndarray, seed: int) -> np.ndarray:
    """scikit-learn's PCA initialisation: first two PCs, scaled so PC1 has std 1e-4."""
    from sklearn.decomposition import PCA

    emb = PCA(n_components=2, random_state=seed).fit_transform(np.asarray(x, dtype=np.float32))
    emb = emb.astype(np.float32)
    return emb / np.std(emb[:, 0]) * 1e-4


def kl_divergence_exact(p: np.ndarray, y: np.ndarray) -> float:
    """KL(P || Q) of a dense P and an embedding y (Student-t, one degree of freedom)."""
    d = _sq_distances(y)
    w = 1.0 / (1.0 + d)
    np.fill_diagonal(w, 0.0)
    q = w / w.sum()
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / np.maximum(q[mask], np.finfo(np.float64).eps))))


def _tsne_exact_torch(
    p: np.ndarray,
    init: np.ndarray,
    n_iter: int,
    learning_rate: float,
    early_exaggeration: float = EARLY_EXAGGERATION,
    n_iter_check: int = 50,
    n_iter_without_progress: int = 300,
    min_grad_norm: float = 1e-7,
    dtype: str = "float32",
    device: str | None = None,
    progress: bool = False,
    exploration_n_iter: int = EXPLORATION_N_ITER,
) -> tuple[np.ndarray, float, int]:
    """Exact t-SNE gradient descent with scikit-learn's schedule; returns (Y, KL, last iteration)."""
    import torch

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tdt = torch.float64 if dtype == "float64" else torch.float32
    n = len(p)
    P = torch.as_tensor(p, dtype=tdt, device=dev)
    Y = torch.as_tensor(np.asarray(init), dtype=tdt, device=dev).clone()
    buf_a = torch.empty((n, n), dtype=tdt, device=dev)
    buf_b = torch.empty((n, n), dtype=tdt, device=dev)
    eye = torch.eye(n, dtype=torch.bool, device=dev)
    p_pos = P > 0
    logp = torch.where(p_pos, torch.log(torch.where(p_pos, P, torch.ones_like(P))), torch.zeros_like(P))
    plogp = float((P * logp).sum())
    p_sum = float(P.sum())
    tiny = torch.finfo(tdt).eps if tdt == torch.float64 else float(np.finfo(np.float64).eps)

    def gradient(exaggeration: float, compute_error: bool) -> tuple[torch.Tensor, float]:
        # W_ij = 1 / (1 + |y_i - y_j|^2) from |y_i|^2 + |y_j|^2 - 2 y_i.y_j on centred y (two
        # passes over N^2 instead of five; centring keeps float32 cancellation small)
        yc = Y - Y.mean(dim=0, keepdim=True)
        sq = (yc * yc).sum(dim=1)
        torch.add(sq[:, None], sq[None, :], out=buf_a)
        buf_a.addmm_(yc, yc.T, alpha=-2.0).clamp_min_(0.0).add_(1.0).reciprocal_()
        buf_a.masked_fill_(eye, 0.0)
        z = float(buf_a.sum())
        error = float("nan")
        if compute_error:
            # KL(P_exag || Q) as scikit-learn reports it during exaggeration: sum pe log pe - sum pe log q
            q = torch.div(buf_a, z, out=buf_b).clamp_min_(tiny).log_()
            error = float(exaggeration * plogp + exaggeration * math.log(exaggeration) * p_sum
                          - exaggeration * float((P * q).sum()))
        # M = W * (E P - W / Z) = E * (P W - W^2 / (E Z));  grad_i = 4 * sum_j M_ij (y_i - y_j)
        torch.mul(P, buf_a, out=buf_b)
        buf_b.addcmul_(buf_a, buf_a, value=-1.0 / (exaggeration * z))
        grad = buf_b.sum(dim=1, keepdim=True) * Y - buf_b @ Y
        grad.mul_(4.0 * exaggeration)
        return grad, error

    def descend(it: int, max_iter: int, momentum: float, exaggeration: float, without_progress: int,
                bar) -> tuple[float, int]:
        update = torch.zeros_like(Y)
        gains = torch.ones_like(Y)
        best_error, best_iter, error, i = float(np.finfo(float).max), it, float(np.finfo(float).max), it
        for i in range(it, max_iter):
            check = (i + 1) % n_iter_check == 0
            grad, err = gradient(exaggeration, check or i == max_iter - 1)
            if not math.isnan(err):
                error = err
            inc = (update * grad) < 0.0
            gains.copy_(torch.where(inc, gains + 0.2, gains * 0.8)).clamp_min_(0.01)
            grad.mul_(gains)
            update.mul_(momentum).sub_(grad, alpha=learning_rate)
            Y.add_(update)
            if bar is not None:
                bar.update(1)
            if check:
                grad_norm = float(torch.linalg.vector_norm(grad))
                if error < best_error:
                    best_error, best_iter = error, i
                elif i - best_iter > without_progress:
                    break
                if grad_norm <= min_grad_norm:
                    break
        return error, i

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_iter, desc="t-SNE (exact-torch)", leave=False)
    try:
        _, it = descend(0, exploration_n_iter, 0.5, early_exaggeration, exploration_n_iter, bar)
        error = float("nan")
        if it < exploration_n_iter or n_iter - exploration_n_iter > 0:
            error, it = descend(it + 1, n_iter, 0.8, 1.0, n_iter_without_progress, bar)
    finally:
        if bar is not None:
            bar.close()
    y = Y.detach().cpu().numpy().astype(np.float64)
    return y, error, it


def run_tsne(
    x: np.ndarray,
    perplexity: float = PAPER_PERPLEXITY,
    n_iter: int = PAPER_N_ITER,
    backend: str = DEFAULT_BACKEND,
    seed: int = 0,
    perplexity_policy: str = "clamp",
    n_threads: int | None = None,
    progress: bool = False,
    device: str | None = None,
    min_grad_norm: float = 1e-7,
    n_iter_without_progress: int = 300,
) -> TSNEResult:
    """2-D t-SNE of the rows of ``x`` with PCA initialisation and a fixed seed.

    ``n_iter`` counts all iterations including the 250 early-exaggeration ones (scikit-learn's
    convention; openTSNE gets 250 + (n_iter - 250)). The returned KL divergence is each
    backend's own final value (exact for exact-torch, Barnes-Hut/FFT estimates otherwise).
    ``min_grad_norm`` and ``n_iter_without_progress`` are scikit-learn's stopping rules (checked
    every 50 iterations; exact-torch and sklearn honour them, openTSNE always runs n_iter);
    pass 0 and a large number to force every iteration (the benchmark does).
    """
    if backend not in BACKENDS:
        raise FeatureSpaceError(f"unknown t-SNE backend {backend!r}; choose one of {list(BACKENDS)}")
    x = np.asarray(x)
    if x.ndim != 2:
        raise FeatureSpaceError(f"t-SNE input must be 2-D (n_points, n_features), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise FeatureSpaceError("t-SNE input contains NaN or infinite values; check the patch arrays")
    if n_iter < EXPLORATION_N_ITER:
        raise FeatureSpaceError(
            f"n_iter must be at least {EXPLORATION_N_ITER} (the early-exaggeration phase), got {n_iter}"
        )
    perp, note = resolve_perplexity(perplexity, len(x), perplexity_policy)
    notes = [note] if note else []
    # exact-torch defaults to one thread: deterministic whatever the core count (a different
    # reduction order gives a different, equally good local minimum) and, measured here, much
    # faster than two threads when other jobs share the cores
    threads = n_threads or (1 if backend == "exact-torch" else min(2, os.cpu_count() or 1))
    x32 = x.astype(np.float32, copy=False)
    t0 = time.perf_counter()
    params = dict(perplexity=perp, n_iter=n_iter, init="pca", seed=seed,
                  early_exaggeration=EARLY_EXAGGERATION, n_points=len(x), n_features=x.shape[1])
    if backend == "exact-torch":
        import torch

        if len(x) > EXACT_TORCH_MAX_POINTS:
            raise FeatureSpaceError(
                f"exact-torch needs N^2 memory and time; {len(x)} points is above {EXACT_TORCH_MAX_POINTS}: "
                "use backend='opentsne' (or embed_large) for large collections"
            )
        old_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            p = joint_probabilities(x32, perp)
            init = pca_init(x32, seed)
            lr = max(len(x) / EARLY_EXAGGERATION / 4.0, 50.0)
            y, _, it = _tsne_exact_torch(p, init, n_iter, lr, progress=progress, device=device,
                                         min_grad_norm=min_grad_norm,
                                         n_iter_without_progress=n_iter_without_progress)
            it = min(it, n_iter - 1)
            # the final KL, exact and in float64, of the final embedding against the plain P
            kl = kl_divergence_exact(p, y)
        finally:
            torch.set_num_threads(old_threads)
        params.update(learning_rate=lr, gradient="exact dense (PyTorch)")
    elif backend == "sklearn":
        from sklearn.manifold import TSNE

        tsne = TSNE(n_components=2, perplexity=perp, max_iter=n_iter, init="pca", random_state=seed,
                    learning_rate="auto", method="barnes_hut", angle=0.5, n_jobs=threads,
                    min_grad_norm=min_grad_norm, n_iter_without_progress=n_iter_without_progress)
        y = tsne.fit_transform(x32).astype(np.float64)
        kl, it = float(tsne.kl_divergence_), int(tsne.n_iter_)
        params.update(learning_rate=float(tsne.learning_rate_), gradient="Barnes-Hut, angle 0.5")
    else:
        from openTSNE import TSNE as OpenTSNE

        tsne = OpenTSNE(n_components=2, perplexity=perp, n_iter=n_iter - EXPLORATION_N_ITER,
                        early_exaggeration_iter=EXPLORATION_N_ITER, early_exaggeration=EARLY_EXAGGERATION,
                        initialization="pca", negative_gradient_method="fft", random_state=seed,
                        n_jobs=threads, verbose=False)
        emb = tsne.fit(x32)
        y = np.asarray(emb, dtype=np.float64)
        kl, it = float(emb.kl_divergence), n_iter - 1
        params.update(learning_rate="auto (openTSNE: N/12)", gradient="FFT-interpolated")
    seconds = time.perf_counter() - t0
    return TSNEResult(embedding=y, kl_divergence=float(kl), n_iter=int(it) + 1, backend=backend,
                      perplexity=perp, seconds=seconds, params=params, warnings=notes)


def embed_large(
    x: np.ndarray,
    perplexity: float = 50.0,
    n_iter: int = 750,
    pca_dims: int = 50,
    seed: int = 0,
    n_threads: int | None = None,
    pca_fit_max: int = 5000,
    chunk: int = 2000,
) -> TSNEResult:
    """The scalable path for tens of thousands of patches: PCA to ``pca_dims`` (50, the standard
    preprocessing for large t-SNE), then openTSNE with the FFT-interpolated gradient.

    ``x`` is either patches (n, s, s) -- uint8 keeps 30,000 128x128 patches at 0.5 GB -- or a
    2-D float array. The PCA is fitted (randomized SVD) on a random subset of at most
    ``pca_fit_max`` rows and applied to all rows in chunks, so memory stays bounded.
    Defaults differ from the paper's small-N configuration on purpose: perplexity 50 and 750
    iterations (250 exaggerated + 500, openTSNE's usual schedule), because the cost of the
    attractive forces grows with N * 3 * perplexity. Pass the paper's values to get them at a
    higher cost.
    """
    from sklearn.decomposition import PCA

    arr = np.asarray(x)
    if arr.ndim == 3:
        arr = check_patch_array(arr, "patches")

        def rows(i: np.ndarray | slice) -> np.ndarray:
            return flatten_pixels(arr[i])
    elif arr.ndim == 2:
        def rows(i: np.ndarray | slice) -> np.ndarray:
            return np.asarray(arr[i], dtype=np.float32)
    else:
        raise FeatureSpaceError(f"embed_large expects patches (n, s, s) or rows (n, d), got shape {arr.shape}")
    n = len(arr)
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    fit_idx = np.sort(rng.choice(n, size=min(n, pca_fit_max), replace=False))
    fit_rows = rows(fit_idx)
    if not np.all(np.isfinite(fit_rows)):
        raise FeatureSpaceError("embed_large input contains NaN or infinite values")
    dims = int(min(pca_dims, fit_rows.shape[1], len(fit_rows) - 1))
    pca = PCA(n_components=dims, random_state=seed, svd_solver="randomized").fit(fit_rows)
    reduced = np.empty((n, dims), dtype=np.float32)
    for start in range(0, n, chunk):
        block = rows(slice(start, start + chunk))
        if not np.all(np.isfinite(block)):
            raise FeatureSpaceError(f"embed_large input rows {start}..{start + len(block) - 1} contain NaN or inf")
        reduced[start:start + len(block)] = pca.transform(block)
    t_pca = time.perf_counter() - t0
    res = run_tsne(reduced, perplexity=perplexity, n_iter=n_iter, backend="opentsne", seed=seed,
                   n_threads=n_threads)
    res.seconds = time.perf_counter() - t0
    res.params.update(pca_dims=dims, pca_fit_rows=len(fit_idx), pca_seconds=round(t_pca, 2),
                      n_features=int(np.prod(arr.shape[1:])))
    return res


# ----------------------------------------------------------------------------- learned features


@dataclass
class LesionCNN:
    """A small CNN trained here to tell real lesions from normal tissue; its penultimate layer
    gives a learned feature space that needs no downloaded weights."""

    model: object
    input_size: int
    train_accuracy: float
    epochs: int
    seconds: float
    n_train: int


def _build_cnn(feature_dim: int = 32):
    import torch.nn as nn

    features = nn.Sequential(
        nn.Conv2d(1, 8, 5, stride=2, padding=2), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(32 * 4, feature_dim), nn.ReLU(),
    )
    return nn.ModuleDict({"features": features, "head": nn.Linear(feature_dim, 2)})


def _to_tensor(patches: np.ndarray, input_size: int):
    import torch
    import torch.nn.functional as F

    t = torch.as_tensor(flatten_pixels(patches).reshape(len(patches), 1, patches.shape[1], patches.shape[2]))
    if t.shape[-1] != input_size:
        t = F.interpolate(t, size=(input_size, input_size), mode="area")
    return t


def train_lesion_cnn(
    lesion: np.ndarray,
    normal: np.ndarray,
    seed: int = 0,
    max_epochs: int = 15,
    max_seconds: float = 60.0,
    input_size: int = 64,
    n_threads: int = 2,
    progress: bool = False,
) -> LesionCNN:
    """Train the lesion-vs-normal CNN on real patches only (never on synthetic ones), with a
    fixed seed, on the CPU, stopping after ``max_epochs`` or ``max_seconds``."""
    import torch

    lesion = check_patch_array(lesion, "lesion patches")
    normal = check_patch_array(normal, "normal patches")
    torch.manual_seed(seed)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        xb = torch.cat([_to_tensor(lesion, input_size), _to_tensor(normal, input_size)])
        yb = torch.cat([torch.ones(len(lesion), dtype=torch.long), torch.zeros(len(normal), dtype=torch.long)])
        model = _build_cnn()
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        gen = torch.Generator().manual_seed(seed)
        t0 = time.perf_counter()
        epochs = 0
        iterator = range(max_epochs)
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(iterator, desc="lesion CNN", leave=False)
        for _ in iterator:
            order = torch.randperm(len(xb), generator=gen)
            for start in range(0, len(xb), 64):
                idx = order[start:start + 64]
                logits = model["head"](model["features"](xb[idx]))
                loss = torch.nn.functional.cross_entropy(logits, yb[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            epochs += 1
            if time.perf_counter() - t0 > max_seconds:
                break
        with torch.no_grad():
            acc = float((model["head"](model["features"](xb)).argmax(1) == yb).float().mean())
    finally:
        torch.set_num_threads(old_threads)
    return LesionCNN(model=model, input_size=input_size, train_accuracy=acc, epochs=epochs,
                     seconds=time.perf_counter() - t0, n_train=len(xb))


def cnn_features(cnn: LesionCNN, patches: np.ndarray) -> np.ndarray:
    """Penultimate-layer activations (n, 32) of the lesion CNN."""
    import torch

    patches = check_patch_array(patches, "patches")
    with torch.no_grad():
        out = [cnn.model["features"](_to_tensor(patches[i:i + 256], cnn.input_size))
               for i in range(0, len(patches), 256)]
    return torch.cat(out).numpy().astype(np.float64)


# ----------------------------------------------------------------------------- outliers, table, figures


def neighbour_normal_share(points: np.ndarray, groups: np.ndarray, k: int = 10) -> np.ndarray:
    """For every point, the (class-balanced, see :func:`balanced_share`) share of its k nearest
    *real* neighbours (lesion or normal, itself excluded) that are normal tissue. Synthetic
    points are not neighbours of anything, so a synthetic cluster cannot hide its own outliers."""
    groups = np.asarray(groups)
    ref = np.flatnonzero(groups != "synthetic")
    d = _sq_distances(np.asarray(points, dtype=np.float64))
    d = d[:, ref]
    self_col = {j: c for c, j in enumerate(ref)}
    for i, c in self_col.items():
        d[i, c] = np.inf
    k = min(k, len(ref) - 1)
    nn = np.argpartition(d, k - 1, axis=1)[:, :k]
    is_normal = groups[ref] == "normal"
    return balanced_share(is_normal[nn].sum(axis=1), k, int(is_normal.sum()), int((~is_normal).sum()))


def balanced_share(n_normal_nn: np.ndarray, k: int, n_normal: int, n_lesion: int) -> np.ndarray:
    """Share of normal tissue among k neighbours, class-balanced: each neighbour counts with
    weight 1 / (size of its group), so a pool with more normal than lesion patches does not
    make every point look like normal tissue. Equals the plain share when the groups are equal."""
    c_n = np.asarray(n_normal_nn, dtype=np.float64) / max(n_normal, 1)
    c_l = (k - np.asarray(n_normal_nn, dtype=np.float64)) / max(n_lesion, 1)
    return c_n / np.maximum(c_n + c_l, 1e-300)


def mark_outliers(points: np.ndarray, groups: np.ndarray, k: int = 10, threshold: float = 0.5) -> np.ndarray:
    """Outliers: real or synthetic *lesion* points whose k nearest real neighbours are mostly
    (> ``threshold``) normal tissue -- the paper's "outlier" (a lesion sitting in the
    normal-tissue cluster). Normal-tissue points are never outliers."""
    share = neighbour_normal_share(points, groups, k)
    return (np.asarray(groups) != "normal") & (share > threshold)


def embedding_table(sample: GroupSample, result: TSNEResult, outliers: np.ndarray,
                    normal_share: np.ndarray | None = None) -> pd.DataFrame:
    """One row per embedded patch: group, patch_id, x1, x2, outlier flags."""
    df = pd.DataFrame({
        "group": sample.groups,
        "patch_id": sample.patch_ids,
        "x1": result.embedding[:, 0],
        "x2": result.embedding[:, 1],
        "outlier_tsne": np.asarray(outliers, dtype=bool),
    })
    if normal_share is not None:
        df["normal_neighbour_share_tsne"] = np.round(normal_share, 4)
    return df


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a CSV atomically."""
    path = Path(path)
    fileio.atomic_write_text(path, df.to_csv(index=False))
    return path


def plot_fig2(embedding: np.ndarray, groups: np.ndarray, outliers: np.ndarray | None = None,
              title: str | None = None):
    """The paper's Fig. 2: real lesions red crosses, synthetic green circles, normal tissue
    purple triangles, axes X1/X2, legend ORG/GAN/NORM_TIS; outliers ringed in black."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    for g in GROUP_ORDER:
        m = groups == g
        ax.scatter(embedding[m, 0], embedding[m, 1], label=GROUP_LEGEND[g], **GROUP_STYLE[g])
    if outliers is not None and np.any(outliers):
        ax.scatter(embedding[outliers, 0], embedding[outliers, 1], s=75, facecolors="none",
                   edgecolors="black", linewidths=0.7, label=f"outlier ({int(np.sum(outliers))})")
    ax.set_xlabel("X1")
    ax.set_ylabel("X2")
    ax.legend(loc="best", frameon=True, fontsize=9)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_thumbnails(embedding: np.ndarray, patches: np.ndarray, groups: np.ndarray,
                    outliers: np.ndarray | None = None, n_thumbs: int = 150, seed: int = 0,
                    zoom: float | None = None):
    """The patches themselves drawn at their embedded positions (one random patch per cell of
    a grid over the embedding, so they do not hide each other), framed in the group colour;
    outliers get a thick dashed frame."""
    import matplotlib.pyplot as plt
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    rng = np.random.default_rng(seed)
    n = len(embedding)
    # one random patch per cell of a grid over the embedding, so thumbnails
    # do not hide each other; at most n_thumbs cells
    cells_per_side = max(1, int(np.sqrt(n_thumbs)))
    lo, hi = embedding.min(axis=0), embedding.max(axis=0)
    cell = np.floor((embedding - lo) / np.maximum(hi - lo, 1e-12) * (cells_per_side - 1e-9)).astype(int)
    keys = cell[:, 0] * cells_per_side + cell[:, 1]
    priority = rng.random(n)
    chosen = set()
    for key in np.unique(keys):
        members = np.flatnonzero(keys == key)
        chosen.add(int(members[np.argmax(priority[members])]))
    colours = {"lesion": "red", "synthetic": "green", "normal": "purple"}
    if zoom is None:  # a thumbnail 80% of a grid cell wide (the axes are about 9 in = 648 pt wide)
        zoom = 0.8 * 9 * 72 / cells_per_side / max(patches.shape[1], 1)
    fig, ax = plt.subplots(figsize=(10, 9))
    ax.scatter(embedding[:, 0], embedding[:, 1], s=2, c="lightgrey")
    for i in sorted(chosen):
        is_out = outliers is not None and bool(outliers[i])
        img = OffsetImage(patches[i], cmap="gray", zoom=zoom, norm=None)
        img.get_children()[0].set_clim(0, 255)
        box = AnnotationBbox(img, embedding[i], frameon=True, pad=0.1,
                             bboxprops=dict(edgecolor=colours[groups[i]], linewidth=3.0 if is_out else 1.2,
                                            linestyle="--" if is_out else "-"))
        ax.add_artist(box)
    handles = [plt.Line2D([], [], color=colours[g], lw=3, label=GROUP_LEGEND[g]) for g in GROUP_ORDER]
    handles.append(plt.Line2D([], [], color="black", lw=3, ls="--", label="outlier (thick dashed frame)"))
    ax.legend(handles=handles, loc="best", fontsize=9)
    ax.set_xlabel("X1")
    ax.set_ylabel("X2")
    ax.set_title(f"patches at their t-SNE positions ({len(chosen)} of {n} shown, one per grid cell)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_closest_pairs(synthetic: np.ndarray, real: np.ndarray, pairs: list[dict], title: str = ""):
    """Memorisation check, by eye: each synthetic patch beside its nearest real training patch
    (top row synthetic, bottom row real), with the distance."""
    import matplotlib.pyplot as plt

    n = len(pairs)
    fig, axes = plt.subplots(2, max(n, 1), figsize=(1.6 * max(n, 1), 3.7), squeeze=False)
    for c, pair in enumerate(pairs):
        for r, (img, _label) in enumerate(((synthetic[pair["synthetic_index"]], "GAN"),
                                          (real[pair["real_index"]], "ORG"))):
            ax = axes[r, c]
            ax.imshow(img, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel("synthetic" if r == 0 else "nearest real", fontsize=9)
            if r == 0:
                ax.set_title(f"d={pair['distance']:.3g}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def feature_matrices(sample: GroupSample, space: str, cnn: LesionCNN | None = None) -> np.ndarray:
    """All sampled patches in one feature space: "pixels" (raw pixels in [0, 1], the paper's)
    or "cnn" (penultimate layer of the lesion-vs-normal CNN)."""
    if space == "pixels":
        return flatten_pixels(sample.patches).astype(np.float64)
    if space == "cnn":
        if cnn is None:
            raise FeatureSpaceError("feature space 'cnn' needs a trained LesionCNN (train_lesion_cnn)")
        return cnn_features(cnn, sample.patches)
    raise FeatureSpaceError(f"unknown feature space {space!r}; choose from ['pixels', 'cnn']")


FEATURE_SPACES = ("pixels", "cnn")


def jsonable(obj):
    """Nested metrics made JSON-ready by :func:`mammo_lib.fileio.json_safe`, with the
    ``per_point*`` lists (kept in memory for figures) dropped."""
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items() if not str(k).startswith("per_point")}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return fileio.json_safe(obj)
