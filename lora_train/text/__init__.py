"""The text (LLM) LoRA engine: causal language models, chat/alpaca/raw-text data, PEFT adapters.

`schema` is torch-free (the config loader reads it); the other modules import torch and transformers.
"""
