"""A loaded Flux-family base model, and `load_flux_base`: the one entry point for every form users have it in.

Forms: a BFL single file with the other parts beside it or named by config keys (`part_files`), an
all-in-one file, a diffusers folder (whose own parts the config keys may replace). The parts are checked
against each other before training: T5's width against the transformer's text input, CLIP-L's against
its pooled input, the autoencoder's latent channels against the transformer's packed input, and each
tokenizer against its encoder's vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler
from transformers import CLIPTextModel, T5EncoderModel

from ..core.errors import UserError
from ..families import Family, family
from ..models.clip_tokenizer import fit_tokenizer, load_clip_tokenizer
from ..models.pretrained import load_pretrained
from .part_files import PartFile, find_part, find_t5_tokenizer
from .parts import load_ae, load_clip, load_t5, load_t5_tokenizer
from .source import FluxSource
from .transformer import Transformer, load_bfl_transformer, load_folder_transformer

EncoderLoader = Callable[..., tuple[AutoencoderKL | None, list]]  # (with_vae=, with_text_encoders=) -> (vae, [clip])


@dataclass(frozen=True)
class PartPaths:
    """The config keys that name Flux's parts (empty: found as `part_files` says)."""

    ae: str | None = None
    clip_l: str | None = None
    t5xxl: str | None = None
    t5xxl_tokenizer: str | None = None
    fp8_base: bool = False  # the transformer's linear weights kept in fp8


@dataclass
class FluxBase:
    """A Flux-family model in diffusers / transformers classes, frozen, on its device. `unet` and
    `text_encoders` are the names the shared run kit (LoRA layers, resume state, the kohya writer's card, the
    encoders' release) uses for the denoiser and the text encoders a LoRA may train (CLIP-L; T5 stays frozen).
    As with the UNet engine's BaseModel, a run may release the autoencoder and CLIP-L (None) while the steps do
    not use them; `load_encoders(with_vae=..., with_text_encoders=...)` reads them from their files again."""

    arch: str  # the family's id: flux-dev | flux-schnell | chroma
    transformer: Transformer
    vae: AutoencoderKL | None  # None while released
    clip: CLIPTextModel | None  # None for Chroma, and while released
    clip_tokenizer: object | None
    t5: T5EncoderModel | None  # None once freed
    t5_tokenizer: object
    name: str
    path: Path
    sources: dict[str, str] = field(default_factory=dict)  # part -> where it was read from
    load_encoders: EncoderLoader | None = None
    v_prediction = False  # flow matching: neither epsilon nor v (the header's names are the family's own)

    @property
    def family(self) -> Family:
        return family(self.arch)

    @property
    def unet(self) -> Transformer:
        return self.transformer

    @property
    def text_encoders(self) -> list[CLIPTextModel]:
        return [self.clip] if self.clip is not None else []

    @text_encoders.setter
    def text_encoders(self, encoders: list[CLIPTextModel]) -> None:
        self.clip = encoders[0] if encoders else None

    @property
    def guidance(self) -> bool:
        """Whether the transformer takes a guidance value (Flux.1-dev and Krea)."""
        return bool(getattr(self.transformer.config, "guidance_embeds", False))

    @property
    def base_model_version(self) -> str:
        return self.family.names.base_model_version

    @property
    def modelspec_architecture(self) -> str:
        return self.family.names.modelspec_architecture(False)

    @property
    def sd_version(self) -> str:
        return self.family.names.label

    def sampling_scheduler(self) -> FlowMatchEulerDiscreteScheduler:
        """Flux's sampler: shifted by image size where the family's is (dev, Chroma; schnell: not)."""
        if not self.family.parts.sampling_shift:
            return FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False)
        return FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                               base_image_seq_len=256, max_image_seq_len=4096)


def _check_fit(base: FluxBase) -> None:
    config = base.transformer.config
    if base.t5.config.d_model != config.joint_attention_dim:
        raise UserError(f"The T5 encoder ({base.sources['t5xxl']}) is {base.t5.config.d_model} wide, but the "
                        f"transformer in {base.path} takes {config.joint_attention_dim}-wide text: they do not belong "
                        "together. Use Flux's T5-XXL (t5xxl_fp16.safetensors).")
    if base.clip is not None and base.clip.config.hidden_size != config.pooled_projection_dim:
        raise UserError(f"The CLIP-L text encoder ({base.sources['clip_l']}) is {base.clip.config.hidden_size} wide, "
                        f"but the transformer in {base.path} takes {config.pooled_projection_dim}: use Flux's "
                        "clip_l.safetensors.")
    if base.vae.config.latent_channels * 4 != config.in_channels:
        raise UserError(f"The autoencoder ({base.sources['ae']}) has {base.vae.config.latent_channels} latent channels, "
                        f"but the transformer in {base.path} takes {config.in_channels // 4}: use Flux's ae.safetensors.")
    if base.clip is not None:
        fit_tokenizer(base.clip_tokenizer, base.clip, None, f"the CLIP-L in {base.sources['clip_l']}")
    fit_tokenizer(base.t5_tokenizer, base.t5, Path(base.sources["t5_tokenizer"]),
                         f"the T5 encoder in {base.sources['t5xxl']}")


