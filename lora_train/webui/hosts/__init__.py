"""What hosts the tabs: the contract (`host`: settings, models, GPU, test renders), the WebUI (`a1111_host`,
A1111 1.10 / Forge / Forge Neo, with `forge_backend` for what Forge and Neo do their own way) and the standalone
server (`standalone_host`, `standalone_server`: `python -m lora_train ui`), with what they share: listing model
files and telling their family (`model_files`), sorting a selector's files into a family's parts
(`part_selection`) and where typed paths may point (`paths`)."""
