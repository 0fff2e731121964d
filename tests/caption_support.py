"""Tiny captioning models built in code, and image folders, for the caption tests.

The tiny tagger's outputs are simple functions of the mean colour (in the BGR order the taggers
feed), so the expected tags of a plain-coloured image can be worked out by hand:
    p = sigmoid(mean(B, G, R) / 255 @ WEIGHTS + BIAS)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

TAGGER_SIZE = 16
# tag_id,name,category: ratings first, as in the real files.
TAGS = [("general", 9), ("sensitive", 9), ("red_background", 0), ("blue_background", 0), ("^_^", 0),
        ("long_hair", 0), ("hatsune_miku", 4)]
#                    general sensitive red_bg blue_bg ^_^ long_hair miku
WEIGHTS = np.array([[0.0, 0.0, 0.0, 6.0, 0.0, 0.0, 0.0],    # B
                    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 8.0],    # G
                    [-2.0, 2.0, 6.0, 0.0, 0.0, 0.0, 0.0]],  # R
                   dtype=np.float32)
BIAS = np.array([1.0, -1.0, -3.0, -3.0, 0.0, -1.0, -4.0], dtype=np.float32)


def expected_probabilities(rgb: tuple[int, int, int]) -> np.ndarray:
    """The tiny tagger's output for a plain image of colour `rgb`, computed by hand."""
    bgr = np.array(rgb[::-1], dtype=np.float32) / 255
    return 1 / (1 + np.exp(-(bgr @ WEIGHTS + BIAS)))


def build_tagger(folder: Path) -> Path:
    """model.onnx + selected_tags.csv: NHWC float input, probabilities out, like a WD v3 tagger."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    nodes = [helper.make_node("ReduceMean", ["input", "axes"], ["mean"], keepdims=0),
             helper.make_node("Div", ["mean", "scale"], ["unit"]),
             helper.make_node("MatMul", ["unit", "weights"], ["logits0"]),
             helper.make_node("Add", ["logits0", "bias"], ["logits"]),
             helper.make_node("Sigmoid", ["logits"], ["predictions_sigmoid"])]
    constants = [numpy_helper.from_array(np.array([1, 2], dtype=np.int64), "axes"),
                 numpy_helper.from_array(np.array(255.0, dtype=np.float32), "scale"),
                 numpy_helper.from_array(WEIGHTS, "weights"), numpy_helper.from_array(BIAS, "bias")]
    graph = helper.make_graph(
        nodes, "tiny_tagger",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", TAGGER_SIZE, TAGGER_SIZE, 3])],
        [helper.make_tensor_value_info("predictions_sigmoid", TensorProto.FLOAT, ["batch", len(TAGS)])], constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    onnx.checker.check_model(model)
    onnx.save(model, str(folder / "model.onnx"))
    rows = ["tag_id,name,category,count"] + [f"{i},{name},{cat},{100 - i}" for i, (name, cat) in enumerate(TAGS)]
    (folder / "selected_tags.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


def build_not_a_tagger(path: Path) -> Path:
    """A valid ONNX model whose input is not an image: [batch, 10] -> [batch, 10]."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 10])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])])
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), str(path))
    return path


BLIP_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "a", "photo", "of", "red", "square", "circle",
              "blue", "shape"]


def build_blip(folder: Path) -> Path:
    """A tiny BlipForConditionalGeneration with its processor (tokenizer.json only), as save_pretrained writes."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast, BlipConfig, BlipForConditionalGeneration, BlipProcessor
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    vocab = {word: i for i, word in enumerate(BLIP_WORDS)}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                             special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    fast = BertTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                             sep_token="[SEP]", mask_token="[MASK]", bos_token="[DEC]")
    processor = BlipProcessor(image_processor=BlipImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=fast)
    config = BlipConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        text_config=dict(vocab_size=len(BLIP_WORDS), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=64, bos_token_id=5, pad_token_id=0,
                         sep_token_id=3, eos_token_id=3),
        projection_dim=32)
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(config)
    model.save_pretrained(str(folder))
    processor.save_pretrained(str(folder))
    return folder


CLIP_CFG = {"embed_dim": 16,
            "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def build_open_clip(folder: Path) -> Path:
    """A tiny open_clip CLIP saved as a hub folder: open_clip_config.json + open_clip_model.safetensors."""
    import torch
    from safetensors.torch import save_file

    from lora_train.caption.open_clip_import import open_clip_modules

    torch.manual_seed(0)
    model = open_clip_modules()[0].CLIP(**CLIP_CFG)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": CLIP_CFG, "preprocess_cfg": {}}))
    return folder


COLOURS = {"red": (255, 0, 0), "blue": (0, 0, 255), "green": (0, 255, 0)}


def image_folder(folder: Path, names: dict[str, tuple[int, int, int]] | None = None, size: int = 24) -> Path:
    """Plain square PNGs named after their colours."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, rgb in (names or COLOURS).items():
        Image.new("RGB", (size, size), rgb).save(folder / f"{name}.png")
    return folder
