"""The layout of the Train LoRA tab's sections 1 to 4 (base model, dataset with its captions, settings, train),
built inside the tab's Blocks; each returns its components by name for `tab.TabView` to wire."""

from __future__ import annotations

from typing import Any

import gradio as gr

from ..kit import form
from ..kit.widgets import field_widget
from .caption_section import CaptionSection
from .controller import TabController


def model_section(ctl: TabController) -> dict[str, Any]:
    """1. Base model: the loaded checkpoint's note, the checkpoint and VAE choices (`default_model`: the choice
    it was built with)."""
    titles, default_model = ctl.model_choices()
    vaes, default_vae = ctl.vae_choices()
    with gr.Accordion("1. Base model", open=True, elem_id="lora_train_model_section"):
        model_note = gr.HTML(ctl.model_summary(), elem_id="lora_train_model_note")
        with gr.Row():
            base_model = gr.Dropdown(choices=titles, value=default_model, allow_custom_value=True,
                                     label="Train on (checkpoint)", elem_id="lora_train_base_model",
                                     info="The WebUI's loaded checkpoint, another one, or a path.")
            vae = gr.Dropdown(choices=vaes, value=default_vae, allow_custom_value=True, label="VAE",
                              elem_id="lora_train_vae")
            refresh = gr.Button("Refresh lists", elem_id="lora_train_refresh_models")
    return dict(model_note=model_note, base_model=base_model, vae=vae, refresh=refresh, default_model=default_model)


def dataset_section(ctl: TabController) -> dict[str, Any]:
    """2. Dataset: the folder, its check, the Caption section (`captions`, wired by the tab), trigger and name."""
    with gr.Accordion("2. Dataset", open=True, elem_id="lora_train_dataset_section"):
        with gr.Row():
            data_dir = gr.Textbox(label="Dataset folder", elem_id="lora_train_data_dir",
                                  placeholder="a folder of images with same-name .txt captions")
            scan = gr.Button("Check dataset", elem_id="lora_train_scan")
        captions = CaptionSection(ctl)
        captions.build()
        dataset_note = gr.HTML("", elem_id="lora_train_dataset_note")
        gallery = gr.Gallery(label="Images and captions", columns=6, height=260, object_fit="contain",
                             elem_id="lora_train_dataset_gallery")
        with gr.Row():
            trigger = gr.Textbox(label="Trigger word", elem_id="lora_train_trigger_word",
                                 info="Put in front of every caption; type it in prompts to call the LoRA.")
            name = gr.Textbox(label="LoRA name", value="my_lora", elem_id="lora_train_output_name",
                              info="The file name in the Lora folder (never overwritten: _v2, _v3...).")
    return dict(data_dir=data_dir, scan=scan, captions=captions, dataset_note=dataset_note, gallery=gallery,
                trigger=trigger, name=name)


def settings_section(ctl: TabController, values: dict[str, Any], widgets: dict[str, Any]) -> dict[str, Any]:
    """3. Settings: the preset, every config key's widget (into `widgets`, by key), the config file's buttons."""
    with gr.Accordion("3. Settings", open=True, elem_id="lora_train_settings_section"):
        choices, shown = ctl.presets_offered(ctl.model_choices()[1], ctl.host.settings().default_preset)
        preset = gr.Dropdown(choices=choices, value=shown, label="Preset", elem_id="lora_train_preset",
                             info="Fills rank, alpha, learning rates, epochs, batch and resolution. Auto chooses "
                                  "them from the dataset, the model and the GPU, with a reason for each.")
        with gr.Row():
            for spec in ctl.specs:
                if spec.name in form.BASIC_KEYS:
                    widgets[spec.name] = field_widget(spec, values[spec.name])
        with gr.Accordion("Advanced: every setting", open=False, elem_id="lora_train_advanced"):
            for group in dict.fromkeys(spec.group for spec in ctl.specs):
                with gr.Accordion(group, open=False):
                    for spec in ctl.specs:
                        if spec.group == group and spec.name not in form.BASIC_KEYS:
                            widgets[spec.name] = field_widget(spec, values[spec.name])
        with gr.Row():
            config_path = gr.Textbox(label="Config file (YAML, the same the CLI runs)",
                                     elem_id="lora_train_config_path", value=ctl.config_path("my_lora"))
            save = gr.Button("Save config", elem_id="lora_train_save_config")
            load = gr.Button("Load config", elem_id="lora_train_load_config")
        config_text = gr.Textbox(label="Saved config", lines=6, interactive=False, elem_id="lora_train_config_text")
    return dict(preset=preset, config_path=config_path, save=save, load=load, config_text=config_text)


def train_section(ctl: TabController, start_note: str, log_lines: int) -> dict[str, Any]:
    """4. Train: the worker's set-up note, Start / Interrupt / Resume, the job's progress, chart, samples and log
    (its last `log_lines` lines)."""
    with gr.Accordion("4. Train", open=True, elem_id="lora_train_run_section"):
        note, ready = ctl.worker_status()
        worker_note = gr.HTML(note, elem_id="lora_train_worker_note")
        with gr.Row():
            start = gr.Button("Start training", variant="primary", interactive=ready, elem_id="lora_train_start")
            stop = gr.Button("Interrupt (save what is trained)", variant="stop", elem_id="lora_train_stop")
            resume = gr.Button("Resume", interactive=ready, elem_id="lora_train_resume")
        action_note = gr.HTML(start_note, elem_id="lora_train_action_note")
        progress = gr.HTML("", elem_id="lora_train_progress")
        job_note = gr.HTML("", elem_id="lora_train_job_note")
        with gr.Row():
            chart = gr.HTML("", elem_id="lora_train_chart")
            samples = gr.Gallery(label="Latest samples", columns=4, height=220, object_fit="contain",
                                 elem_id="lora_train_samples")
        log = gr.Textbox(label="Log (latest lines)", lines=log_lines, max_lines=log_lines, interactive=False,
                         elem_id="lora_train_log")
    return dict(worker_note=worker_note, start=start, stop=stop, resume=resume, action_note=action_note,
                progress=progress, job_note=job_note, chart=chart, samples=samples, log=log)
