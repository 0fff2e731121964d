"""What hosts the tabs: the contract (`host`: settings, models, GPU, test renders), the WebUI (`a1111_host`,
A1111 1.10 / Forge) and the standalone server (`standalone_host`, `standalone_server`: `python -m lora_train
ui`), with what they share: listing model files (`model_files`) and where typed paths may point (`paths`)."""
