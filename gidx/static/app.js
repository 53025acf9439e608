// gidx page: upload a BED file, show the ranked records. Plain JS, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
let chosen = null; // the File to upload

function token() { return sessionStorage.getItem("gidx-token") || ""; }

class ApiError extends Error {}

// fetch + JSON, with the token when there is one; errors become one line
async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (token()) headers.set("Authorization", "Bearer " + token());
  let resp;
  try {
    resp = await fetch(path, { ...options, headers });
  } catch (e) {
    throw new ApiError("cannot reach the server (" + e.message + ")");
  }
  let body = null;
  try { body = await resp.json(); } catch (e) { /* not JSON */ }
  if (resp.status === 401) {
    $("token-box").hidden = false;
    $("token").focus();
  }
  if (!resp.ok) {
    throw new ApiError((body && body.error) || ("HTTP " + resp.status + " " + resp.statusText));
  }
  return body;
}

function showError(msg) {
  $("error").textContent = msg;
  $("error").hidden = !msg;
}

async function refreshStatus() {
  try {
    const h = await api("/health");
    $("status").textContent = h.records.toLocaleString() + " records · " + h.index + " · gidx " + h.version;
    $("token-box").hidden = true;
  } catch (e) {
    $("status").textContent = e.message;
  }
}

function setFile(file) {
  chosen = file || null;
  $("file-name").textContent = chosen ? chosen.name + " (" + chosen.size.toLocaleString() + " bytes)" : "no file chosen";
}

function fmt(x, digits) {
  if (x === null || x === undefined) return "–";
  return Number(x).toFixed(digits);
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function apiLink(href, text) {
  const a = document.createElement("a");
  a.href = href;
  a.textContent = text;
  a.className = "api-link";
  return a;
}

function render(res) {
  const summary = $("summary");
  summary.textContent = "";
  const n = res.results.length;
  const b = document.createElement("strong");
  b.textContent = res.file;
  summary.append(b, ": " + n + " result" + (n === 1 ? "" : "s") + " · " + res.mode + " · " +
                 res.elapsed_ms.toFixed(1) + " ms");
  if (res.query_id !== null) {
    const a = apiLink("/queries/" + res.query_id, "query #" + res.query_id);
    a.id = "query-link";
    summary.append(" · stored as ", a);
  }
  const ul = $("warnings");
  ul.textContent = "";
  for (const w of res.warnings) {
    const li = document.createElement("li");
    li.textContent = "Warning: " + w;
    ul.appendChild(li);
  }
  const tbody = $("results-table").querySelector("tbody");
  tbody.textContent = "";
  for (const r of res.results) {
    const tr = document.createElement("tr");
    cell(tr, r.rank, "num");
    const td = cell(tr, "", "record");
    td.appendChild(apiLink("/records/" + r.record.split("/").map(encodeURIComponent).join("/"), r.record));
    cell(tr, fmt(r.exact_score, 4), "num");
    cell(tr, fmt(r.score, 4), "num");
    cell(tr, Number(r.n_intervals).toLocaleString(), "num");
    tbody.appendChild(tr);
  }
  if (!n) {
    const tr = document.createElement("tr");
    cell(tr, "No records to compare with: the index is empty.").colSpan = 5;
    tbody.appendChild(tr);
  }
  $("results").hidden = false;
}

async function submitQuery(ev) {
  ev.preventDefault();
  showError("");
  if (!chosen) { showError("Choose or drop a BED file first."); return; }
  const params = new URLSearchParams({ k: $("k").value || "20" });
  const mode = document.querySelector("input[name=mode]:checked").value;
  if (mode === "rerank") params.set("rerank", $("rerank").value || "200");
  if (mode === "vector") params.set("no_rerank", "true");
  if (mode === "exact") params.set("exact", "true");
  const form = new FormData();
  form.append("file", chosen, chosen.name);
  const button = $("submit");
  button.disabled = true;
  button.textContent = "Searching…";
  try {
    const res = await api("/query?" + params, { method: "POST", body: form });
    res.file = chosen.name;
    render(res);
    $("detail").hidden = true;
  } catch (e) {
    showError(e.message);
  } finally {
    button.disabled = false;
    button.textContent = "Search";
  }
}

// links to /queries/{id} and /records/{name}: shown here (with the token), not navigated to
async function openLink(ev) {
  const a = ev.target.closest("a.api-link");
  if (!a || ev.button !== 0 || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.altKey) return;
  ev.preventDefault();
  const path = a.getAttribute("href");
  try {
    const body = await api(path);
    $("detail-title").textContent = "GET " + decodeURIComponent(path);
    $("detail-json").textContent = JSON.stringify(body, null, 2);
    $("detail").hidden = false;
    $("detail").scrollIntoView({ behavior: "smooth" });
    showError("");
  } catch (e) {
    showError(e.message);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("file").addEventListener("change", (e) => setFile(e.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) setFile(e.dataTransfer.files[0]);
  });
  $("query-form").addEventListener("submit", submitQuery);
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem("gidx-token", $("token").value.trim());
    $("token").value = "";
    showError("");
    refreshStatus();
  });
  document.body.addEventListener("click", openLink);
  refreshStatus();
});