def _from_files(source: FluxSource, paths: PartPaths, dtype: torch.dtype, device: torch.device) -> FluxBase:
    checkpoint, path = source.checkpoint, source.path
    files = {part: find_part(part, path, getattr(paths, part), checkpoint.parts)
             for part in ("ae", "t5xxl") + (("clip_l",) if source.family.parts.clip_l else ())}
    tokenizer = find_t5_tokenizer(paths.t5xxl_tokenizer, files["t5xxl"])
    transformer = load_bfl_transformer(path, checkpoint, dtype, device, paths.fp8_base)
    read_clip = (lambda: load_clip(files["clip_l"], dtype)) if "clip_l" in files else None
    read_ae = lambda: load_ae(files["ae"], dtype)  # noqa: E731
    clip = read_clip() if read_clip else None
    sources = {part: f"{file.path}" + (f" ({file.prefix}*)" if file.prefix else "") for part, file in files.items()}
    return FluxBase(source.family.id, transformer, read_ae(), clip,
                    load_clip_tokenizer() if clip is not None else None, load_t5(files["t5xxl"], dtype),
                    load_t5_tokenizer(tokenizer), path.stem, path, {**sources, "t5_tokenizer": str(tokenizer)},
                    _encoder_loader(read_ae, read_clip))


def _from_folder(source: FluxSource, paths: PartPaths, dtype: torch.dtype, device: torch.device) -> FluxBase:
    folder, what = source.path, f"The diffusers folder {source.path}"
    clip_folder, t5_folder = source.family.parts.text_folders
    tokenizer_folder = Path(paths.t5xxl_tokenizer) if paths.t5xxl_tokenizer else folder / t5_folder.replace(
        "text_encoder", "tokenizer")

    def read_ae() -> AutoencoderKL:
        return (load_ae(PartFile(Path(paths.ae)), dtype) if paths.ae
                else load_pretrained(AutoencoderKL, folder, "vae", dtype, what))

    def read_clip() -> CLIPTextModel:
        return (load_clip(PartFile(Path(paths.clip_l)), dtype) if paths.clip_l
                else load_pretrained(CLIPTextModel, folder, clip_folder, dtype, what))

    ae = read_ae()
    t5 = (load_t5(PartFile(Path(paths.t5xxl)), dtype) if paths.t5xxl
          else load_pretrained(T5EncoderModel, folder, t5_folder, dtype, what))
    clip = read_clip() if clip_folder else None
    sources = {"ae": paths.ae or str(folder / "vae"), "t5xxl": paths.t5xxl or str(folder / t5_folder),
               "clip_l": paths.clip_l or str(folder / (clip_folder or "")), "t5_tokenizer": str(tokenizer_folder)}
    transformer = load_folder_transformer(folder, source.family, dtype, device, paths.fp8_base)
    return FluxBase(source.family.id, transformer, ae, clip,
                    load_clip_tokenizer(folder / "tokenizer") if clip is not None else None, t5,
                    load_t5_tokenizer(tokenizer_folder), folder.name, folder, sources,
                    _encoder_loader(read_ae, read_clip if clip_folder else None))


def _encoder_loader(read_ae: Callable[[], AutoencoderKL], read_clip: Callable[[], CLIPTextModel] | None
                    ) -> EncoderLoader:
    """`FluxBase.load_encoders`: the autoencoder and CLIP-L read again, frozen, as they were first loaded."""
    def load(with_vae: bool = False, with_text_encoders: bool = False) -> tuple[AutoencoderKL | None, list]:
        vae = read_ae().eval().requires_grad_(False) if with_vae else None
        clip = [read_clip().eval().requires_grad_(False)] if with_text_encoders and read_clip else []
        return vae, clip

    return load


def load_flux_base(source: FluxSource, paths: PartPaths = PartPaths(), dtype: torch.dtype = torch.float32,
                   device: torch.device = torch.device("cpu")) -> FluxBase:
    """The model `source` names, with its parts (the transformer on `device`, the rest on the CPU), frozen."""
    base = (_from_folder if source.checkpoint is None else _from_files)(source, paths, dtype, device)
    _check_fit(base)
    for module in (base.vae, base.t5, *base.text_encoders):
        module.eval().requires_grad_(False)
    return base
