"""The "Train LoRA" tab (image LoRAs): its layout and wiring (`tab`, `layout`), what its buttons do
(`controller`), its presets and HTML (`presets`, `render`), and its sections: the dataset check
(`dataset_review`), captioning (`caption_section`, `caption_listing`), "5. Use it" (`use_section`, with
"Test now" in `try_lora`), "6. Stack & test" (`stack_section`); `job_record` keeps the last LoRA across
restarts."""
