"""Block swap (`blocks_to_swap`): kohya's count and limits, the swapped blocks' weights really kept in the store and
visiting the compute device (for the forward pass, checkpointing's recomputation and the backward pass), and a run
with it giving the same losses and LoRA as without; refused for Stable Diffusion."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, inject_adapter_in_model
from safetensors.torch import load_file

from flux_support import deep_flux_dev
from lora_train.core.errors import UserError
from lora_train.dit.block_swap import BlockSwap, swap_counts
from lora_train.fixtures.tiny_flux import tiny_flux
from train_support import train


@pytest.fixture(autouse=True)
def private_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("LORA_TRAIN_LOCK_DIR", str(tmp_path))


def test_the_count_is_kohya_s():
    assert swap_counts(35, 19, 38) == (17, 36)  # Flux.1's largest
    assert swap_counts(16, 19, 38) == (8, 16) and swap_counts(3, 4, 6) == (1, 4) and swap_counts(0, 2, 3) == (0, 0)
    with pytest.raises(UserError, match=r"blocks_to_swap: 36 asks for 18 of this transformer's 19 double blocks "
                                        r"and 36 of its 38 single blocks.* use 0 to 35"):
        swap_counts(36, 19, 38)
    with pytest.raises(UserError, match=r"blocks_to_swap: 5 .* use 0 to 4"):
        swap_counts(5, 4, 6)


def _model(doubles=4, singles=6):
    torch.manual_seed(0)
    tiny = tiny_flux("flux-dev")
    transformer = type(tiny.transformer).from_config({**tiny.transformer.config, "num_layers": doubles,
                                                      "num_single_layers": singles})
    transformer.requires_grad_(False)
    inject_adapter_in_model(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                       target_modules=["to_q", "to_k", "to_v", "proj_mlp", "proj_out"]), transformer)
    return transformer


def _inputs(batch=2, tokens=16, text=8):
    generator = torch.Generator().manual_seed(3)
    return dict(hidden_states=torch.randn(batch, tokens, 64, generator=generator),
                encoder_hidden_states=torch.randn(batch, text, 40, generator=generator),
                pooled_projections=torch.randn(batch, 128, generator=generator),
                timestep=torch.tensor([0.3, 0.7]), guidance=torch.ones(batch),
                img_ids=torch.zeros(tokens, 3), txt_ids=torch.zeros(text, 3), return_dict=False)


def _in_store(group, index):
    """Whether every swapped weight of the block is its stored tensor (not a copy on the compute device)."""
    return all(param.data.data_ptr() == kept.data_ptr() for param, kept in group.stored[index])


@pytest.mark.parametrize("checkpointing", [False, True])
def test_swapped_blocks_visit_the_device_and_give_the_same_gradients(checkpointing):
    plain, swapped = _model(), None
    swapped = copy.deepcopy(plain)
    swap = BlockSwap(swapped, 3, torch.device("cpu"), torch.device("cpu"))
    doubles, singles = swap.groups
    assert (doubles.first, singles.first) == (3, 2) and sorted(singles.stored) == [2, 3, 4, 5]
    for model in (plain, swapped):
        model.train()
        if checkpointing:
            model.enable_gradient_checkpointing()
    seen_in_backward = []  # (block, its weights on the device) when the block's LoRA gradients are computed
    for group in swap.groups:
        for index in group.stored:
            lora = next(p for p in group.blocks[index].parameters() if p.requires_grad)
            lora.register_hook(lambda grad, g=group, i=index: seen_in_backward.append((i, not _in_store(g, i))))
    for step in range(2):
        outputs = [model(**_inputs())[0] for model in (plain, swapped)]
        torch.testing.assert_close(outputs[1], outputs[0], rtol=0, atol=0)
        # after the forward pass: every swapped block back in the store but the last of each kind
        assert [_in_store(singles, i) for i in range(2, 6)] == [True, True, True, False]
        assert [_in_store(doubles, 3)] == [False]
        for output in outputs:
            output.square().mean().backward()
        for group in swap.groups:  # after the backward pass: all of them back in the store
            assert all(_in_store(group, i) for i in group.stored)
        assert seen_in_backward and all(on_device for _, on_device in seen_in_backward)
        seen_in_backward.clear()
    # each step: every swapped block copied once forward, and once backward but the last of each kind
    assert swap.moves == 2 * (2 * 5 - 2)
    for (name, a), (_, b) in zip(plain.named_parameters(), swapped.named_parameters()):
        if a.requires_grad:
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-6, atol=1e-7, msg=name)


def test_a_forward_without_gradients_sends_every_swapped_block_back():
    model = _model()
    swap = BlockSwap(model, 4, torch.device("cpu"), torch.device("cpu"))
    with torch.no_grad():
        model(**_inputs())
        model(**_inputs())
    for group in swap.groups:
        assert all(_in_store(group, i) for i in group.stored)
    assert swap.moves == 2 * (2 + 4)


@pytest.mark.slow
@pytest.mark.parametrize("checkpointing", [False, True])
def test_a_run_with_block_swap_gives_the_same_losses_and_lora(tiny_flux_files, tmp_path, checkpointing):
    model = deep_flux_dev(tiny_flux_files("flux-dev"), tmp_path / "model")
    settings = dict(max_train_steps=3, t5xxl_max_token_length=16, train_text_encoder=True, sample_steps=0,
                    gradient_checkpointing=checkpointing, flux_targets=["attention", "mlp", "modulation"])
    runs = {}
    for swap in (0, 4):
        runs[swap] = train(model, tmp_path / f"swap-{swap}", blocks_to_swap=swap, **settings)
    losses = {swap: [e["loss"] for e in events if e["type"] == "step"] for swap, (_, events) in runs.items()}
    assert len(losses[4]) == 3 and losses[4] == pytest.approx(losses[0], rel=1e-6)
    assert any("Block swap: 2 double and 4 single blocks" in e.get("message", "") for e in runs[4][1])
    plain, swapped = load_file(str(runs[0][0])), load_file(str(runs[4][0]))
    assert plain.keys() == swapped.keys()
    for key in plain:
        torch.testing.assert_close(swapped[key], plain[key], rtol=1e-5, atol=1e-7, msg=key)


@pytest.mark.slow
def test_too_many_blocks_and_stable_diffusion_are_refused(tiny_flux_files, tiny_sd1_file, tmp_path):
    with pytest.raises(UserError, match=r"blocks_to_swap: 2 asks for 1 of this transformer's 2 double blocks .* "
                                        r"use 0 to 0"):
        train(tiny_flux_files("flux-dev").transformer, tmp_path / "flux", max_train_steps=1, blocks_to_swap=2,
              t5xxl_max_token_length=16, sample_steps=0)
    with pytest.raises(UserError, match=r"blocks_to_swap is a Flux setting: .* Stable Diffusion models"):
        train(tiny_sd1_file, tmp_path / "sd", max_train_steps=1, blocks_to_swap=4)
