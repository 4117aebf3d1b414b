// Pause, resume and edit a run from its page (templates/_run_controls_pause.html), through the
// JSON API; the page reloads after a change, since its controls depend on the run's state.
"use strict";

function operateBody(form, verb) {
  if (form.dataset.kind !== "edit") return {};
  const text = form.elements.value.value;
  if (verb === "fail") return { message: text || "failed from the web UI" };
  if (!text.trim()) return { result: null };
  try { return { result: JSON.parse(text) }; } catch (e) { throw new Error("The result is not valid JSON: " + e.message); }
}

async function operate(form, submitter) {
  const out = form.querySelector(".result");
  const verb = submitter && submitter.value;
  out.className = "result"; out.textContent = "…";
  try {
    let url = form.dataset.api;
    if (form.dataset.kind === "edit") url = url.replace("{op}", encodeURIComponent(form.elements.operation.value)).replace("{verb}", verb);
    const r = await fetch(url, { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify(operateBody(form, verb)) });
    const data = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error((data.error && data.error.message) || ("HTTP " + r.status));
    out.className = "result ok"; out.textContent = data.message || "Done";
    setTimeout(() => location.reload(), 600);
  } catch (e) {
    out.className = "result err"; out.textContent = e.message;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const form of document.querySelectorAll("form.operate")) {
    form.addEventListener("submit", (ev) => { ev.preventDefault(); operate(form, ev.submitter); });
  }
});
