"""The "Train LoRA" tab and what it needs, shared by the WebUI extension and `python -m lora_train ui`.

Everything here runs in the WebUI's own process, so it imports only the standard library,
gradio (and what gradio itself depends on, such as PIL and PyYAML) and, through
`a1111_host.py`, the WebUI's modules. Training runs in a separate worker process.
"""
