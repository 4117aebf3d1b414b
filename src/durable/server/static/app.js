// Durable UI: local times, the runs list's and the run page's live updates (only what changed),
// the run page's tree, history and operation values, and actions through the JSON API.
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

// The runs list: only what changed since the last update comes back (rows keyed by run id),
// each replacing its row or, for a new run, going on top; never the whole table again.
function rowsOf(html) {
  const t = document.createElement("template");
  t.innerHTML = "<table><tbody>" + html + "</tbody></table>";
  return [...t.content.querySelectorAll("tr[data-id]")];
}

function liveRuns(region) {
  const every = Number(region.dataset.every || 2500);
  const body = () => region.querySelector("table.runs tbody");
  const load = async () => {
    const shown = [...body().querySelectorAll("tr[data-id]")].map((tr) => tr.dataset.id);
    const url = region.dataset.live + "&since=" + region.dataset.asOf + "&shown=" + encodeURIComponent(shown.join(","));
    try {
      const r = await fetch(url.replace("changes?&", "changes?"), { credentials: "same-origin" });
      if (!r.ok) return;
      const asOf = r.headers.get("X-As-Of");
      const rows = rowsOf(await r.text());
      const fresh = [];
      for (const row of rows) {
        const old = body().querySelector(`tr[data-id="${CSS.escape(row.dataset.id)}"]`);
        if (old) {
          row.dataset.depth = old.dataset.depth; row.className = old.className; row.style.cssText = old.style.cssText;
          const toggle = old.querySelector("button.kids[aria-expanded=true]");
          if (toggle) { const mine = row.querySelector("button.kids"); if (mine) { mine.setAttribute("aria-expanded", "true"); mine.textContent = toggle.textContent; } }
          old.replaceWith(row);
        } else { fresh.push(row); }
      }
      for (const row of fresh.reverse()) { row.classList.add("fresh"); body().prepend(row); }
      if (rows.length) { const none = body().querySelector("tr.none"); if (none) none.remove(); }
      localTimes(region);
      if (asOf) region.dataset.asOf = asOf;
    } catch (e) { /* the server restarting: try again next tick */ }
  };
  const tick = async () => {
    if (!document.hidden) await load();
    setTimeout(tick, every);
  };
  region.addEventListener("refresh", load);  // e.g. right after starting a run
  setTimeout(tick, every);
}

async function toggleChildren(button) {
  const row = button.closest("tr");
  const depth = Number(row.dataset.depth || 0) + 1;
  const open = button.getAttribute("aria-expanded") === "true";
  const below = [];
  for (let next = row.nextElementSibling; next && Number(next.dataset.depth || 0) >= depth; next = next.nextElementSibling) below.push(next);
  if (open) {
    below.forEach((tr) => tr.remove());
    button.setAttribute("aria-expanded", "false"); button.textContent = button.textContent.replace("▾", "▸");
    return;
  }
  const r = await fetch("/ui/runs/children?parent=" + encodeURIComponent(button.dataset.parent) + "&depth=" + depth, { credentials: "same-origin" });
  if (!r.ok) return;
  const rows = rowsOf(await r.text());
  row.after(...rows);
  localTimes(row.parentElement);
  button.setAttribute("aria-expanded", "true"); button.textContent = button.textContent.replace("▸", "▾");
}

async function fetchText(url) {
  const r = await fetch(url, { credentials: "same-origin" });
  if (!r.ok) throw new Error("HTTP " + r.status);
  return r.text();
}

function markExpanded(button, open) {
  button.setAttribute("aria-expanded", open ? "true" : "false");
  button.textContent = open ? "\u25BE" : "\u25B8";
}

async function toggle(button) {
  // Children come from the server a page at a time, on the first expand only.
  const item = button.closest("li.op");
  const kids = item.querySelector(":scope > ul.kids");
  const surfaced = item.querySelector(":scope > ul.surfaced");
  const open = button.getAttribute("aria-expanded") !== "true";
  if (open && !kids.dataset.loaded) {
    kids.innerHTML = await fetchText(button.dataset.kidsSrc);
    kids.dataset.loaded = "1";
  }
  kids.hidden = !open;
  if (surfaced) surfaced.hidden = open;  // the failed ones lead the full list
  markExpanded(button, open);
}

async function loadHistory(url) {
  const html = await fetchText(url);
  document.getElementById("history").outerHTML = html;
}

