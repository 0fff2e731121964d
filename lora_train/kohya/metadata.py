"""The safetensors header of a saved LoRA: kohya's `ss_*` keys and the `modelspec.*` (SAI ModelSpec) keys.

Values are all strings, written as kohya's `train_network.py` and `library/sai_model_spec.py`
write them (booleans as `True` / `False`, JSON for the tag and dataset tables, unix times).
The base-model keys are the family's names (`families/`). The WebUI reads `ss_base_model_version` /
`ss_v2` to file the LoRA under SD1 / SD2 / SDXL,
`ss_output_name` for its alias, `ss_tag_frequency` for the card's tag list, and
`ss_training_started_at` / `ss_sd_model_name` for the card's table. `lora_train_run_id` names the run that
saved the file (core/ownership.py). The hashes
(`sshs_model_hash`, `sshs_legacy_hash`) depend on the tensors and are added by `save_lora`.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePath

from ..adapters.spec import LoraSpec
from ..core.ownership import RUN_ID_KEY
from ..families import family

NETWORK_MODULE = "networks.lora"
MODELSPEC_VERSION = "1.0.1"


@dataclass(frozen=True)
class TrainingRun:
    """What the header records about the run that made the LoRA."""

    output_name: str
    base_model: str  # path or name of the base checkpoint; its file name is recorded
    family: str  # of the base: sd1 | sd2 | sdxl; its names fill the base-model keys
    resolution: int | tuple[int, int]
    started_at: float  # unix time
    finished_at: float
    steps: int
    num_epochs: int
    num_train_images: int
    learning_rate: float
    unet_lr: float | None = None
    text_encoder_lr: float | None = None
    seed: int | None = None
    v_prediction: bool = False  # the base predicts v (SD2 768-v: its own version and architecture names)
    training_comment: str = ""
    trigger_words: str = ""
    tag_frequency: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # folder -> tag -> count
    dataset_dirs: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # folder -> n_repeats, img_count
    run_id: str = ""  # the training run's id (core/ownership.py): a resumed run replaces only its own files


def network_args(network: LoraSpec) -> dict[str, str]:
    """kohya's `--network_args` for LoCon (`conv_dim`, `conv_alpha`) and LyCORIS's DoRA switch (`dora_wd`)."""
    args: dict[str, str] = {}
    if network.conv_rank is not None:
        args.update(conv_dim=str(network.conv_rank), conv_alpha=str(network.conv_alpha))
    if network.use_dora:
        args["dora_wd"] = "True"
    return args


def _size(resolution: int | tuple[int, int]) -> tuple[int, int]:
    return (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)


def build_metadata(network: LoraSpec, run: TrainingRun) -> dict[str, str]:
    """The header for a LoRA of this network made by this run (without the tensor hashes)."""
    width, height = _size(run.resolution)
    names = family(run.family).names
    version = names.version(run.v_prediction)
    metadata = {
        "ss_network_module": NETWORK_MODULE,
        "ss_network_dim": str(network.rank),
        "ss_network_alpha": str(float(network.alpha)),
        "ss_base_model_version": version,
        "ss_v2": str(names.v2),
        "ss_sd_model_name": PurePath(run.base_model).name,
        "ss_output_name": run.output_name,
        "ss_resolution": str((width, height)),
        "ss_num_train_images": str(run.num_train_images),
        "ss_num_epochs": str(run.num_epochs),
        "ss_steps": str(run.steps),
        "ss_learning_rate": str(run.learning_rate),
        "ss_unet_lr": str(run.unet_lr),
        "ss_text_encoder_lr": str(run.text_encoder_lr),
        "ss_seed": str(run.seed),
        "ss_training_started_at": str(run.started_at),
        "ss_training_finished_at": str(run.finished_at),
        "ss_training_comment": run.training_comment,
        "ss_tag_frequency": json.dumps(run.tag_frequency),
        "ss_dataset_dirs": json.dumps(run.dataset_dirs),
        "modelspec.sai_model_spec": MODELSPEC_VERSION,
        "modelspec.architecture": names.modelspec_architecture(run.v_prediction),
        "modelspec.implementation": names.implementation,
        "modelspec.title": run.output_name,
        "modelspec.resolution": f"{width}x{height}",
        "modelspec.date": datetime.datetime.fromtimestamp(int(run.finished_at)).isoformat(),
        "modelspec.prediction_type": "v" if version.endswith("_v") else "epsilon",
    }
    args = network_args(network)
    if args:
        metadata["ss_network_args"] = json.dumps(args)
    if run.trigger_words:
        metadata["modelspec.trigger_phrase"] = run.trigger_words
    if run.run_id:
        metadata[RUN_ID_KEY] = run.run_id
    return metadata
