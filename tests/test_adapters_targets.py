"""Target selection: kinds pick the right layers, `target_modules` matches names or endings, and a
name that matches nothing (or an empty selection) is a clear error."""

from __future__ import annotations

import pytest
from test_export_support import fresh

from lora_train.adapters.targets import TEXT_ENCODER_KINDS, UNET_KINDS, select_targets
from lora_train.core.errors import UserError
from lora_train.families import family


@pytest.fixture(scope="module")
def sd1():
    return fresh("sd1")


def _select(model, **settings):
    values = dict(train_unet=True, train_text_encoder=True, unet_targets=UNET_KINDS,
                  text_encoder_targets=TEXT_ENCODER_KINDS)
    values.update(settings)
    return select_targets(model.unet, model.text_encoders, family(model.arch).targets, **values)


def test_kinds_split_kohyas_transformer_set(sd1):
    everything = set(_select(sd1).unet)
    attention = set(_select(sd1, unet_targets=["attention"]).unet)
    feed_forward = set(_select(sd1, unet_targets=["feed_forward"]).unet)
    projection = set(_select(sd1, unet_targets=["projection"]).unet)
    assert attention | feed_forward | projection == everything and len(everything) == 72  # 6 blocks x 12
    assert len(attention) == 48 and all(".attn1." in name or ".attn2." in name for name in attention)
    assert {name.split(".transformer_blocks.0.")[1] for name in feed_forward} == {"ff.net.0.proj", "ff.net.2"}
    assert {name.rsplit(".", 1)[1] for name in projection} == {"proj_in", "proj_out"}


def test_text_encoder_kinds(sd1):
    attention = _select(sd1, train_unet=False, text_encoder_targets=["attention"]).text_encoders[0]
    mlp = _select(sd1, train_unet=False, text_encoder_targets=["mlp"]).text_encoders[0]
    assert {name.rsplit(".", 1)[1] for name in attention} == {"q_proj", "k_proj", "v_proj", "out_proj"}
    assert {name.rsplit(".", 1)[1] for name in mlp} == {"fc1", "fc2"}
    assert len(attention) == 8 and len(mlp) == 4


def test_switches_leave_parts_out(sd1):
    assert _select(sd1, train_text_encoder=False).text_encoders == ((),)
    assert _select(sd1, train_unet=False).unet == ()
    locon = _select(sd1, network_type="locon").unet
    assert "down_blocks.0.resnets.0.conv1" in locon and "up_blocks.0.upsamplers.0.conv" in locon


def test_target_modules_take_full_names_or_endings(sd1):
    targets = _select(sd1, target_modules=["attn2.to_k", "text_model.encoder.layers.1.mlp.fc2", "mlp.fc2"])
    assert targets.unet and all(name.endswith("attn2.to_k") for name in targets.unet)
    assert targets.text_encoders[0] == ("encoder.layers.0.mlp.fc2", "encoder.layers.1.mlp.fc2")
    exact = _select(sd1, target_modules=["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"])
    assert exact.unet == ("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",) and len(exact) == 1


def test_a_target_module_that_matches_nothing_is_named_with_examples(sd1):
    # the lora-scripts ChatGLM example: names that exist in no SD model
    with pytest.raises(UserError) as error:
        _select(sd1, target_modules=["query_proj", "to_q"])
    message = str(error.value)
    assert "'query_proj'" in message and "'to_q'" not in message
    assert "of the UNet or text encoder" in message
    for hint in ("attn1.to_q", "attn2.to_out.0", "ff.net.0.proj", "proj_in", "self_attn.q_proj", "mlp.fc1"):
        assert hint in message


def test_empty_selections_are_errors(sd1):
    with pytest.raises(UserError, match="nothing to train"):
        _select(sd1, train_unet=False, train_text_encoder=False)
    with pytest.raises(UserError, match="No layer selected"):
        _select(sd1, unet_targets=[], text_encoder_targets=[])
    with pytest.raises(UserError, match="empty list"):
        _select(sd1, target_modules=[])
    with pytest.raises(UserError, match="unet_targets: unknown value"):
        _select(sd1, unet_targets=["attention", "convs"])
