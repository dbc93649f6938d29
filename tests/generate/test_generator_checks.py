"""check_generators: every file and folder that stage 02's ``generators`` names is opened before any
work, and every problem of every item is reported in one message naming the item, key and problem."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from mammo_lib.generate.contract import GeneratorError, GeneratorSpec
from mammo_lib.generate.sources import check_generators

SIZE = 16


class _TinyGenerator(torch.nn.Module):
    def __init__(self, latent_dim: int = 4, size: int = SIZE):
        super().__init__()
        self.fc = torch.nn.Linear(latent_dim, size * size)
        self.size = size

    def forward(self, z):
        return torch.tanh(self.fc(z.flatten(1))).view(-1, 1, self.size, self.size)


def _folder(tmp_path, name="mine", size=SIZE):
    src = tmp_path / name
    src.mkdir()
    Image.fromarray(np.zeros((size, size), np.uint8)).save(src / "a.png")
    return src


def _problems(items, **kw) -> str:
    with pytest.raises(GeneratorError) as err:
        check_generators(items, **kw)
    return str(err.value)


def test_good_items_pass_and_default_is_the_dcgan(tmp_path):
    torch.manual_seed(0)
    scripted = tmp_path / "scripted.pt"
    torch.jit.script(_TinyGenerator()).save(str(scripted))
    traced = tmp_path / "traced.pt"
    torch.jit.trace(_TinyGenerator(latent_dim=3), torch.zeros(2, 3)).save(str(traced))
    src = _folder(tmp_path)
    pd.DataFrame({"file": ["a.png"], "lesion_class": ["mass"]}).to_csv(src / "meta.csv", index=False)
    items = [{"name": "dcgan", "kind": "dcgan"},
             {"name": "mine", "kind": "folder", "path": str(src), "metadata": "meta.csv"},
             {"name": "s", "kind": "torchscript", "path": str(scripted), "latent_dim": 4, "n": 3},
             {"name": "t", "kind": "torchscript", "path": str(traced), "latent_dim": 3, "n": 3,
              "latent_shape": "flat"}]
    specs = check_generators(items, patch_size=SIZE)
    assert [(s.name, s.kind) for s in specs] == [("dcgan", "dcgan"), ("mine", "folder"), ("s", "torchscript"),
                                                 ("t", "torchscript")]
    assert check_generators(items) == specs  # no patch size: no size check
    assert check_generators(None) == [GeneratorSpec("dcgan", "dcgan")]


def test_missing_folder(tmp_path):
    text = _problems([{"name": "dcgan", "kind": "dcgan"},
                      {"name": "mine", "kind": "folder", "path": str(tmp_path / "nope")}])
    assert f"generators[1] (mine): path '{tmp_path / 'nope'}': no such folder" in text


def test_relative_path_is_relative_to_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = _problems([{"name": "mine", "kind": "folder", "path": "nope"}])
    assert f"generators[0] (mine): path 'nope' (relative to {tmp_path}): no such folder" in text
    _folder(tmp_path, "here")
    assert check_generators([{"name": "mine", "kind": "folder", "path": "here"}], patch_size=SIZE)[0].name == "mine"


def test_file_where_a_folder_is_expected(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    text = _problems([{"name": "mine", "kind": "folder", "path": str(tmp_path / "a.png")}])
    assert "generators[0] (mine): path" in text and "a.png': is a file, not a folder" in text


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not a patch")
    text = _problems([{"name": "e", "kind": "folder", "path": str(tmp_path / "empty")}])
    assert "generators[0] (e): path" in text and "no patch files (.png, .tif" in text


def test_first_patch_file_is_read_against_the_contract(tmp_path):
    src = _folder(tmp_path, size=SIZE * 2)
    text = _problems([{"name": "big", "kind": "folder", "path": str(src)}], patch_size=SIZE)
    assert "generators[0] (big): path: the first of its 1 patch file(s) breaks the patch contract" in text
    assert "a.png: patch is 32x32 pixels, the study's patches are 16x16" in text
    assert check_generators([{"name": "big", "kind": "folder", "path": str(src), "resize": True}], patch_size=SIZE)
    rgb = tmp_path / "rgb"
    rgb.mkdir()
    Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(rgb / "c.png")
    assert "colour or palette image" in _problems([{"name": "rgb", "kind": "folder", "path": str(rgb)}])


def test_metadata_missing_or_without_file_column(tmp_path):
    src = _folder(tmp_path)
    text = _problems([{"name": "mine", "kind": "folder", "path": str(src), "metadata": "meta.csv"}])
    assert "generators[0] (mine): metadata" in text and "meta.csv': no such file" in text
    pd.DataFrame({"name": ["a.png"]}).to_csv(src / "meta.csv", index=False)
    text = _problems([{"name": "mine", "kind": "folder", "path": str(src), "metadata": "meta.csv"}])
    assert "generators[0] (mine): metadata:" in text and "needs a 'file' column" in text


def test_text_file_named_pt_is_not_a_torchscript_model(tmp_path):
    (tmp_path / "g.pt").write_text("this is not a model\n")
    text = _problems([{"name": "g", "kind": "torchscript", "path": str(tmp_path / "g.pt"), "latent_dim": 4,
                       "n": 2}])
    assert f"generators[0] (g): path '{tmp_path / 'g.pt'}': not a TorchScript model" in text
    assert 'torch.jit.load said "RuntimeError: PytorchStreamReader failed reading zip archive' in text
    assert "Traceback" not in text and "miniz" not in text and len(text.splitlines()) == 2


def test_a_state_dict_or_a_folder_is_not_a_torchscript_model(tmp_path):
    torch.save(_TinyGenerator().state_dict(), tmp_path / "weights.pt")
    text = _problems([{"name": "w", "kind": "torchscript", "path": str(tmp_path / "weights.pt"), "latent_dim": 4,
                       "n": 2},
                      {"name": "d", "kind": "torchscript", "path": str(tmp_path), "latent_dim": 4, "n": 2}])
    assert "generators[0] (w): path" in text and "not a TorchScript model" in text and "torch.jit.script" in text
    assert "generators[1] (d): path" in text and "is a folder, not a file" in text


def test_trial_call_checks_the_output_shape_and_range(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "g.pt"
    torch.jit.script(_TinyGenerator(size=SIZE * 2)).save(str(path))
    item = {"name": "g", "kind": "torchscript", "path": str(path), "latent_dim": 4, "n": 2}
    text = _problems([item], patch_size=SIZE)
    assert "generators[0] (g): a trial call on one latent vector (latent_dim 4) breaks the contract" in text
    assert "patch is 32x32 pixels, the study's patches are 16x16" in text
    assert check_generators([item]) and check_generators([{**item, "resize": True}], patch_size=SIZE)
    text = _problems([{**item, "latent_dim": 5}], patch_size=SIZE * 2)
    assert "generators[0] (g): a trial call" in text and "calling the model failed: RuntimeError:" in text
    assert len(text.splitlines()) == 2  # TorchScript's traceback reduced to its last line
    text = _problems([{**item, "output_range": "unit"}], patch_size=SIZE * 2)  # tanh output is not in [0, 1]
    assert "outside the expected [0, 1]" in text


def test_two_bad_items_are_reported_together_in_item_order(tmp_path):
    (tmp_path / "g.pt").write_text("text")
    text = _problems([{"name": "dcgan", "kind": "dcgan"},
                      {"name": "ts", "kind": "torchscript", "path": str(tmp_path / "g.pt"), "latent_dim": 4,
                       "n": 2, "latent_shape": "flatt"},
                      {"name": "mine", "kind": "folder", "path": str(tmp_path / "missing"), "resize": "yes"}])
    lines = text.splitlines()
    assert lines[0] == "bad generators parameter:" and len(lines) == 5
    assert lines[1].strip().startswith("generators[1] (ts): latent_shape must be one of ('nchw', 'flat')")
    assert lines[2].strip().startswith("generators[1] (ts): path") and "not a TorchScript model" in lines[2]
    assert lines[3].strip() == "generators[2] (mine): resize must be true or false, got 'yes'"
    assert lines[4].strip().startswith("generators[2] (mine): path") and "no such folder" in lines[4]


def test_cuda_device_without_a_gpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible here")
    torch.jit.script(_TinyGenerator()).save(str(tmp_path / "g.pt"))
    text = _problems([{"name": "g", "kind": "torchscript", "path": str(tmp_path / "g.pt"), "latent_dim": 4, "n": 2,
                       "device": "cuda"}])
    assert "generators[0] (g): device 'cuda': no CUDA GPU is visible on this machine" in text


def test_medigan_without_the_package(tmp_path):
    try:
        import medigan  # noqa: F401
        pytest.skip("medigan is installed here")
    except ImportError:
        pass
    text = _problems([{"name": "optimam", "kind": "medigan", "model_id": "00002_DCGAN_MMG_MASS_ROI", "n": 4}])
    assert "generators[0] (optimam): kind 'medigan' needs the optional medigan package, which is not installed" in text
    assert "pip install medigan" in text
