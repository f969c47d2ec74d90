// cairn serve: the little scripting the pages need. No external resources.
"use strict";

// Follow a job: poll its JSON until it is done, updating the page.
function followJob(el) {
  const id = el.dataset.job;
  const status = document.getElementById("job-status");
  const result = document.getElementById("job-result");
  const duration = document.getElementById("job-duration");
  const error = document.getElementById("job-error");
  const output = document.getElementById("job-output");
  const snap = document.getElementById("job-snapshot");
  const progress = document.getElementById("job-progress");

  function show(j) {
    status.textContent = j.status;
    status.className = "badge badge-" + j.status;
    result.textContent = j.result || "";
    result.className = "badge badge-" + (j.result || "none");
    duration.textContent = j.duration_seconds.toFixed(1) + "s";
    error.textContent = j.error || "";
    const atBottom = output.scrollTop + output.clientHeight >= output.scrollHeight - 4;
    output.textContent = j.output;
    if (atBottom) output.scrollTop = output.scrollHeight;
    if (j.snapshot_id && !snap.firstChild) {
      const a = document.createElement("a");
      a.href = "/snapshots/" + j.snapshot_id;
      a.id = "job-snapshot-link";
      const c = document.createElement("code");
      c.textContent = j.snapshot_id.slice(0, 8);
      a.appendChild(c);
      snap.appendChild(a);
    }
    progress.className = "progress " + (j.status === "done" ? "done" + (j.result === "success" ? "" : " failed") : "active");
    el.dataset.status = j.status;
  }

  async function poll() {
    try {
      const r = await fetch("/api/jobs/" + encodeURIComponent(id), { headers: { "Accept": "application/json" }, credentials: "same-origin" });
      if (r.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname); return; }
      if (r.ok) {
        const j = await r.json();
        show(j);
        if (j.status === "done") return;
      }
    } catch (e) {
      // The server may be restarting; keep trying.
    }
    setTimeout(poll, 1000);
  }
  if (el.dataset.status !== "done") {
    progress.className = "progress active";
    poll();
  } else {
    progress.className = "progress done" + (result.textContent === "success" ? "" : " failed");
  }
}

// Ask before submitting forms with a data-confirm button.
function confirmForms() {
  document.querySelectorAll("button.confirm").forEach(function (b) {
    b.form.addEventListener("submit", function (ev) {
      if (!window.confirm(b.dataset.confirm)) ev.preventDefault();
    });
  });
}

document.addEventListener("DOMContentLoaded", function () {
  const job = document.getElementById("job");
  if (job) followJob(job);
  confirmForms();
});
