"""The speed options change nothing but the speed: the fused optimizer path makes the same updates as
bitsandbytes, cached text-encoder outputs give the same loss curve, optional packages stay unimported,
and `sample_steps: 0` renders nothing."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from lora_train.models.lean_import import import_optional, without_optional_packages
from lora_train.train.compile import CompiledWithFallback
from lora_train.train.optim import ParamGroup, build_optimizer
from train_support import DATASET, FAST, train

LORA_SHAPES = [(4, 32), (32, 4), (4, 64), (64, 4)] * 6  # LoRA down / up of small layers: under 4,096 values


def lora_like_params(seed: int = 0) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=generator)) for shape in LORA_SHAPES]


def run_steps(optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter], steps: int = 20) -> None:
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for param in params:
            param.grad = torch.randn(param.shape, generator=generator)
        optimizer.step()


def test_small_lora_tensors_get_torchs_fused_adamw_with_bitsandbytes_updates():
    bnb = pytest.importorskip("bitsandbytes")
    ours, reference = lora_like_params(), lora_like_params()
    optimizer = build_optimizer("adamw8bit", [ParamGroup("unet", ours, 1e-3)], 0.01, {"betas": [0.9, 0.99]})
    assert type(optimizer) is torch.optim.AdamW and optimizer.defaults["fused"]
    run_steps(optimizer, ours)
    run_steps(bnb.optim.AdamW8bit(reference, lr=1e-3, weight_decay=0.01, betas=(0.9, 0.99)), reference)
    assert max((a - b).abs().max().item() for a, b in zip(ours, reference)) < 1e-6


def test_8bit_state_stays_where_it_saves_memory_or_is_asked_for():
    pytest.importorskip("bitsandbytes")
    large = [torch.nn.Parameter(torch.zeros(64, 128))]  # 8,192 values: bitsandbytes keeps 8-bit state
    assert type(build_optimizer("adamw8bit", [ParamGroup("unet", large, 1e-4)], 0.0, {})).__module__.startswith(
        "bitsandbytes")
    asked = build_optimizer("adamw8bit", [ParamGroup("unet", lora_like_params(), 1e-4)], 0.0, {"min_8bit_size": 64})
    assert type(asked).__module__.startswith("bitsandbytes")


def test_hidden_packages_look_absent_until_asked_for(tmp_path, monkeypatch):
    (tmp_path / "optional_pkg_for_test.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib.util

    with without_optional_packages(("optional_pkg_for_test",)):
        assert importlib.util.find_spec("optional_pkg_for_test") is None  # how libraries test for a package
        with pytest.raises(ImportError):
            import optional_pkg_for_test  # noqa: F401
    assert importlib.util.find_spec("optional_pkg_for_test") is not None
    with without_optional_packages(("optional_pkg_for_test",)):
        assert import_optional("optional_pkg_for_test").VALUE == 1
    assert sys.modules["optional_pkg_for_test"].VALUE == 1
    del sys.modules["optional_pkg_for_test"]


def losses(events: list[dict]) -> list[float]:
    return [e["loss"] for e in events if e["type"] == "step"]


@pytest.mark.slow
def test_cached_text_outputs_and_fused_adamw_give_the_plain_loss_curve(tiny_sd1_file, tmp_path, monkeypatch):
    monkeypatch.setenv("LORA_TRAIN_LOCK_DIR", str(tmp_path))
    settings = dict(FAST, epochs=2, train_text_encoder=False, cache_latents=True, sample_steps=0, optimizer="adamw8bit")
    _, plain = train(tiny_sd1_file, tmp_path / "plain", **settings, cache_text_encoder_outputs=False,
                     optimizer_args={"min_8bit_size": 4096})  # bitsandbytes' own loop, captions encoded every step
    _, fast = train(tiny_sd1_file, tmp_path / "fast", **settings)  # the defaults
    assert any("Text-encoder outputs: 0 from the cache" in e.get("message", "") for e in fast)
    assert not any("Text-encoder outputs" in e.get("message", "") for e in plain)
    assert len(losses(plain)) == len(losses(fast)) >= 4
    assert losses(fast) == pytest.approx(losses(plain), rel=1e-4, abs=1e-6)
    assert not (tmp_path / "fast" / "samples").exists()  # sample_steps: 0 renders nothing


@pytest.mark.slow
def test_a_run_without_the_8bit_optimizer_never_imports_bitsandbytes(tiny_sd1_file, tmp_path):
    pytest.importorskip("bitsandbytes")
    settings = {"base_model": str(tiny_sd1_file), "output_dir": str(tmp_path / "out"), "train_data_dir": str(DATASET),
                "resolution": 64, "max_train_steps": 1, "enable_bucket": False, "sample_steps": 0, "log_with": "none",
                "lora_rank": 4, "optimizer": "adamw"}
    argv = ["train"] + [arg for key, value in settings.items() for arg in ("--set", f"{key}={json.dumps(value)}")]
    script = textwrap.dedent(f"""
        import sys
        from lora_train.cli import main
        main({argv!r})
        print("bitsandbytes imported:", "bitsandbytes" in sys.modules)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "LORA_TRAIN_LOCK_DIR": str(tmp_path)})
    assert "bitsandbytes imported: False" in result.stdout, result.stdout + result.stderr


