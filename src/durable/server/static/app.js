// Durable UI: local times, in-place refresh of live regions, and actions through the JSON API.
"use strict";

function localTimes(root) {
  for (const t of root.querySelectorAll("time[datetime]")) {
    const d = new Date(t.getAttribute("datetime"));
    if (!isNaN(d)) { t.title = t.textContent; t.textContent = d.toLocaleString(); }
  }
}

function busy() {
  // Never swap content under a person typing in it.
  const a = document.activeElement;
  return a && a.closest && a.closest("#live, #runs") && /INPUT|TEXTAREA|SELECT/.test(a.tagName);
}

function refresh(region) {
  const every = Number(region.dataset.every || 2000);
  const load = async () => {
    try {
      const r = await fetch(region.dataset.src, { credentials: "same-origin" });
      if (!r.ok) return;
      // What the reader expanded (an operation's input and output) stays expanded.
      const open = [...region.querySelectorAll("details[open][id]")].map((d) => d.id);
      region.innerHTML = await r.text();
      for (const id of open) { const d = document.getElementById(id); if (d) d.open = true; }
      localTimes(region);
      const head = region.querySelector("[data-status]");
      // The run ended: reload the whole page, whose actions depend on its status.
      if (region.dataset.status && head && head.dataset.status !== region.dataset.status) location.reload();
    } catch (e) { /* the server restarting: try again next tick */ }
  };
  const tick = async () => {
    if (!document.hidden && !busy()) await load();
    if (!region.dataset.status || region.dataset.status === "RUNNING") setTimeout(tick, every);
  };
  region.addEventListener("refresh", load);  // e.g. right after starting a run
  setTimeout(tick, every);
}

function parseJson(text, what) {
  if (!text.trim()) return undefined;
  try { return JSON.parse(text); } catch (e) { throw new Error(what + " is not valid JSON: " + e.message); }
}

function bodyFor(form, kind, verb) {
  const f = (n) => (form.elements[n] ? form.elements[n].value : "");
  if (kind === "start") {
    const b = { workflow: f("workflow") };
    const input = parseJson(f("input"), "Input");
    if (input !== undefined) b.input = input;
    if (f("id").trim()) b.id = f("id").trim();
    return b;
  }
  if (kind === "signal") return { name: f("name"), payload: parseJson(f("payload"), "Payload") ?? null };
  if (kind === "callback") {
    if (verb === "fail") return { message: f("payload") || "failed from the web UI" };
    return { payload: parseJson(f("payload"), "Payload") ?? null };
  }
  if (kind === "terminate") {
    const b = { children: f("children") || "terminate" };
    if (f("reason").trim()) b.reason = f("reason").trim();
    return b;
  }
  if (kind === "rerun") {
    const b = { from_step: f("from_step") };
    const input = parseJson(f("input"), "Input");
    if (input !== undefined) b.input = input;
    return b;
  }
  return {};
}

async function act(form, submitter) {
  const out = form.querySelector(".result");
  const kind = form.dataset.kind;
  const verb = submitter && submitter.value;
  if (form.dataset.confirm && !confirm(form.dataset.confirm)) return;
  out.className = "result"; out.textContent = "…";
  try {
    const body = bodyFor(form, kind, verb);
    let url = form.dataset.api;
    if (kind === "callback") url = url.replace("{id}", encodeURIComponent(form.elements.callback_id.value.trim())).replace("{verb}", verb);
    const method = form.dataset.method || "POST";
    const r = await fetch(url, { method: method, credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: method === "DELETE" ? undefined : JSON.stringify(body) });
    const data = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error((data.error && data.error.message) || ("HTTP " + r.status));
    out.className = "result ok";
    if (kind === "start" || kind === "rerun") {
      const link = document.createElement("a");
      link.href = "/runs/" + encodeURIComponent(data.run_id); link.textContent = data.run_id;
      out.textContent = (kind === "rerun" ? "Rerun started: " : (data.created === false ? "Already exists: " : "Started: "));
      out.appendChild(link);
      if (kind === "rerun") location.href = link.href;
      const runs = document.getElementById("runs");
      if (runs) runs.dispatchEvent(new Event("refresh"));
    } else {
      out.textContent = data.message || "Done";
      if (kind === "cancel" || form.dataset.then === "reload") setTimeout(() => location.reload(), 600);
      else if (form.dataset.then) setTimeout(() => { location.href = form.dataset.then; }, 600);
    }
  } catch (e) {
    out.className = "result err"; out.textContent = e.message;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes(document);
  for (const region of document.querySelectorAll("[data-src]")) refresh(region);
  for (const form of document.querySelectorAll("form.action")) {
    form.addEventListener("submit", (ev) => { ev.preventDefault(); act(form, ev.submitter); });
  }
  document.addEventListener("click", (ev) => {
    const b = ev.target.closest("button.fill");
    if (!b) return;
    const target = document.getElementById(b.dataset.signal ? "signal-name" : "callback-id");
    if (target) { target.value = b.dataset.signal || b.dataset.callback; target.closest("form").querySelector("textarea").focus(); }
  });
});
