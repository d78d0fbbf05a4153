/* Hoist: the little behaviour the pages need besides htmx. A static file, since the
   Content-Security-Policy allows no inline script (and htmx runs with allowEval off,
   so no hx-on attributes either). Listeners sit on the document, so they also serve
   the fragments htmx swaps in later. */

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
