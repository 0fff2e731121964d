"""A checkpoint belongs to one job, on both engines: jobs sharing an output_dir (other output names) keep
their own `checkpoint-<name>-<step>` folders, prune only their own and resume only their own with `latest`;
a checkpoint of another job (another output name, or another base model) is refused with both named; the
`checkpoint-<step>` folders of earlier versions still resume."""

from __future__ import annotations

import pytest
import torch

from lora_train.core.errors import UserError
from lora_train.core.events import Fanout
from lora_train.core.resume_folders import resume_folders
from lora_train.train.job import run_job
from lora_train.train.stop import StopRequest
from text_support import SEED, text_config
from train_support import train

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def private_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("LORA_TRAIN_LOCK_DIR", str(tmp_path))


def steps(events: list[dict]) -> list[int]:
    return [e["step"] for e in events if e["type"] == "step"]


def names(out, name: str) -> list[str]:
    return [path.name for path in resume_folders(out, name)]


def test_image_jobs_sharing_an_output_dir_keep_and_resume_their_own_checkpoints(tiny_sd1_file, tiny_sd1_diffusers,
                                                                                   tmp_path):
    out, settings = tmp_path / "shared", dict(max_train_steps=4, save_steps=1, save_total_limit=2)
    train(tiny_sd1_file, out, output_name="a", stop_at_step=2, **settings)
    train(tiny_sd1_file, out, output_name="b", **settings)  # saves 4 checkpoints, keeps its newest 2
    assert names(out, "a") == ["checkpoint-a-1", "checkpoint-a-2"], "b pruned or overwrote a's checkpoints"
    assert names(out, "b") == ["checkpoint-b-3", "checkpoint-b-4"]

    with pytest.raises(UserError, match=r"checkpoint-b-4 belongs to another job: it was saved by 'b' training on "
                                        r"\S+tiny-sd1\.safetensors, and this job is 'a' on \S+tiny-sd1\.safetensors"):
        train(tiny_sd1_file, out, output_name="a", resume_from_checkpoint=str(out / "checkpoint-b-4"), **settings)
    with pytest.raises(UserError, match=r"checkpoint-a-2 belongs to another job: it was saved by 'a' training on "
                                        r"\S+tiny-sd1\.safetensors, and this job is 'a' on \S+tiny-sd1-diffusers"):
        train(tiny_sd1_diffusers, out, output_name="a", resume_from_checkpoint="latest", **settings)

    resumed, events = train(tiny_sd1_file, out, output_name="a", resume_from_checkpoint="latest", **settings)
    assert steps(events) == [3, 4] and resumed == out / "a.safetensors"
    assert any(e.get("message", "").startswith(f"Resumed from {out / 'checkpoint-a-2'}") for e in events)


def test_a_checkpoint_of_an_earlier_version_still_resumes(tiny_sd1_file, tmp_path):
    out, settings = tmp_path / "out", dict(max_train_steps=3, save_steps=2)
    train(tiny_sd1_file, out, stop_at_step=2, **settings)
    older = out / "checkpoint-2"  # as earlier versions named and filled it: no job recorded
    (out / "checkpoint-my_lora-2").rename(older)
    state = torch.load(older / "training_state.pt", weights_only=True)
    del state["run"], state["history"]
    torch.save(state, older / "training_state.pt")

    _, events = train(tiny_sd1_file, out, resume_from_checkpoint="latest", **settings)
    assert steps(events) == [3]
    assert any("saved by an earlier version" in e.get("message", "") and e.get("level") == "warning" for e in events)


def train_text(out, base, **keys):
    config = text_config(base_model=str(base), metadata_path=str(SEED), output_dir=str(out), learning_rate=0.01,
                         log_with="none", batch_size=4, **keys)
    events: list[dict] = []
    path = run_job(config, Fanout(events.append), StopRequest())
    return path, events


def test_text_jobs_sharing_an_output_dir_keep_and_resume_their_own_checkpoints(tmp_path, tiny_llm):
    out, llama, other = tmp_path / "shared", tiny_llm("llama"), tiny_llm("gpt2")
    keys = dict(max_train_steps=2, save_steps=1)
    train_text(out, llama, output_name="a", **keys)
    train_text(out, llama, output_name="b", **keys)
    assert names(out, "a") == ["checkpoint-a-1", "checkpoint-a-2"] and names(out, "b") == ["checkpoint-b-1",
                                                                                          "checkpoint-b-2"]

    with pytest.raises(UserError, match=r"no checkpoint-c-<step> folder of the job 'c' yet.*other jobs' checkpoints "
                                        r"\(checkpoint-a-2, checkpoint-b-1, checkpoint-b-2\)"):
        train_text(out, llama, output_name="c", resume_from_checkpoint="latest", **keys)
    with pytest.raises(UserError, match=r"checkpoint-a-2 belongs to another job: it was saved by 'a' training on "
                                        rf"\S+{llama.name}, and this job is 'a' on \S+{other.name}"):
        train_text(out, other, output_name="a", resume_from_checkpoint="latest", **keys)
    _, events = train_text(out, llama, output_name="a", resume_from_checkpoint=str(out / "checkpoint-a-1"), **keys)
    assert steps(events) == [2]
