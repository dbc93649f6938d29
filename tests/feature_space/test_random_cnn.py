"""The random, untrained CNN of the "random-cnn" feature space (Naeem et al. 2020)."""

from __future__ import annotations

import numpy as np
import pytest

from mammo_lib import testing
from mammo_lib.feature_space import metrics as rm
from mammo_lib.feature_space import random_cnn
from mammo_lib.feature_space import sampling as fs
from mammo_lib.feature_space.arrays import flatten_pixels


@pytest.fixture(scope="module")
def groups():
    return testing.demo_groups(40, size=64, seed=3)


def test_features_are_pooled_layer_statistics_and_the_same_bytes_on_rerun(groups):
    import torch

    threads = torch.get_num_threads()
    state = torch.random.get_rng_state().clone()
    feats = random_cnn.random_cnn_features(groups["lesion"], seed=0)
    assert feats.shape == (40, random_cnn.feature_dim()) == (40, 240) and feats.dtype == np.float64
    assert np.all(np.isfinite(feats)) and feats.min() >= 0.0
    assert torch.equal(torch.random.get_rng_state(), state), "the global torch generator was used"
    assert torch.get_num_threads() == threads
    torch.manual_seed(999)  # the global seed changes nothing: the weights come from their own stream
    assert random_cnn.random_cnn_features(groups["lesion"], seed=0).tobytes() == feats.tobytes()
    # a patch's features do not depend on the other patches it is embedded with
    np.testing.assert_array_equal(random_cnn.random_cnn_features(groups["lesion"][3:17], seed=0), feats[3:17])
    other = random_cnn.random_cnn_features(groups["lesion"], seed=1)
    assert not np.allclose(other, feats)
    # uint8 and the same pixels as floats in [0, 1] give the same features
    np.testing.assert_allclose(random_cnn.random_cnn_features(groups["lesion"].astype(np.float32) / 255, seed=0),
                               feats, rtol=1e-5, atol=1e-6)
    net = random_cnn.build_random_cnn(0)
    assert net.feature_dim == 240 and [tuple(w.shape) for w in net.weights] == [
        (8, 1, 3, 3), (16, 8, 3, 3), (32, 16, 3, 3), (64, 32, 3, 3)]
    # He-normal: weight variance 2 / fan_in
    assert np.var(net.weights[3].numpy()) == pytest.approx(2 / (32 * 9), rel=0.1)


def test_random_cnn_sees_fine_texture_that_raw_pixels_miss(groups):
    """demo_groups' synthetic patches carry faint pixel noise (std 0.03): raw pixels cannot tell
    them from real lesions, the random CNN's first-layer statistics can."""
    pixels = rm.one_nn_accuracy(flatten_pixels(groups["lesion"]), flatten_pixels(groups["synthetic"]), 0)
    feats = {g: random_cnn.random_cnn_features(groups[g]) for g in ("lesion", "synthetic")}
    random = rm.one_nn_accuracy(feats["lesion"], feats["synthetic"], 0)
    assert pixels["value"] <= 0.55 and random["value"] >= 0.65


def test_feature_space_random_cnn_is_keyed_by_the_seed(groups):
    sample = fs.sample_groups(groups, n_per_group=10, seed=0)
    assert "random-cnn" in fs.FEATURE_SPACES and fs.check_feature_spaces(["pixels", "random-cnn"])
    x = fs.feature_matrices(sample, "random-cnn", seed=2)
    np.testing.assert_array_equal(x, random_cnn.random_cnn_features(sample.patches, seed=2))
    assert x.shape == (30, 240)
    with pytest.raises(fs.FeatureSpaceError, match=r"choose from \['pixels', 'cnn', 'random-cnn'\]"):
        fs.check_feature_spaces(["random_cnn"])


def test_bad_input_errors(groups):
    with pytest.raises(fs.FeatureSpaceError, match="too small.*need at least 8x8"):
        random_cnn.random_cnn_features(groups["lesion"][:, :4, :4])
    with pytest.raises(fs.FeatureSpaceError, match=r"shape \(n, size, size\)"):
        random_cnn.random_cnn_features(groups["lesion"][0])
    with pytest.raises(fs.FeatureSpaceError, match="n_threads must be >= 1"):
        random_cnn.random_cnn_features(groups["lesion"], n_threads=0)
    with pytest.raises(fs.FeatureSpaceError, match="first layer must have stride 1"):
        random_cnn.build_random_cnn(0, widths=(8, 16), strides=(2, 2))
    with pytest.raises(fs.FeatureSpaceError, match="one length"):
        random_cnn.build_random_cnn(0, widths=(8, 16), strides=(1,))
    with pytest.raises(ValueError, match=">= 0"):
        random_cnn.build_random_cnn(-1)
