"""The image trainer end to end on the tiny SD1 model: the loss falls, the file loads in diffusers
and reproduces the trained model's samples, an interrupted run resumes exactly, pretrained_lora continues."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from lora_train.core.errors import UserError
from lora_train.models.load import load_base_model
from lora_train.models.pipeline import make_pipeline
from lora_train.core.resume_folders import resume_folders
from lora_train.train.conditioning import encode_text, tokenize
from train_support import DATASET, train

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def private_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("LORA_TRAIN_LOCK_DIR", str(tmp_path))


def render(pipeline, prompt: str, seed: int) -> np.ndarray:
    image = pipeline(prompt, num_inference_steps=2, guidance_scale=7.0, height=64, width=64,
                     generator=torch.Generator().manual_seed(seed)).images[0]
    return np.asarray(image, dtype=np.float32)


@torch.no_grad()
def eval_loss(base, captions: list[str]) -> float:
    """Denoising loss of the dataset at fixed noise and timesteps (the same draw before and after)."""
    images = [np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 127.5 - 1
              for path in sorted(DATASET.glob("*.png"))]
    pixels = torch.tensor(np.stack(images)).permute(0, 3, 1, 2)
    latents = base.vae.encode(pixels).latent_dist.mean * base.vae.config.scaling_factor
    generator = torch.Generator().manual_seed(0)
    total = 0.0
    for _ in range(4):
        noise = torch.randn(latents.shape, generator=generator)
        timesteps = torch.randint(0, 1000, (latents.shape[0],), generator=generator)
        noisy = base.noise_scheduler.add_noise(latents, noise, timesteps)
        hidden = encode_text(base.arch, base.text_encoders, tokenize(base.tokenizers, captions)).hidden_states
        total += torch.nn.functional.mse_loss(base.unet(noisy, timesteps, hidden).sample, noise).item()
    return total / 4


def test_trained_lora_lowers_the_loss(tiny_sd1_file, tmp_path):
    path, _ = train(tiny_sd1_file, tmp_path / "out", epochs=12, lora_rank=8, lora_alpha=3, learning_rate=4e-3,
                    trigger_word="lt_shapes", sample_steps=1)
    captions = [f"lt_shapes, {p.with_suffix('.txt').read_text()}" for p in sorted(DATASET.glob("*.png"))]
    base = load_base_model(tiny_sd1_file)
    before = eval_loss(base, captions)
    make_pipeline(base).load_lora_weights(str(path))
    after = eval_loss(base, captions)
    assert after < 0.85 * before, f"loss did not fall: {before:.4f} -> {after:.4f}"


EXPECTED = {  # arch -> (ss_base_model_version, ss_v2, key prefixes)
    "sd1": ("sd_v1", "False", {"lora_unet", "lora_te"}),
    "sd2-v": ("sd_v2_v", "True", {"lora_unet", "lora_te"}),
    "sdxl": ("sdxl_base_v1-0", "False", {"lora_unet", "lora_te1", "lora_te2"}),
}


@pytest.mark.parametrize("arch, network", [("sd1", {}), ("sd2-v", {}), ("sdxl", {}),
                                           ("sd1", {"network_type": "locon", "conv_dim": 4, "conv_alpha": 2})])
def test_saved_lora_loads_in_diffusers_and_reproduces_the_trained_sample(tiny_checkpoints, tmp_path, arch, network):
    """alpha != rank on purpose: a loader that assumed alpha = rank would not reproduce the sample."""
    model = tiny_checkpoints(arch).single_file
    prompt = "lt_shapes, a red circle on a white background, flat shapes"
    path, events = train(model, tmp_path / "out", max_train_steps=6, lora_rank=8, lora_alpha=3,
                         learning_rate=1e-2, trigger_word="lt_shapes", sample_prompts=[prompt], sample_seed=11,
                         **network)
    version, v2, prefixes = EXPECTED[arch]
    with safe_open(str(path), "pt") as handle:
        meta, keys = handle.metadata(), list(handle.keys())
    assert (meta["ss_base_model_version"], meta["ss_v2"], meta["ss_network_alpha"]) == (version, v2, "3.0")
    assert {key.split("_", 2)[0] + "_" + key.split("_", 2)[1] for key in keys} == prefixes
    if network:
        assert any(t.ndim == 4 and t.shape[-1] == 3 for t in load_file(str(path)).values()), "no 3x3 LoCon weights"

    pipeline = make_pipeline(load_base_model(model))
    plain = render(pipeline, prompt, 11)
    pipeline.load_lora_weights(str(path), adapter_name="trained")
    with_lora = render(pipeline, prompt, 11)
    preview = np.asarray(Image.open(path.with_name(path.stem + ".preview.png")), dtype=np.float32)
    effect, mismatch = np.abs(with_lora - plain).mean(), np.abs(with_lora - preview).mean()
    assert effect > 1.0, f"the LoRA hardly changes the image ({effect:.2f} of 255)"
    assert mismatch < 0.1 * effect, f"diffusers' render differs from the trained sample ({mismatch:.2f} vs {effect:.2f})"


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_a_resumed_run_finishes_as_the_same_lora_with_the_same_weights_and_the_whole_curve(tiny_sd1_file, tmp_path):
    settings = dict(max_train_steps=6, save_steps=2, sample_every_n_steps=2, shuffle_caption=True, noise_offset=0.05,
                    min_snr_gamma=5.0, gradient_accumulation_steps=1, scheduler="cosine", warmup_steps=1)
    straight, _ = train(tiny_sd1_file, tmp_path / "a", **settings)
    out = tmp_path / "b"
    out.mkdir()
    theirs = out / "my_lora.safetensors"  # a LoRA of that name that another run saved: never replaced
    theirs.write_bytes(straight.read_bytes())

    partial, first = train(tiny_sd1_file, out, stop_at_step=3, **settings)
    done = first[-1]
    assert done["type"] == "done" and done["interrupted"] and done["step"] == 3
    assert partial == out / "my_lora_v2.safetensors"
    assert [p.name for p in resume_folders(out, "my_lora")] == ["checkpoint-my_lora-2", "checkpoint-my_lora-3"]
    preview = out / "my_lora_v2.preview.png"  # the partial LoRA's card shows the last sample, step 2's
    assert np.array_equal(pixels(preview), pixels(out / "samples" / "step000002_00.png"))
    assert "losses" not in next(e for e in first if e["type"] == "start")

    resumed, second = train(tiny_sd1_file, out, resume_from_checkpoint="latest", **settings)
    assert [e["step"] for e in second if e["type"] == "step"] == [4, 5, 6]
    assert resumed == partial, "a resumed run finishes under the name it started with"
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["my_lora.safetensors", "my_lora_v2.safetensors"]
    assert theirs.read_bytes() == straight.read_bytes()
    assert not list(out.glob(".*.tmp")), "the replacement leaves no temporary file"
    start = next(e for e in second if e["type"] == "start")
    assert [tuple(point) for point in start["losses"]] == [(e["step"], e["loss"]) for e in first if e["type"] == "step"]
    assert np.array_equal(pixels(preview), pixels(out / "samples" / "final000006_00.png")), "the final sample"
    expected, got = load_file(str(straight)), load_file(str(resumed))
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6, msg=key)


def test_pretrained_lora_continues_from_a_saved_file(tiny_sd1_file, tmp_path):
    first, _ = train(tiny_sd1_file, tmp_path / "first", max_train_steps=2)
    same, _ = train(tiny_sd1_file, tmp_path / "again", max_train_steps=1, pretrained_lora=str(first),
                    learning_rate=0.0, text_encoder_lr=0.0)
    source, loaded = load_file(str(first)), load_file(str(same))
    assert source.keys() == loaded.keys()
    for key in source:
        torch.testing.assert_close(loaded[key], source[key], msg=key)
    moved, _ = train(tiny_sd1_file, tmp_path / "more", max_train_steps=2, pretrained_lora=str(first))
    assert any(not torch.equal(load_file(str(moved))[k], source[k]) for k in source)


def test_8bit_adam_and_fp16_with_loss_scaler(tiny_sd1_file, tmp_path):
    # min_8bit_size 0: the tiny model's LoRA tensors are below bitsandbytes' default 4096-element cut-off
    path, events = train(tiny_sd1_file, tmp_path / "out", max_train_steps=2, optimizer="adamw8bit",
                         optimizer_args={"min_8bit_size": 0}, mixed_precision="fp16", save_steps=2)
    losses = [e["loss"] for e in events if e["type"] == "step"]
    assert len(losses) == 2 and all(np.isfinite(losses))
    state = torch.load(resume_folders(tmp_path / "out", "my_lora")[-1] / "training_state.pt", weights_only=True)
    assert state["scaler"]["scale"] > 0, "fp16 must run with a loss scaler"
    quantized = [s["__bnb_optimizer_quant_state__"]["state1"] for s in state["optimizer"]["state"].values()]
    assert quantized and all(t.dtype == torch.uint8 for t in quantized), "Adam moments must be 8-bit"
    tensors = load_file(str(path))
    assert all(torch.isfinite(t).all() for t in tensors.values())


def test_nan_loss_stops_and_keeps_the_last_save(tiny_sd1_file, tmp_path, monkeypatch):
    import lora_train.train.step as trainer

    calls = {"n": 0}
    real = trainer.diffusion_loss

    def failing(prediction, target, weights):
        calls["n"] += 1
        loss = real(prediction, target, weights)
        return loss * float("nan") if calls["n"] >= 3 else loss

    monkeypatch.setattr(trainer, "diffusion_loss", failing)
    with pytest.raises(UserError, match=r"The loss became nan at step 3.*lower learning_rate"):
        train(tiny_sd1_file, tmp_path / "out", max_train_steps=5, save_steps=2)
    assert [p.name for p in resume_folders(tmp_path / "out", "my_lora")] == ["checkpoint-my_lora-2"]


def make_mixed_dataset(folder):
    """Landscape, portrait and square images (bucketing) with captions."""
    folder.mkdir()
    for i, (size, color) in enumerate([((96, 64), "red"), ((64, 96), "blue"), ((64, 64), "green"),
                                       ((96, 64), "yellow"), ((64, 96), "black"), ((128, 64), "white")]):
        Image.new("RGB", size, color).save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text(f"a {color} card")
    return folder


def test_buckets_and_disk_caches_are_reused_and_invalidated(tiny_sd1_file, tmp_path):
    data = make_mixed_dataset(tmp_path / "mixed")
    settings = dict(train_data_dir=str(data), max_train_steps=2, enable_bucket=True, min_bucket_reso=32,
                    max_bucket_reso=128, bucket_reso_steps=32, cache_latents_to_disk=True,
                    cache_text_encoder_outputs_to_disk=True, train_text_encoder=False, batch_size=2)

    def cache_lines(run: str, **extra) -> list[str]:
        _, events = train(tiny_sd1_file, tmp_path / run, **settings, **extra)
        return [e["message"] for e in events if e["type"] == "log" and "from the cache" in e["message"]]

    assert cache_lines("first") == ["Latents: 0 from the cache, 6 encoded",
                                    "Text-encoder outputs: 0 from the cache, 6 encoded"]
    assert cache_lines("second") == ["Latents: 6 from the cache, 0 encoded",
                                     "Text-encoder outputs: 6 from the cache, 0 encoded"]
    Image.new("RGB", (96, 64), "purple").save(data / "0.png")
    (data / "1.txt").write_text("a navy card")
    assert cache_lines("changed") == ["Latents: 5 from the cache, 1 encoded",
                                      "Text-encoder outputs: 5 from the cache, 1 encoded"]
    assert cache_lines("clip_skip", clip_skip=2)[1] == "Text-encoder outputs: 0 from the cache, 6 encoded"
    assert (data / ".lora_train_cache" / "latents").is_dir()


def step_losses(events) -> list[float]:
    return [e["loss"] for e in events if e["type"] == "step"]


def test_same_seed_same_curve_and_checkpointing_changes_nothing(tiny_checkpoints, tmp_path):
    model = tiny_checkpoints("sdxl").single_file
    settings = dict(max_train_steps=3, shuffle_caption=True, noise_offset=0.05)
    _, plain = train(model, tmp_path / "plain", **settings)
    _, again = train(model, tmp_path / "again", **settings)
    _, checkpointed = train(model, tmp_path / "gc", gradient_checkpointing=True, **settings)
    _, other_seed = train(model, tmp_path / "seed", **{**settings, "seed": 8})
    assert step_losses(plain) == step_losses(again)
    assert step_losses(checkpointed) == pytest.approx(step_losses(plain), rel=1e-4)
    assert step_losses(other_seed) != pytest.approx(step_losses(plain), rel=1e-3)


def test_dora_and_bf16_with_prodigy(tiny_sd1_file, tmp_path):
    path, events = train(tiny_sd1_file, tmp_path / "out", max_train_steps=2, use_dora=True, optimizer="prodigy",
                         learning_rate=1.0, text_encoder_lr=1.0, mixed_precision="bf16")
    assert all(np.isfinite(step_losses(events)))
    tensors = load_file(str(path))
    scales = {k: t for k, t in tensors.items() if k.endswith(".dora_scale")}
    downs = {k: t for k, t in tensors.items() if k.endswith(".lora_down.weight")}
    assert len(scales) == len(downs), "every DoRA module saves its magnitude"
    for key, scale in scales.items():  # A1111 / ComfyUI read one magnitude per input channel
        down = downs[key.replace(".dora_scale", ".lora_down.weight")]
        assert scale.shape[0] == 1 and scale.shape[1] == down.shape[1]
    with safe_open(str(path), "pt") as handle:
        assert '"dora_wd": "True"' in handle.metadata()["ss_network_args"]


def test_a_zero_unet_lr_keeps_the_unet_lora_as_it_starts(tiny_sd1_file, tmp_path):
    path, _ = train(tiny_sd1_file, tmp_path / "out", max_train_steps=2, train_text_encoder=True, unet_lr=0.0,
                    text_encoder_lr=1e-3)
    tensors = load_file(str(path))
    unet_ups = [t for k, t in tensors.items() if k.startswith("lora_unet_") and k.endswith("lora_up.weight")]
    te_ups = [t for k, t in tensors.items() if k.startswith("lora_te_") and k.endswith("lora_up.weight")]
    assert unet_ups and all(not t.any() for t in unet_ups), "unet_lr 0: the UNet's LoRA stays at its start (zero)"
    assert te_ups and any(t.any() for t in te_ups), "the text encoder's LoRA trains"
    with safe_open(str(path), framework="pt") as handle:
        assert handle.metadata()["ss_unet_lr"] == "0.0"


def test_each_step_reports_the_learning_rate_it_used(tiny_sd1_file, tmp_path):
    """Not the next step's: a 2-step cosine run trained at 1e-3 then 5e-4 (the last line read 0 before)."""
    _, events = train(tiny_sd1_file, tmp_path / "out", max_train_steps=2, scheduler="cosine", learning_rate=1e-3,
                      sample_steps=0)
    assert [event["lr"] for event in events if event["type"] == "step"] == pytest.approx([1e-3, 5e-4])


def test_a_batch_larger_than_the_epoch_is_said(tiny_sd1_file, tmp_path):
    _, events = train(tiny_sd1_file, tmp_path / "out", max_train_steps=1, batch_size=64, sample_steps=0)
    warnings = [event["message"] for event in events if event["type"] == "log" and event.get("level") == "warning"]
    assert "batch_size 64 is more than the 8 images of an epoch: each step trains on all 8 at once." in " ".join(warnings)