function applyUpdate(live, u) {
  live.dataset.after = u.after;
  // The run ended: reload the whole page, whose actions depend on its status.
  if (u.status && u.status !== live.dataset.status) { location.reload(); return; }
  if (u.head) { live.innerHTML = u.head; localTimes(live); }
  const history = document.getElementById("history");
  if (u.events && history && history.dataset.tail === "1") {
    const body = history.querySelector("tbody");
    const empty = body.querySelector("tr.empty");
    if (empty) empty.remove();
    body.insertAdjacentHTML("beforeend", u.events);
  }
  for (const op of u.ops) {
    const lines = document.querySelectorAll('[data-line="' + CSS.escape(op.id) + '"]');
    for (const line of lines) {
      const kids = line.parentElement.querySelector(":scope > ul.kids");
      line.outerHTML = op.line;
      const button = kids && kids.parentElement.querySelector(":scope > .op-line button.expand");
      if (button) markExpanded(button, !kids.hidden);
    }
    if (lines.length) continue;
    const list = document.querySelector('ul[data-kids="' + CSS.escape(op.parent) + '"]');
    if (list && (op.parent === "" || list.dataset.loaded)) list.insertAdjacentHTML("beforeend", op.item);
  }
}

function follow(live) {
  // Ask for what happened after the newest event shown; an idle run answers in a few bytes.
  const every = Number(live.dataset.every || 1500);
  const poll = async () => {
    for (let more = true; more;) {
      const r = await fetch(live.dataset.updates + "?after=" + live.dataset.after, { credentials: "same-origin" });
      if (!r.ok) return;
      const u = await r.json();
      applyUpdate(live, u);
      more = u.more;
    }
  };
  const tick = async () => {
    try { if (!document.hidden && !busy()) await poll(); } catch (e) { /* the server restarting: try again next tick */ }
    if (live.dataset.status === "RUNNING") setTimeout(tick, every);
  };
  if (live.dataset.status === "RUNNING") setTimeout(tick, every);
}

const STREAM_ENTRIES_SHOWN = 500;

function openStream(section, name) {
  // One EventSource per stream: it resumes by itself from the last id after a disconnect.
  const panel = document.createElement("div");
  panel.className = "stream";
  panel.dataset.stream = name;
  const title = document.createElement("h3");
  title.textContent = name + " ";
  const state = document.createElement("span");
  state.className = "muted stream-state";
  state.textContent = "following";
  title.append(state);
  const list = document.createElement("ol");
  list.className = "stream-entries";
  panel.append(title, list);
  section.querySelector(".stream-list").append(panel);
  section.hidden = false;
  const add = (text, cls, entry) => {
    const li = document.createElement("li");
    li.value = entry.offset;
    li.textContent = text;
    if (cls) li.className = cls;
    if (entry.attempt_key) li.dataset.attempt = entry.attempt_key;
    list.append(li);
    while (list.children.length > STREAM_ENTRIES_SHOWN) list.firstElementChild.remove();
  };
  // With the values of attempts already known dead, struck out at their marker: the page
  // shows the same, whether it was open while they streamed or opened after.
  const source = new EventSource(section.dataset.streams + "/" + encodeURIComponent(name) + "?with_abandoned=true");
  source.addEventListener("value", (ev) => {
    const entry = JSON.parse(ev.data);
    add(JSON.stringify(entry.value), "", entry);
  });
  source.addEventListener("abandoned", (ev) => {
    const entry = JSON.parse(ev.data);
    for (const li of list.querySelectorAll("li[data-attempt]")) {
      if (li.dataset.attempt === entry.attempt_key) { li.classList.add("abandoned"); li.title = "abandoned attempt"; }
    }
    add("attempt " + entry.attempt + " of step " + entry.operation_id.slice(0, 8) + " abandoned", "marker", {offset: entry.offset});
  });
  source.addEventListener("closed", () => { state.textContent = "closed"; });
  source.addEventListener("end", () => {
    source.close();
    if (state.textContent !== "closed") state.textContent = "ended with the run";
  });
}

