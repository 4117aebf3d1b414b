// "Act on all matching" on the runs list (templates/runs.html): counts first through a dry run
// of POST /api/bulk with the list's own filters, acts only once the count is confirmed, then
// follows the job (GET /api/bulk/{id}) until it is done.
"use strict";

async function bulkCall(url, body) {
  const r = await fetch(url, { method: body ? "POST" : "GET", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "Accept": "application/json" },
    body: body ? JSON.stringify(body) : undefined });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error((data.error && data.error.message) || ("HTTP " + r.status));
  return data;
}

function bulkBody(form, dryRun) {
  const body = { ...JSON.parse(form.dataset.filter), action: form.elements.action.value, dry_run: dryRun };
  const step = form.elements.from_step.value.trim();
  if (body.action === "rerun") body.from_step = step;
  return body;
}

async function bulkFollow(out, jobId) {
  for (;;) {
    const job = await bulkCall("/api/bulk/" + encodeURIComponent(jobId));
    out.textContent = `Job ${job.job_id}: ${job.action} applied to ${job.acted}, skipped ${job.skipped}` +
      (job.status === "DONE" ? " (done)" : " …");
    if (job.status === "DONE") return;
    await new Promise((done) => setTimeout(done, 500));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("bulk-form");
  if (!form) return;
  const out = form.querySelector(".result");
  const confirmButton = form.querySelector("button.confirm");
  form.elements.action.addEventListener("change", () => { confirmButton.hidden = true; });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const acting = ev.submitter === confirmButton;
    out.className = "result"; out.textContent = "…";
    try {
      const job = await bulkCall("/api/bulk", bulkBody(form, !acting));
      out.className = "result ok";
      if (!acting) {
        out.textContent = `${job.matched} runs match; ${job.action} would apply to ${job.acted}` +
          ` (${job.skipped} are past it)`;
        confirmButton.textContent = `${job.action} ${job.acted} runs`;
        confirmButton.hidden = job.acted === 0;
        return;
      }
      confirmButton.hidden = true;
      await bulkFollow(out, job.job_id);
      const runs = document.getElementById("runs");
      if (runs) runs.dispatchEvent(new Event("refresh"));
    } catch (e) {
      out.className = "result err"; out.textContent = e.message;
    }
  });
});
