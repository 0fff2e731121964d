"""`pretrained_lora`: a saved file loads into freshly injected components and gives back the same model,
whatever rank / alpha the new run was set to; wrong-family files and files that fit nothing are refused."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from test_export_files import run
from test_export_support import fresh, inject, text_outputs, trained, unet_inputs, unet_output

from lora_train.adapters.inject import lora_parameters
from lora_train.adapters.layers import ADAPTER, held_spec, lora_layers
from lora_train.adapters.spec import LoraSpec
from lora_train.core.errors import UserError
from lora_train.kohya.metadata import build_metadata
from lora_train.kohya.state import kohya_state_dict
from lora_train.models.pretrained_lora import load_pretrained_lora
from lora_train.kohya.write import save_lora


def _save(model, path, metadata=None, precision="fp32"):
    state = kohya_state_dict(model.arch, model.unet, model.text_encoders, precision)
    return save_lora(path, state, metadata or {})


def _assert_same_outputs(a, b):
    inputs = unet_inputs(a)
    torch.testing.assert_close(unet_output(a.unet, inputs), unet_output(b.unet, inputs), rtol=1e-4, atol=1e-5)
    for x, y in zip(text_outputs(a.text_encoders), text_outputs(b.text_encoders)):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch,saved,resumed", [
    ("sd1", LoraSpec(rank=4, alpha=2.0), LoraSpec(rank=8, alpha=8.0)),
    ("sdxl", LoraSpec(rank=3, alpha=6.0, conv_rank=2, conv_alpha=1.0), LoraSpec(rank=3, alpha=6.0, conv_rank=2,
                                                                                   conv_alpha=1.0)),
    ("sd1", LoraSpec(rank=4, alpha=4.0, conv_rank=4, conv_alpha=2.0, use_dora=True),
     LoraSpec(rank=2, alpha=1.0, conv_rank=2, conv_alpha=1.0, use_dora=True)),
])
def test_round_trip_gives_the_same_model(arch, saved, resumed, tmp_path):
    model = trained(arch, saved)
    path = _save(model, tmp_path / "a.safetensors")
    again = inject(fresh(arch), resumed)
    report = load_pretrained_lora(path, arch, again.unet, again.text_encoders)
    assert not report.unmatched and not report.not_in_file
    _assert_same_outputs(model, again)
    ranks = {layer.r[ADAPTER] for te in [again.unet, *again.text_encoders] for _, layer in lora_layers(te)}
    assert ranks == {saved.rank, saved.conv_rank or saved.rank}
    params = lora_parameters(again.unet, again.text_encoders).all()  # collected after the load
    assert params and all(p.requires_grad and p.dtype == torch.float32 for p in params)
    again.unet(**unet_inputs(again)).sample.square().mean().backward()
    assert all(p.grad is not None for p in lora_parameters(again.unet, []).unet)


def test_a_plain_lora_continues_as_dora_from_the_same_outputs(tmp_path):
    model = trained("sd1", LoraSpec(rank=4, alpha=2.0))
    path = _save(model, tmp_path / "plain.safetensors")
    again = inject(fresh("sd1"), LoraSpec(rank=4, alpha=2.0, use_dora=True))
    load_pretrained_lora(path, "sd1", again.unet, again.text_encoders)
    _assert_same_outputs(model, again)


def test_a_dora_file_needs_use_dora(tmp_path):
    path = _save(trained("sd1", LoraSpec(rank=4, alpha=2.0, use_dora=True)), tmp_path / "dora.safetensors")
    again = inject(fresh("sd1"), LoraSpec(rank=4, alpha=2.0))
    with pytest.raises(UserError, match="use_dora: true"):
        load_pretrained_lora(path, "sd1", again.unet, again.text_encoders)


def test_text_encoder_modules_not_trained_now_are_reported(tmp_path):
    model = trained("sd1", LoraSpec(rank=4, alpha=2.0))
    path = _save(model, tmp_path / "a.safetensors")
    again = inject(fresh("sd1"), LoraSpec(rank=4, alpha=2.0), train_text_encoder=False)
    report = load_pretrained_lora(path, "sd1", again.unet, again.text_encoders)
    assert len(report.unmatched) == 12 and all(name.startswith("lora_te_") for name in report.unmatched)
    assert len(report.loaded) == 72 and not report.not_in_file
    inputs = unet_inputs(model)
    torch.testing.assert_close(unet_output(model.unet, inputs), unet_output(again.unet, inputs), rtol=1e-4, atol=1e-5)


def test_a_kohya_file_without_alpha_keys_uses_alpha_equal_to_rank(tmp_path):
    model = trained("sd1", LoraSpec(rank=4, alpha=4.0), train_text_encoder=False)
    state = kohya_state_dict("sd1", model.unet, [], "fp16")
    save_file({k: v for k, v in state.items() if not k.endswith(".alpha")}, str(tmp_path / "old.safetensors"))
    again = inject(fresh("sd1"), LoraSpec(rank=8, alpha=1.0), train_text_encoder=False)
    load_pretrained_lora(tmp_path / "old.safetensors", "sd1", again.unet, again.text_encoders)
    assert {layer.scaling[ADAPTER] for _, layer in lora_layers(again.unet)} == {1.0}
    inputs = unet_inputs(model)
    torch.testing.assert_close(unet_output(model.unet, inputs), unet_output(again.unet, inputs), rtol=1e-2, atol=1e-3)


def test_an_sdxl_lora_on_an_sd1_base_is_refused(tmp_path):
    path = _save(trained("sdxl", LoraSpec(rank=2, alpha=1.0)), tmp_path / "xl.safetensors",
                 {"ss_base_model_version": "sdxl_base_v1-0"})
    sd1 = inject(fresh("sd1"), LoraSpec(rank=2, alpha=1.0))
    with pytest.raises(UserError, match=r"for SDXL models, but the base model is SD 1\.x"):
        load_pretrained_lora(path, "sd1", sd1.unet, sd1.text_encoders)


def test_an_sd1_lora_on_an_sd2_base_is_refused_by_metadata_or_shapes(tmp_path):
    model = trained("sd1", LoraSpec(rank=2, alpha=1.0))
    sd2 = inject(fresh("sd2"), LoraSpec(rank=2, alpha=1.0))
    with pytest.raises(UserError, match="SD 1.x models"):
        load_pretrained_lora(_save(model, tmp_path / "a.safetensors", {"ss_base_model_version": "sd_v1"}),
                             "sd2", sd2.unet, sd2.text_encoders)
    with pytest.raises(UserError, match="trained on a different model"):  # no metadata: the shapes differ
        load_pretrained_lora(_save(model, tmp_path / "b.safetensors"), "sd2", sd2.unet, sd2.text_encoders)


def test_files_that_fit_nothing_or_are_not_loras_are_refused(tmp_path):
    model = inject(fresh("sd1"), LoraSpec(rank=2, alpha=1.0))
    save_file({"lora_unet_nowhere.lora_down.weight": torch.zeros(2, 4), "lora_unet_nowhere.lora_up.weight":
               torch.zeros(4, 2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(UserError, match="none of its 1 modules"):
        load_pretrained_lora(tmp_path / "other.safetensors", "sd1", model.unet, model.text_encoders)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="junk.safetensors is not a LoRA file but a text file"):
        load_pretrained_lora(tmp_path / "junk.safetensors", "sd1", model.unet, model.text_encoders)
    with pytest.raises(UserError, match="not found"):
        load_pretrained_lora(tmp_path / "missing.safetensors", "sd1", model.unet, model.text_encoders)


class NotATensor:
    pass


def test_pt_files_load_only_when_they_hold_tensors_alone(tmp_path):
    model = trained("sd1", LoraSpec(rank=2, alpha=1.0), train_text_encoder=False)
    torch.save(kohya_state_dict("sd1", model.unet, [], "fp32"), tmp_path / "old.pt")
    again = inject(fresh("sd1"), LoraSpec(rank=2, alpha=1.0), train_text_encoder=False)
    assert len(load_pretrained_lora(tmp_path / "old.pt", "sd1", again.unet, again.text_encoders).loaded) == 72
    torch.save({"lora_unet_x.lora_down.weight": torch.zeros(1), "payload": NotATensor()}, tmp_path / "evil.pt")
    with pytest.raises(UserError, match="never loaded, as it could run code"):
        load_pretrained_lora(tmp_path / "evil.pt", "sd1", again.unet, again.text_encoders)


def test_the_header_records_the_ranks_the_layers_hold_after_a_load(tmp_path):
    saved = LoraSpec(rank=4, alpha=2.0, conv_rank=2, conv_alpha=1.0)
    path = _save(trained("sd1", saved), tmp_path / "a.safetensors")
    configured = LoraSpec(rank=8, alpha=8.0, conv_rank=4, conv_alpha=4.0)
    again = inject(fresh("sd1"), configured)
    assert held_spec(configured, [again.unet, *again.text_encoders]) == configured
    load_pretrained_lora(path, "sd1", again.unet, again.text_encoders)
    held = held_spec(configured, [again.unet, *again.text_encoders])
    assert held == saved
    metadata = build_metadata(held, run())
    assert (metadata["ss_network_dim"], metadata["ss_network_alpha"]) == ("4", "2.0")
    assert json.loads(metadata["ss_network_args"]) == {"conv_dim": "2", "conv_alpha": "1.0"}