function followStreams(section) {
  // New streams appear while the run runs: look for them as often as the run page updates.
  const every = Number(section.dataset.every || 1500);
  const seen = new Set();
  const look = async () => {
    try {
      const r = await fetch(section.dataset.streams, { credentials: "same-origin" });
      if (r.ok) {
        for (const s of (await r.json()).streams) {
          if (!seen.has(s.name)) { seen.add(s.name); openStream(section, s.name); }
        }
      }
    } catch (e) { /* the server restarting: look again next time */ }
    if (section.dataset.status === "RUNNING") setTimeout(look, every);
  };
  look();
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
    const attributes = parseJson(f("attributes"), "Attributes");
    if (attributes !== undefined) b.attributes = attributes;
    const queued = form.querySelector("fieldset.queued");
    if (queued && !queued.hidden) {  // only a workflow on a queue takes them
      if (f("priority").trim()) b.priority = Number(f("priority"));  // the input allows integers only
      if (f("dedup_id").trim()) b.dedup_id = f("dedup_id").trim();
    }
    return b;
  }
  if (kind === "kv-set") {
    const value = parseJson(f("value"), "Value");
    if (value === undefined) throw new Error("Value is empty: give JSON, e.g. 10, \"text\" or {\"on\": true}");
    return { value: value };
  }
  if (kind === "backfill") return { from: f("from").trim(), to: f("to").trim() };
  if (kind === "publish") return parseJson(f("data"), "Data") ?? null;
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
    if (url.includes("{key}")) {
      const key = form.elements.key.value;
      if (!key) throw new Error("Key is empty");
      url = url.replace("{key}", key.split("/").map(encodeURIComponent).join("/"));
    }
    if (kind === "publish") {
      url = url.replace("{topic}", encodeURIComponent(form.elements.topic.value.trim()));
      const eventId = form.elements.event_id.value.trim();
      if (eventId) url += "?id=" + encodeURIComponent(eventId);
    }
    const method = form.dataset.method || "POST";
    const r = await fetch(url, { method: method, credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: method === "DELETE" ? undefined : JSON.stringify(body) });
    const data = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error((data.error && data.error.message) || ("HTTP " + r.status));
    out.className = "result ok";
    if (kind === "start" || kind === "rerun" || kind === "trigger") {
      const link = document.createElement("a");
      link.href = "/runs/" + encodeURIComponent(data.run_id); link.textContent = data.run_id;
      out.textContent = (kind === "rerun" ? "Rerun started: " : (data.created === false ? "Already exists: " : "Started: "));
      out.appendChild(link);
      if (data.status === "ENQUEUED") out.append(" (ENQUEUED #" + data.position + " on " + data.queue + ")");
      if (kind === "rerun") location.href = link.href;
      const runs = document.getElementById("runs");
      if (runs) runs.dispatchEvent(new Event("refresh"));
    } else if (kind === "publish") {
      out.textContent = (data.created ? "Published #" : "Published already as #") + data.seq;
      setTimeout(() => location.reload(), 600);
    } else if (kind === "backfill") {
      const made = data.filter((r) => r.created).length;
      out.textContent = made + " run(s) started, " + (data.length - made) + " tick(s) had one already";
    } else {
      out.textContent = data.message || "Done";
      if (kind === "cancel" || form.dataset.then === "reload") setTimeout(() => location.reload(), 600);
      else if (form.dataset.then) setTimeout(() => { location.href = form.dataset.then; }, 600);
    }
  } catch (e) {
    out.className = "result err"; out.textContent = e.message;
  }
}

function queueFields(form) {
  // The start form's priority and dedup id fields, shown for a workflow on a queue only.
  const select = form.elements.workflow, queued = form.querySelector("fieldset.queued");
  if (!select || !queued) return;
  const show = () => {
    const queue = select.selectedOptions[0] && select.selectedOptions[0].dataset.queue;
    queued.hidden = !queue;
    queued.querySelector(".queue-name").textContent = queue || "";
  };
  select.addEventListener("change", show);
  show();
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes(document);
  const start = document.getElementById("start-form");
  if (start) queueFields(start);
  for (const region of document.querySelectorAll("[data-live]")) liveRuns(region);
  for (const live of document.querySelectorAll("[data-updates]")) follow(live);
  for (const section of document.querySelectorAll("[data-streams]")) followStreams(section);
  for (const lazy of document.querySelectorAll("[data-lazy]")) {
    fetchText(lazy.dataset.lazy).then((html) => { lazy.innerHTML = html; }, (e) => { lazy.textContent = e.message; });
  }
  document.addEventListener("submit", (ev) => {
    const form = ev.target.closest("form.history-search");
    if (!form) return;
    ev.preventDefault();
    loadHistory(form.dataset.srcBase + "?q=" + encodeURIComponent(form.elements.hq.value));
  });
  // An operation's input and output are fetched when a reader first opens them: the page
  // itself carries none, so it stays small however many operations the run has.
  document.addEventListener("toggle", (ev) => {
    const d = ev.target;
    if (!(d instanceof HTMLDetailsElement) || !d.open || !d.dataset.valuesSrc || d.dataset.loaded) return;
    d.dataset.loaded = "1";
    fetchText(d.dataset.valuesSrc).then((html) => { d.insertAdjacentHTML("beforeend", html); },
                                        (e) => { d.insertAdjacentText("beforeend", e.message); });
  }, true);
  for (const form of document.querySelectorAll("form.action")) {
    form.addEventListener("submit", (ev) => { ev.preventDefault(); act(form, ev.submitter); });
  }
  document.addEventListener("click", (ev) => {
    const kids = ev.target.closest("button.kids");
    if (kids) { toggleChildren(kids); return; }
    const expand = ev.target.closest("button.expand");
    if (expand) { toggle(expand); return; }
    const more = ev.target.closest("button[data-more-src]");
    if (more) {
      fetchText(more.dataset.moreSrc).then((html) => { more.closest("li.more").outerHTML = html; });
      return;
    }
    const pager = ev.target.closest("#history a[data-page]");
    if (pager) { ev.preventDefault(); loadHistory(pager.dataset.page); return; }
    const b = ev.target.closest("button.fill");
    if (!b) return;
    const target = document.getElementById(b.dataset.signal ? "signal-name" : "callback-id");
    if (target) { target.value = b.dataset.signal || b.dataset.callback; target.closest("form").querySelector("textarea").focus(); }
  });
});
