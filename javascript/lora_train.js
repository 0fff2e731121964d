// The Train LoRA tab (lora_train) in A1111 / Forge: put the trained LoRA's tag into the txt2img
// prompt (saying what it did), and bring the new LoRA's card into the txt2img and img2img Lora pages without a click.
//
// The WebUI renders each extra-networks page once and serves that HTML to every page load until
// the page's hidden refresh button is pressed. So every 2 s, when the tab shows a saved LoRA (the
// result's data-lora-name, also on a freshly loaded page) whose card a Lora page lacks, that
// button is pressed; the server's copy is refreshed with it, for later page loads too. The page's
// own first load of the cards may still be under way and answer with the old copy after the
// refresh: then the button is pressed again, a few seconds apart and a few times at most.

const LORA_TRAIN_REFRESH_TRIES = 3;
const LORA_TRAIN_REFRESH_GAP_MS = 5000;
const loraTrainRefreshes = new Map(); // "tab/name" -> {tries, at}

function loraTrainApp() {
    return typeof gradioApp === "function" ? gradioApp() : document;
}

function loraTrainShowSavedCards() {
    const app = loraTrainApp();
    const saved = app.querySelector("#lora_train_result [data-lora-name]");
    if (!saved) return;
    const name = saved.getAttribute("data-lora-name");
    ["txt2img", "img2img"].forEach(function (tab) {
        if (app.querySelector("#" + tab + "_lora_cards .card[data-name=\"" + CSS.escape(name) + "\"]")) return;
        const refresh = app.querySelector("#" + tab + "_lora_extra_refresh_internal");
        const done = loraTrainRefreshes.get(tab + "/" + name) || {tries: 0, at: 0};
        const waiting = Date.now() - done.at < LORA_TRAIN_REFRESH_GAP_MS;
        if (!refresh || done.tries >= LORA_TRAIN_REFRESH_TRIES || waiting) return;
        loraTrainRefreshes.set(tab + "/" + name, {tries: done.tries + 1, at: Date.now()});
        refresh.dispatchEvent(new Event("click"));
    });
}

// Puts the tag into the txt2img prompt (once) and shows txt2img; answers what it did, for the tab's note:
// "inserted", "no-tag" (no LoRA yet) or "no-prompt" (no txt2img prompt on this page).
function loraTrainInsertTag(tag) {
    if (!tag) return "no-tag";
    const prompt = loraTrainApp().querySelector("#txt2img_prompt textarea");
    if (!prompt) return "no-prompt";
    const text = prompt.value.trim();
    if (!text.includes(tag)) {
        prompt.value = text ? text + " " + tag : tag;
    }
    if (typeof updateInput === "function") updateInput(prompt);
    if (typeof switch_to_txt2img === "function") switch_to_txt2img();
    return "inserted";
}

const LORA_TRAIN_CHECK_MS = 2000;
if (typeof onUiLoaded === "function") {
    onUiLoaded(function () { setInterval(loraTrainShowSavedCards, LORA_TRAIN_CHECK_MS); });
}
