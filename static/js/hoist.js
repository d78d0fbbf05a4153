/* Hoist: the little behaviour the pages need besides htmx. A static file, since the
   Content-Security-Policy allows no inline script (and htmx runs with allowEval off,
   so no hx-on attributes either). Listeners sit on the document, so they also serve
   the fragments htmx swaps in later. Every page works without it. */

// The pin picker (environments/htmx/digest_field.html): typing a digest checks the recent
// publish it names; picking a recent publish fills the field in, has it checked as typing
// would, and selects "Pin to digest" when the binding is on the same form.
document.addEventListener("input", (event) => {
  const field = event.target;
  if (field.id !== "id_pinned_digest") return;
  document.querySelectorAll("input[name=digest_pick]").forEach((radio) => {
    radio.checked = radio.value === field.value;
  });
});

document.addEventListener("change", (event) => {
  const radio = event.target;
  if (radio.name !== "digest_pick") return;
  const field = document.getElementById("id_pinned_digest");
  if (!field) return;
  field.value = radio.value;
  htmx.trigger(field, "input");
  const pin = document.getElementById("id_binding_pin");
  if (pin) pin.checked = true;
});

// Fields shown only when they apply: `data-show-when="binding=pin_digest"` shows an element only
// while its form's `binding` field has that value. The server renders it hidden or not; this keeps
// it in step as you choose. Without JavaScript hoist.css shows them all (each says when it applies).
function syncShown(root) {
  root.querySelectorAll("[data-show-when]").forEach((block) => {
    const [name, value] = block.dataset.showWhen.split("=");
    const form = block.closest("form");
    const fields = form ? Array.from(form.elements).filter((field) => field.name === name) : [];
    if (!fields.length) return;
    const chosen = fields.find((field) => !["radio", "checkbox"].includes(field.type) || field.checked);
    block.hidden = !chosen || chosen.value !== value;
  });
}

document.addEventListener("change", (event) => {
  if (event.target.form && event.target.name) syncShown(event.target.form);
});
// A page brought back from history keeps the choices made on it.
window.addEventListener("pageshow", () => syncShown(document));
document.addEventListener("htmx:historyRestore", () => syncShown(document));

// An error box (`<field>-errors`, refreshed by the live checks) marks its field invalid or not.
function markInvalid() {
  document.querySelectorAll(".errors[id$='-errors']").forEach((box) => {
    const invalid = box.querySelector("p:not(.ok-text)") !== null;
    document.querySelectorAll(`[aria-describedby~="${box.id}"]`).forEach((field) => {
      if (!["INPUT", "SELECT", "TEXTAREA"].includes(field.tagName)) return;
      if (invalid) field.setAttribute("aria-invalid", "true");
      else field.removeAttribute("aria-invalid");
    });
    const wrap = box.closest(".field");
    if (wrap) wrap.classList.toggle("has-errors", invalid);
  });
}

// Focus after a swap: a wizard step or the edit form marks where focus goes with
// `data-swap-focus` (the step's heading, "Step 3 of 6: Binding", which a screen reader then
// reads). A field with `autofocus` keeps the focus htmx gave it; with errors, the error summary
// takes it (its links lead to the fields). Swaps with no mark (live panels, refreshes) leave
// focus where it is.
document.addEventListener("htmx:afterSettle", (event) => {
  syncShown(document);
  markInvalid();
  const root = event.target;
  if (!(root instanceof Element) || !root.isConnected) return;
  const mark = root.matches("[data-swap-focus]") ? root : root.querySelector("[data-swap-focus]");
  if (!mark) return;
  const autofocus = root.querySelector("[autofocus]");
  if (autofocus) {
    if (document.activeElement !== autofocus) autofocus.focus();
    return;
  }
  (root.querySelector(".error-summary") || mark).focus();
});

// An error summary's link moves focus to its field (a link to an id only scrolls there).
document.addEventListener("click", (event) => {
  const link = event.target.closest(".error-summary a[href^='#'], .errors-list a[href^='#']");
  if (!link) return;
  const target = document.getElementById(decodeURIComponent(link.hash.slice(1)));
  if (!target) return;
  const field = target.matches("input, select, textarea, button")
    ? target : target.querySelector("input:not([type=hidden]), select, textarea, button");
  if (!field) return;
  event.preventDefault();
  field.focus();
});

// "Copy" next to a key shown once (projects/tokens/key_once.html): hidden where the
// clipboard can't be written (then select the key and copy it by hand).
document.addEventListener("DOMContentLoaded", () => {
  if (!navigator.clipboard) return;
  document.querySelectorAll("button[data-copy]").forEach((button) => { button.hidden = false; });
});

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source) return;
  navigator.clipboard.writeText(source.textContent.trim()).then(() => {
    button.textContent = "Copied";
  });
});
