"""LoRA on Stable Diffusion components: which layers, how they are wrapped, how their weights are read.

- `spec`: the network's ranks, alphas and variant (LoRA / LoCon / DoRA) as plain values.
- `targets`: which Linear / Conv2d layers of the UNet and text encoders get a LoRA (kohya's sets).
- `dora`: DoRA with one magnitude per input channel, the form A1111 and ComfyUI load.
- `inject`: puts peft LoRA layers on the chosen modules and returns their parameters per component.
- `layers`: finds the LoRA layers of a component and reads / writes their live weights.
"""
