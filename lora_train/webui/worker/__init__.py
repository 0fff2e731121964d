"""The worker plumbing: every process that runs the engine for the tabs starts through `launch`, jobs run in a
`runner` (one at a time across `jobs`), the LLM tab's model lives in a `model_worker`, and the worker's own venv
is made by `environment` (in the background: `background_setup`, its progress in words: `setup_progress`)."""
