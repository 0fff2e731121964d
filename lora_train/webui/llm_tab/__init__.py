"""The "LLM LoRA" tab (text LoRAs on a causal language model): its layout and wiring (`tab`), what its buttons
do (`controller`), its presets and HTML (`presets`, `render`); the model it tests with lives in the worker
(`worker.model_worker`)."""
