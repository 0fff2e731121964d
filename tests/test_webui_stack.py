"""The Stack & test section's actions without a browser: inside the WebUI every cell goes through the
host's txt2img with the WebUI's `<lora:name:w>` tags (0 = no tag, the baseline), and the grid and its
parameters are saved; inputs it cannot use are messages."""

from __future__ import annotations

import dataclasses
import json

import pytest
from PIL import Image

from lora_train.core.errors import UserError
from lora_train.core.grid_image import GridSpec, layout, parse_weights
from lora_train.webui.image_tab.controller import TabController
from lora_train.webui.hosts.host import TabSettings
from lora_train.webui.hosts.standalone_host import StandaloneHost
from lora_train.webui.hosts.paths import PathPolicy
from lora_train.webui.worker.runner import JobRunner
from lora_train.webui.image_tab.stack_section import NONE, StackSection, lora_choices


@dataclasses.dataclass
class RenderingHost(StandaloneHost):
    """A host that renders like the WebUI does (one txt2img per call), recording the prompts."""

    can_render: bool = True
    prompts: list = dataclasses.field(default_factory=list)

    def render(self, prompt, negative, seed, steps, width, height):
        self.prompts.append((prompt, negative, seed, steps, width, height))
        image = Image.new("RGB", (width, height), (len(self.prompts) * 20 % 255, 100, 100))
        image.info["parameters"] = f"{prompt}\nSteps: {steps}"  # what the WebUI's txt2img attaches
        return image


@pytest.fixture
def section(tmp_path):
    loras = tmp_path / "loras"
    (loras / "styles").mkdir(parents=True)
    for name in ("ink", "styles/watercolor"):
        (loras / f"{name}.safetensors").write_bytes(b"x")
    host = RenderingHost(None, TabSettings(loras, tmp_path / "runs"), PathPolicy(False, [tmp_path]))
    return StackSection(TabController(host, JobRunner(), python_fallback="python")), host, tmp_path


def test_weights_always_hold_the_baseline():
    assert parse_weights("0.5, 1", "w") == [0.0, 0.5, 1.0]
    assert parse_weights("1; 0; -0.5", "w") == [1.0, 0.0, -0.5]
    with pytest.raises(UserError, match="not a list of numbers"):
        parse_weights("strong", "LoRA 1 weights")


def test_inside_the_webui_each_cell_is_a_txt2img_with_lora_tags(section):
    stack, host, tmp_path = section
    assert lora_choices(tmp_path / "loras") == ["ink", "styles/watercolor"]
    image, note, last = stack.render_grid("model.safetensors", "ink", "styles/watercolor", "1", "0.5",
                                          "a cat", "blurry", 7, 64, 48, 3)
    assert [prompt for prompt, *_ in host.prompts] == [
        "a cat", "a cat <lora:watercolor:0.5>", "a cat <lora:ink:1>", "a cat <lora:ink:1> <lora:watercolor:0.5>"]
    assert {tuple(rest) for _, *rest in host.prompts} == {("blurry", 7, 3, 64, 48)}
    bands = layout(GridSpec(["ink", "watercolor"], [[0.0, 1.0], [0.0, 0.5]], "a cat"), 64, 48)
    with Image.open(image) as grid:
        assert grid.size == (bands.left + 2 * 64, bands.top + 2 * 48)
    params = json.loads((tmp_path / "runs" / "grids" / (image.rsplit("/", 1)[1].replace(".png", ".json"))).read_text())
    assert params["weights"] == [[0.0, 1.0], [0.0, 0.5]] and params["base_model"] == "model.safetensors"
    assert params["infotexts"][3] == "a cat <lora:ink:1> <lora:watercolor:0.5>\nSteps: 3"
    assert "Saved the grid" in note and last == image


def test_bad_choices_are_messages(section):
    stack, host, _ = section
    with pytest.raises(UserError, match="Choose a LoRA first"):
        stack.render_grid("m", None, NONE, "1", "1", "a cat", "", 1, 64, 64, 2)
    with pytest.raises(UserError, match="no longer there"):
        stack.render_grid("m", "gone", NONE, "1", "1", "a cat", "", 1, 64, 64, 2)
    with pytest.raises(UserError, match="Write a prompt"):
        stack.render_grid("m", "ink", NONE, "1", "1", " ", "", 1, 64, 64, 2)
    assert not host.prompts
