"""t-SNE backends, parameter validation, outliers and the learned feature space."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mammo_lib import testing
from mammo_lib.feature_space import lesion_cnn
from mammo_lib.feature_space import sampling as fs
from mammo_lib.feature_space.arrays import flatten_pixels
from mammo_lib.feature_space.neighbours import sq_distances
from mammo_lib.feature_space.tsne import affinity as tsne_affinity
from mammo_lib.feature_space.tsne import run as tsne


@pytest.fixture(scope="module")
def small_groups():
    return testing.demo_groups(40, size=32, seed=3)


@pytest.fixture(scope="module")
def small_x(small_groups):
    return flatten_pixels(np.concatenate([small_groups[g] for g in fs.GROUP_ORDER]))


def test_perplexity_policy():
    assert tsne_affinity.resolve_perplexity(30, 100) == (30.0, None)
    with pytest.warns(UserWarning, match="clamped to 33"):
        perp, note = tsne_affinity.resolve_perplexity(250, 100)
    assert perp == 33 and "at most (n-1)/3" in note
    with pytest.raises(fs.FeatureSpaceError, match="use more patches per group or a perplexity <= 33"):
        tsne_affinity.resolve_perplexity(250, 100, policy="raise")
    with pytest.raises(fs.FeatureSpaceError, match="at least 4 points"):
        tsne_affinity.resolve_perplexity(1, 3)
    with pytest.raises(fs.FeatureSpaceError, match="unknown perplexity policy"):
        tsne_affinity.resolve_perplexity(250, 100, policy="shrug")


def test_bad_input_errors(small_x, small_groups):
    with pytest.raises(fs.FeatureSpaceError, match="unknown t-SNE backend 'umap'"):
        tsne.run_tsne(small_x, perplexity=5, n_iter=250, backend="umap")
    nan_x = small_x.copy()
    nan_x[3, 3] = np.nan
    with pytest.raises(fs.FeatureSpaceError, match="NaN"):
        tsne.run_tsne(nan_x, perplexity=5, n_iter=250)
    floats = small_groups["lesion"].astype(np.float32) / 255
    floats[0, 0, 0] = np.nan
    with pytest.raises(fs.FeatureSpaceError, match="1 patch\\(es\\) contain NaN"):
        fs.sample_groups({"lesion": floats, "synthetic": small_groups["synthetic"], "normal": small_groups["normal"]})
    other_size = testing.demo_groups(10, size=16, seed=0)["synthetic"]
    with pytest.raises(fs.FeatureSpaceError, match="different patch sizes"):
        fs.sample_groups({"lesion": small_groups["lesion"], "synthetic": other_size, "normal": small_groups["normal"]})
    with pytest.raises(fs.FeatureSpaceError, match="n_iter must be at least 250"):
        tsne.run_tsne(small_x, perplexity=5, n_iter=100)


def test_sample_groups_warns_when_short(small_groups):
    with pytest.warns(UserWarning, match="group 'synthetic' has only 40 patches"):
        s = fs.sample_groups(small_groups, n_per_group=50, seed=0)
    assert len(s) == 120 and len(s.warnings) == 3
    s2 = fs.sample_groups(small_groups, n_per_group=10, seed=0)
    s3 = fs.sample_groups(small_groups, n_per_group=10, seed=0)
    assert list(s2.patch_ids) == list(s3.patch_ids) and s2.patches.dtype == np.uint8


def test_binary_search_matches_perplexity(small_x):
    d = sq_distances(small_x, centre=False, float32_above=None)
    np.fill_diagonal(d, np.inf)
    nn = np.argsort(d, axis=1)[:, :31]
    p = tsne_affinity.binary_search_perplexity(np.take_along_axis(d, nn, 1), perplexity=10)
    assert np.allclose(p.sum(1), 1.0)
    entropy = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0), axis=1)
    assert np.allclose(np.exp(entropy), 10, rtol=1e-3)
    joint = tsne_affinity.joint_probabilities(small_x, 10)
    assert np.allclose(joint, joint.T) and math.isclose(joint.sum(), 1.0) and np.all(np.diag(joint) == 0)


def test_exact_torch_matches_sklearn_and_is_deterministic(small_x):
    ours = tsne.run_tsne(small_x, perplexity=10, n_iter=500, backend="exact-torch", seed=0)
    again = tsne.run_tsne(small_x, perplexity=10, n_iter=500, backend="exact-torch", seed=0)
    assert np.array_equal(ours.embedding, again.embedding) and ours.kl_divergence == again.kl_divergence
    ref = tsne.run_tsne(small_x, perplexity=10, n_iter=500, backend="sklearn", seed=0)
    assert ours.embedding.shape == ref.embedding.shape == (120, 2)
    # t-SNE's early phase is chaotic (round-off differences grow ~10x per 5 iterations), so
    # exact and Barnes-Hut runs end in different, similar minima: a few % apart at this tiny N
    assert ours.kl_divergence == pytest.approx(ref.kl_divergence, rel=0.06)
    p = tsne_affinity.joint_probabilities(small_x, 10)
    assert tsne.kl_divergence_exact(p, ours.embedding) == pytest.approx(ours.kl_divergence, rel=1e-4)
    # the three groups separate: most points' nearest embedded neighbour is of their own group
    groups = np.repeat(np.array(fs.GROUP_ORDER), 40)
    d = sq_distances(ours.embedding, centre=False, float32_above=None)
    np.fill_diagonal(d, np.inf)
    assert np.mean(groups[d.argmin(1)][groups == "normal"] == "normal") > 0.8


def test_opentsne_backend_and_scalable_path(small_x, small_groups):
    res = tsne.run_tsne(small_x, perplexity=10, n_iter=300, backend="opentsne", seed=0)
    assert res.embedding.shape == (120, 2) and res.kl_divergence > 0
    patches = np.concatenate([small_groups[g] for g in fs.GROUP_ORDER])
    big = tsne.embed_large(patches, perplexity=10, n_iter=300, pca_dims=10, pca_fit_max=80, chunk=50)
    assert big.embedding.shape == (120, 2) and big.params["pca_dims"] == 10 and big.params["pca_fit_rows"] == 80
    assert np.isfinite(big.embedding).all()


def test_outliers_on_constructed_points():
    rng = np.random.default_rng(0)
    lesion = rng.normal(0, 1, (30, 2))
    normal = rng.normal(20, 1, (30, 2))
    synthetic = np.vstack([rng.normal(0, 1, (25, 2)), rng.normal(20, 1, (5, 2))])
    points = np.vstack([lesion, synthetic, normal])
    groups = np.repeat(np.array(["lesion", "synthetic", "normal"]), 30)
    out = fs.mark_outliers(points, groups, k=5)
    assert out[:30].sum() == 0 and out[60:].sum() == 0
    assert list(np.flatnonzero(out)) == list(range(55, 60))


def test_lesion_cnn_features_deterministic(small_groups):
    a = lesion_cnn.train_lesion_cnn(small_groups["lesion"], small_groups["normal"], seed=1, max_epochs=2, input_size=32,
                            n_threads=1)
    b = lesion_cnn.train_lesion_cnn(small_groups["lesion"], small_groups["normal"], seed=1, max_epochs=2, input_size=32,
                            n_threads=1)
    fa = lesion_cnn.cnn_features(a, small_groups["synthetic"])
    assert fa.shape == (40, 32) and np.isfinite(fa).all()
    assert np.array_equal(fa, lesion_cnn.cnn_features(b, small_groups["synthetic"]))
    assert a.n_train == 80 and 0.0 <= a.train_accuracy <= 1.0


def test_exact_torch_steps_equal_sklearn_exact_optimizer(small_x):
    """Our fused gradient + schedule equals scikit-learn's own exact gradient descent
    (``_kl_divergence`` + ``_gradient_descent``) step for step on the same P and init."""
    from scipy.spatial.distance import squareform
    from sklearn.manifold import _t_sne

    p = tsne_affinity.joint_probabilities(small_x, 10)
    init = tsne.pca_init(small_x, 0)
    n = len(small_x)
    n_steps = 8
    ours, _, _ = tsne.tsne_exact_torch(p, init, n_steps, 50.0, dtype="float64", device="cpu",
                                      exploration_n_iter=n_steps)
    params, _, _ = _t_sne._gradient_descent(
        _t_sne._kl_divergence, init.ravel().astype(np.float64).copy(), it=0, max_iter=n_steps, n_iter_check=50,
        n_iter_without_progress=n_steps, momentum=0.5, learning_rate=50.0, min_gain=0.01, min_grad_norm=1e-7,
        verbose=0, args=[squareform(p, checks=False) * tsne.EARLY_EXAGGERATION, 1, n, 2], kwargs={})
    ref = params.reshape(n, 2)
    assert np.abs(ref).max() > 1e-3  # the points have moved
    assert np.allclose(ours, ref, rtol=1e-9, atol=1e-12)


def test_exaggeration_only_run_reports_a_finite_kl(small_x):
    res = tsne.run_tsne(small_x, perplexity=5, n_iter=250, backend="exact-torch", seed=0)
    assert res.n_iter <= 250 and 0 < res.kl_divergence < 10


def test_load_groups_samples_real_lesions_of_the_chosen_classes(small_groups, tmp_path):
    import pandas as pd

    from mammo_lib import run_folder
    from mammo_lib.patch_store import MANIFEST_COLUMNS, write_patch_store
    from mammo_lib.sources.lesion_classes import LesionClassError

    def manifest(group, classes):
        return pd.DataFrame({"patch_id": [f"{group}-{i:03d}" for i in range(len(classes))], "group": group,
                             "source_kind": "phantom", "image_id": "img", "lesion_id": "", "lesion_class": classes,
                             "center_row": -1, "center_col": -1, "normalisation": "none", "checksum": ""},
                            columns=list(MANIFEST_COLUMNS))

    n = len(small_groups["lesion"])
    lesion_classes = ["mass" if i % 4 == 0 else "calcification" for i in range(n)]  # 10 mass, 30 calcification
    write_patch_store(run_folder.lesion_store_path(tmp_path), small_groups["lesion"], manifest("lesion", lesion_classes))
    write_patch_store(run_folder.synthetic_store_path(tmp_path), small_groups["synthetic"],
                      manifest("synthetic", ["synthetic"] * n))
    write_patch_store(run_folder.normal_store_path(tmp_path), small_groups["normal"], manifest("normal", ["normal"] * n))

    every = fs.load_groups(tmp_path, n_per_group=20, seed=0)
    assert every.lesion_classes is None and (every.groups == "lesion").sum() == 20
    with pytest.warns(UserWarning, match="only 10 patches"):
        masses = fs.load_groups(tmp_path, n_per_group=20, seed=0, lesion_classes=["mass"])
    lesion_ids = masses.patch_ids[masses.groups == "lesion"]
    assert sorted(lesion_ids) == [f"lesion-{i:03d}" for i in range(0, n, 4)]
    assert masses.lesion_classes == ["mass"] and "lesion classes: mass" in masses.sources["lesion"]
    np.testing.assert_array_equal(masses.of("lesion"), small_groups["lesion"][::4])
    with pytest.raises(LesionClassError, match=r"'tumour'.*calcification: 30, mass: 10"):
        fs.load_groups(tmp_path, n_per_group=20, lesion_classes=["tumour"])
    with pytest.raises(LesionClassError, match=r"leaves 0 patches in patch store .*lesion.zarr"):
        fs.load_groups(tmp_path, n_per_group=20, lesion_classes=["asymmetry"])


# ----------------------------------------------------------------------------- several generators


def _store(path, patches, generator=None):
    import pandas as pd

    from mammo_lib.patch_store import MANIFEST_COLUMNS, write_patch_store

    n = len(patches)
    manifest = pd.DataFrame({"patch_id": [f"{path.stem}-{i:03d}" for i in range(n)], "group": "synthetic",
                             "source_kind": "test", "image_id": "", "lesion_id": "", "lesion_class": "",
                             "center_row": -1, "center_col": -1, "normalisation": "none", "checksum": ""},
                            columns=list(MANIFEST_COLUMNS))
    if generator is not None:
        manifest["generator"] = generator
    return write_patch_store(path, patches, manifest)


def test_synthetic_stores_names_and_orders_generators(small_groups, tmp_path):
    from mammo_lib import run_folder
    from mammo_lib.generate.imported import GeneratorSpec, import_generator

    with pytest.raises(FileNotFoundError, match=r"synthetic: no synthetic patch store"):
        run_folder.synthetic_stores(tmp_path)
    syn = tmp_path / "synthetic"
    _store(syn / "zeta.zarr", small_groups["synthetic"][:5])  # no generator recorded: the folder stem
    _store(syn / "alpha.zarr", small_groups["synthetic"][:5], generator="alpha-gan")  # manifest column
    _store(run_folder.synthetic_store_path(tmp_path), small_groups["synthetic"])  # the DCGAN's legacy store
    folder = tmp_path / "mine"
    folder.mkdir()
    np.save(folder / "stack.npy", small_groups["lesion"][:6])
    import_generator(GeneratorSpec("mine", "folder", {"path": str(folder)}), syn, 32)  # attrs
    (syn / ".hidden.zarr").mkdir()  # an import's temporary copy is not a store
    stores = run_folder.synthetic_stores(tmp_path)
    assert list(stores) == ["dcgan", "alpha-gan", "mine", "zeta"]
    assert stores["dcgan"].name == "synthetic.zarr" and stores["mine"].name == "mine.zarr"
    _store(syn / "dcgan.zarr", small_groups["synthetic"][:5])
    with pytest.raises(ValueError, match=r"dcgan.zarr.*synthetic.zarr|synthetic.zarr.*dcgan.zarr"):
        run_folder.synthetic_stores(tmp_path)


def test_adding_a_generator_changes_no_other_groups_sample(small_groups):
    one = fs.sample_groups(small_groups, n_per_group=25, seed=4)
    other = testing.demo_groups(35, size=32, seed=9)["synthetic"]
    two = fs.sample_groups({**small_groups, "synthetic": {"synthetic": small_groups["synthetic"], "other": other}},
                           n_per_group=25, seed=4)
    assert one.generator_names() == ["synthetic"] and two.generator_names() == ["synthetic", "other"]
    assert two.counts() == {"lesion": 25, "synthetic": 50, "normal": 25}
    assert two.generator_counts() == {"synthetic": 25, "other": 25}
    keep = two.generators != "other"
    np.testing.assert_array_equal(two.patches[keep], one.patches)
    assert list(two.patch_ids[keep]) == list(one.patch_ids)
    # the second generator's rows come from its own stream, sorted, without repeats
    chosen = [int(i.split("-")[1]) for i in two.patch_ids[two.generators == "other"]]
    assert chosen == sorted(set(chosen)) and len(chosen) == 25
    np.testing.assert_array_equal(two.of("synthetic", "other"), other[chosen])
    # rows in order: lesion, each generator, normal
    assert list(dict.fromkeys(zip(two.groups, two.generators, strict=True))) == [
        ("lesion", ""), ("synthetic", "synthetic"), ("synthetic", "other"), ("normal", "")]
    table = fs.embedding_table(two, np.zeros((len(two), 2)), np.zeros(len(two), bool))
    assert list(table.columns) == ["group", "patch_id", "x1", "x2", "outlier_tsne", "generator"]


def test_fig2_legend_is_the_papers_with_one_generator_and_names_several(small_groups):
    from mammo_lib.feature_space import figures as fsp

    two = fs.sample_groups({**small_groups, "synthetic": {"dcgan": small_groups["synthetic"],
                                                           "mine": small_groups["lesion"]}}, n_per_group=10)
    xy = np.random.default_rng(0).normal(size=(len(two), 2))
    one_fig = fsp.plot_fig2(xy[two.generators != "mine"], two.groups[two.generators != "mine"])
    two_fig = fsp.plot_fig2(xy, two.groups, generators=two.generators)
    labels = [[t.get_text() for t in f.axes[0].get_legend().get_texts()] for f in (one_fig, two_fig)]
    assert labels == [["ORG", "GAN", "NORM_TIS"], ["ORG", "dcgan", "mine", "NORM_TIS"]]
    markers = {tuple(np.round(c.get_paths()[0].vertices, 3).ravel()) for c in two_fig.axes[0].collections}
    assert len(markers) == 4  # cross, circle, square, triangle: each group its own marker
    import matplotlib.colors as mcolors

    colours = [mcolors.to_hex(c.get_edgecolor()[0]) for c in two_fig.axes[0].collections]
    assert colours == [mcolors.to_hex(c) for c in ("red", "green", "tab:blue", "purple")]
    assert fsp.generator_style_words(0) == "green circles" and fsp.generator_style_words(1) == "blue squares"
