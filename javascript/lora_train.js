// The Train LoRA tab (lora_train): put the trained LoRA's tag into the txt2img prompt and refresh
// the WebUI's Lora list so its card shows up without a restart. Loaded by A1111 / Forge.

function loraTrainInsertTag(tag) {
    const app = typeof gradioApp === "function" ? gradioApp() : document;
    const prompt = app.querySelector("#txt2img_prompt textarea");
    if (!prompt || !tag) return [];
    const text = prompt.value.trim();
    if (!text.includes(tag)) {
        prompt.value = text ? text + " " + tag : tag;
    }
    if (typeof updateInput === "function") updateInput(prompt);
    // The extra-networks pages rebuild their cards when their hidden refresh button is clicked.
    ["txt2img", "img2img"].forEach(function (tab) {
        const refresh = app.querySelector("#" + tab + "_lora_extra_refresh_internal");
        if (refresh) refresh.dispatchEvent(new Event("click"));
    });
    if (typeof switch_to_txt2img === "function") switch_to_txt2img();
    return [];
}
