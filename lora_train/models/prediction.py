"""Does the base model predict noise (epsilon) or v? And the noise scheduler training uses.

For a single-file checkpoint the first of these that says anything decides:
  1. the `prediction_type` setting (`epsilon` / `v_prediction`; `auto` defers);
  2. the `<checkpoint>.yaml` beside it (`parameterization: v`, or sgm's VScaling), as in the WebUI;
  3. the file's metadata (`modelspec.prediction_type`, or a `modelspec.architecture` ending in `-v`);
  4. a `v_pred` tensor, the marker that v-prediction SDXL models (NoobAI-XL v-pred, ...) carry;
  5. for SD2 only, the WebUI's own test (`is_using_v_parameterization_for_sd2`): run the UNet once at
     t=999 on a constant latent; a v model's output lies well below its input (mean difference < -1);
  6. otherwise epsilon.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from diffusers import DDPMScheduler, UNet2DConditionModel

from ..core.errors import UserError
from .ldm_config import LdmConfig

PREDICTION_TYPES = ("auto", "epsilon", "v_prediction")


def declared_v_prediction(prediction_type: str, ldm: LdmConfig | None, metadata: Mapping[str, str],
                          keys: Mapping[str, Any]) -> bool | None:
    """Steps 1-4 above: True / False when something says, None when nothing does."""
    if prediction_type != "auto":
        return prediction_type == "v_prediction"
    if ldm is not None:
        return ldm.v_prediction()
    declared = metadata.get("modelspec.prediction_type")
    if declared in ("v", "v_prediction", "epsilon"):
        return declared != "epsilon"
    if metadata.get("modelspec.architecture", "").endswith("-v"):
        return True
    return True if "v_pred" in keys else None


def check_prediction_type(prediction_type: str) -> None:
    if prediction_type not in PREDICTION_TYPES:
        raise UserError(f"prediction_type: {prediction_type!r} is not one of {', '.join(PREDICTION_TYPES)}.")


@torch.no_grad()
def looks_like_v_prediction(unet: UNet2DConditionModel) -> bool:
    """Step 5: the WebUI's test for SD2 768-v checkpoints, on the loaded UNet."""
    parameter = next(unet.parameters())
    latent = torch.full((1, unet.config.in_channels, 8, 8), 0.5, device=parameter.device, dtype=parameter.dtype)
    context = torch.full((1, 2, unet.config.cross_attention_dim), 0.5, device=parameter.device, dtype=parameter.dtype)
    timestep = torch.tensor([999], device=parameter.device)
    output = unet(latent, timestep, encoder_hidden_states=context).sample
    return (output - latent).float().mean().item() < -1


def training_scheduler(config: Mapping[str, Any], v_prediction: bool) -> DDPMScheduler:
    """A DDPMScheduler with the model's noise schedule (from any SD scheduler config) and target."""
    return DDPMScheduler.from_config(dict(config), prediction_type="v_prediction" if v_prediction else "epsilon",
                                     clip_sample=False)