def test_a_unet_that_cannot_compile_trains_eagerly_and_says_why(monkeypatch):
    def broken_compile(module):
        def compiled(*args, **kwargs):
            raise RuntimeError("no C++ compiler found\nlong details")
        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    warnings: list[str] = []
    layer = torch.nn.Linear(3, 2)
    runner = CompiledWithFallback(layer, warnings.append)
    x = torch.randn(4, 3)
    torch.testing.assert_close(runner(x), layer(x))
    torch.testing.assert_close(runner(x), layer(x))
    assert len(warnings) == 1 and "no C++ compiler found" in warnings[0] and "continues without it" in warnings[0]


@pytest.mark.slow
def test_compiled_unet_gives_the_eager_loss_curve(tiny_sd1_file, tmp_path, monkeypatch):
    """Dynamo captures the UNet's forward and backward with the LoRA layers; the aot_eager backend runs that
    captured graph without generating C++ (which takes minutes on 2 cores and is torch's own concern)."""
    monkeypatch.setenv("LORA_TRAIN_LOCK_DIR", str(tmp_path))
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    settings = dict(FAST, max_train_steps=3, train_text_encoder=False, sample_steps=0)
    _, eager = train(tiny_sd1_file, tmp_path / "eager", **settings)
    _, compiled = train(tiny_sd1_file, tmp_path / "compiled", **settings, compile_unet=True)
    assert not [e for e in compiled if e["type"] == "log" and "compile_unet" in e.get("message", "")]  # it compiled
    assert losses(compiled) == pytest.approx(losses(eager), rel=1e-4, abs=1e-6)


def test_a_job_trains_with_the_collector_on_and_releases_what_it_froze(tiny_sd1_file, tmp_path, monkeypatch):
    """The collector is off only while the job imports and loads: a run that trained with it off would
    keep every cyclic garbage it made; afterwards nothing the job froze stays out of reach."""
    import gc

    from lora_train.train.step import StepRunner

    monkeypatch.setenv("LORA_TRAIN_LOCK_DIR", str(tmp_path))
    seen: list[tuple[bool, int]] = []
    step = StepRunner.optimizer_step
    monkeypatch.setattr(StepRunner, "optimizer_step",
                        lambda self, *a: seen.append((gc.isenabled(), gc.get_freeze_count())) or step(self, *a))
    train(tiny_sd1_file, tmp_path / "out", max_train_steps=2, train_text_encoder=False, sample_steps=0)
    assert len(seen) == 2 and all(enabled and frozen > 0 for enabled, frozen in seen)
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_the_paused_collector_frees_the_blocks_cyclic_garbage():
    import gc
    import weakref

    from lora_train.core.collector import collector_paused, release_frozen

    class Node:
        pass

    try:
        with collector_paused():
            cycle = Node()
            cycle.me = cycle
            gone = weakref.ref(cycle)
            del cycle
            assert gone() is not None and not gc.isenabled()  # nothing collected inside
        assert gone() is None and gc.isenabled() and gc.get_freeze_count() > 0
    finally:
        release_frozen()


def test_cached_token_ids_are_the_tokenizers_own():
    from lora_train.fixtures.components import tiny_sd1
    from lora_train.train.conditioning import TokenCache, tokenize

    tokenizers = tiny_sd1().tokenizers
    cache = TokenCache(tokenizers, size=2)
    batches = [["a photo of sks", "red cube"], ["red cube", "a photo of sks"], ["a b c " * 40, "red cube"],
               ["a photo of sks", "a photo of sks"]]
    for captions in batches:  # hits, misses and evictions (size 2)
        for cached, fresh in zip(cache(captions), tokenize(tokenizers, captions)):
            assert torch.equal(cached, fresh)
    assert cache.ids_of.cache_info().currsize == 2
