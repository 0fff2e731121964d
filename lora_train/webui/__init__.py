"""The "Train LoRA" and "LLM LoRA" tabs and what they need, shared by the WebUI extension and `python -m
lora_train ui`, in four wings and a kit:

- `image_tab/`: the Train LoRA tab, with its caption, use and stack sections;
- `llm_tab/`: the LLM LoRA tab;
- `hosts/`: what hosts the tabs: the WebUI (A1111 / Forge) or the standalone server;
- `worker/`: the worker processes: one launcher, the job runner, the LLM model worker, the worker venv;
- `kit/`: what both tabs build with: gradio's versions, form fields, widgets, markup, a page's memory of a job.

Everything here runs in the WebUI's own process, so it imports only the standard library,
gradio (and what gradio itself depends on, such as PIL and PyYAML) and, through
`hosts/a1111_host.py`, the WebUI's modules. Training runs in a separate worker process.
"""
