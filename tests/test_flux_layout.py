"""The BFL <-> diffusers conversion of the Flux transformer (lora_train/dit/flux_layout.py), checked against
diffusers' own BFL -> diffusers converters, which hard-code Flux's real width (3072): there a state dict of
that width with one column per weight (every row its own value) shows each row lands where diffusers puts it."""

from __future__ import annotations

import pytest
import torch
from diffusers import ChromaTransformer2DModel, FluxTransformer2DModel
from diffusers.loaders.single_file_utils import (convert_chroma_transformer_checkpoint_to_diffusers,
                                                 convert_flux_transformer_checkpoint_to_diffusers)

from lora_train.dit.flux_layout import bfl_modules, from_bfl, to_bfl
from lora_train.fixtures.tiny_flux import tiny_flux
from lora_train.models.weights import empty_model

REAL_WIDTH = dict(num_layers=2, num_single_layers=3, attention_head_dim=128, num_attention_heads=24,
                  joint_attention_dim=40, axes_dims_rope=(16, 56, 56))
CASES = {  # family -> (model class and its extra config, diffusers' converter)
    "flux-dev": (FluxTransformer2DModel, {"guidance_embeds": True, "pooled_projection_dim": 24},
                 convert_flux_transformer_checkpoint_to_diffusers),
    "flux-schnell": (FluxTransformer2DModel, {"guidance_embeds": False, "pooled_projection_dim": 24},
                     convert_flux_transformer_checkpoint_to_diffusers),
    "chroma": (ChromaTransformer2DModel, {"approximator_num_channels": 32, "approximator_hidden_dim": 48,
                                          "approximator_layers": 3}, convert_chroma_transformer_checkpoint_to_diffusers),
}


def row_tagged(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A state dict shaped like `model`'s rows, one column, each row of each tensor a value of its own."""
    tagged, start = {}, 0
    for key, value in model.state_dict().items():
        rows = value.shape[0]
        column = torch.arange(start, start + rows, dtype=torch.float64)
        tagged[key] = column[:, None] if value.ndim == 2 else column
        start += rows
    return tagged


@pytest.mark.parametrize("family", list(CASES))
@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
def test_to_bfl_is_what_diffusers_converts_back(family, prefix):
    cls, extra, convert = CASES[family]
    model = empty_model(lambda: cls(**REAL_WIDTH, **extra))
    expected = row_tagged(model)
    bfl = to_bfl(expected, bfl_modules(model.config, chroma=family == "chroma"), prefix)
    back = convert(dict(bfl))
    assert back.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(back[key], value), key


@pytest.mark.parametrize("family", list(CASES))
def test_from_bfl_inverts_to_bfl_at_any_width(family):
    model = tiny_flux(family).transformer
    state = model.state_dict()
    modules = bfl_modules(model.config, chroma=family == "chroma")
    bfl = to_bfl(state, modules)
    back = dict(from_bfl(bfl.__getitem__, modules, {key: value.shape for key, value in state.items()}))
    assert back.keys() == state.keys()
    assert all(torch.equal(back[key], value) for key, value in state.items())
