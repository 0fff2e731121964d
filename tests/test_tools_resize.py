"""`resize`: SVD to a lower rank keeps the strength (same output at full rank), reports per layer what it
kept and the error it made (and stays within it), rewrites dim / alpha / hashes, and refuses to go up."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from tools_support import lora_file

from lora_train.adapters.spec import LoraSpec
from lora_train.core.errors import UserError
from lora_train.kohya.hashes import file_model_hash
from lora_train.tools.lora_file import read_any_lora
from lora_train.tools.resize import resize_lora


@pytest.fixture(scope="module")
def locon(tmp_path_factory):
    path, _ = lora_file(tmp_path_factory.mktemp("resize"), "locon", "sd1",
                        LoraSpec(rank=6, alpha=3.0, conv_rank=4, conv_alpha=2.0))
    return path


def test_full_rank_keeps_the_output_and_rewrites_the_header(locon, tmp_path):
    source = read_any_lora(locon)
    result = resize_lora(locon, tmp_path / "same.safetensors", rank=6)
    resized = read_any_lora(result.path)
    for name, module in source.modules.items():
        torch.testing.assert_close(resized.modules[name].delta(), module.delta(), rtol=1e-4, atol=1e-6)
        assert resized.modules[name].scale == pytest.approx(module.scale)
    assert all(layer.retained == pytest.approx(1.0) for layer in result.layers.values())
    assert resized.metadata["sshs_model_hash"] == file_model_hash(result.path) != source.metadata["sshs_model_hash"]
    assert resized.metadata["ss_base_model_version"] == "sd_v1"


def test_lower_rank_keeps_strength_and_reports_its_error(locon, tmp_path):
    source = read_any_lora(locon)
    result = resize_lora(locon, tmp_path / "small.safetensors", rank=3, conv_rank=2)
    resized = read_any_lora(result.path)
    assert resized.metadata["ss_network_dim"] == "3" and resized.metadata["ss_network_alpha"] == "1.5"
    for name, layer in result.layers.items():
        module, original = resized.modules[name], source.modules[name]
        assert module.rank == (2 if original.is_conv else 3)
        assert module.alpha == pytest.approx(original.alpha / original.rank * module.rank)  # strength kept
        actual = float((module.delta() - original.delta()).norm() / original.delta().norm())
        assert actual <= layer.error + 1e-4 and actual == pytest.approx(layer.error, abs=1e-3)
        assert layer.retained ** 2 + layer.error ** 2 == pytest.approx(1.0, abs=1e-4)
    assert 0 < result.mean_error <= result.max_error < 1


@pytest.mark.parametrize("dynamic, check", [("fro:0.9", lambda layer: layer.retained >= 0.9 - 1e-6),
                                            ("ratio:2", lambda layer: layer.kept >= 1),
                                            ("cumulative:0.5", lambda layer: layer.kept >= 1)])
def test_dynamic_ranks(locon, tmp_path, dynamic, check):
    result = resize_lora(locon, tmp_path / "dynamic.safetensors", dynamic=dynamic, rank=5)
    assert all(check(layer) and layer.kept <= 5 for layer in result.layers.values())
    assert len({layer.kept for layer in result.layers.values()}) > 1  # the rank differs per layer


def test_upward_resize_and_bad_methods_are_refused(locon, tmp_path):
    with pytest.raises(UserError, match="highest rank is 6 and resize only lowers ranks"):
        resize_lora(locon, tmp_path / "up.safetensors", rank=8)
    with pytest.raises(UserError, match=r"--rank 0: a rank is at least 1 \(the highest of .* is 6\)"):
        resize_lora(locon, tmp_path / "zero.safetensors", rank=0)
    with pytest.raises(UserError, match="ratio:R with R > 1"):
        resize_lora(locon, tmp_path / "bad.safetensors", dynamic="fro:2")
    assert not list(tmp_path.glob("*.safetensors"))


@pytest.mark.slow
def test_cli_prints_the_report_and_one_line_errors(locon, tmp_path):
    run = [sys.executable, "-m", "lora_train", "resize", str(locon), "--out"]
    done = subprocess.run(run + [str(tmp_path / "r4.safetensors"), "--rank", "4"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "average Frobenius retained" in done.stdout and "rank 6 -> 4" in done.stdout
    refused = subprocess.run(run + [str(tmp_path / "r9.safetensors"), "--rank", "9"], capture_output=True, text=True)
    assert refused.returncode == 2 and refused.stderr.startswith("error: --rank 9")
    assert "Traceback" not in refused.stderr
    merged = subprocess.run([sys.executable, "-m", "lora_train", "merge", str(locon), str(tmp_path / "r4.safetensors"),
                             "--weights", "0.5", "0.5", "--out", str(tmp_path / "m.safetensors"), "--rank", "2"],
                            capture_output=True, text=True)
    assert merged.returncode == 0 and "SVD error: mean" in merged.stdout
