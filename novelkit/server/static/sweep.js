// novelkit sweep page: the same view as SweepPanel, polled once a second; key in sessionStorage.
"use strict";

const KEY_STORAGE = "novelkit.key";
const MAX_ROWS = 200;
const ORDER = { running: 0, pausing: 0, cancelling: 0, failed: 1, queued: 2, paused: 3,
                interrupted: 3, pending: 4, cancelled: 5, succeeded: 6 };
const LEGAL = { pause: ["running"], resume: ["paused", "failed"],
                cancel: ["running", "pausing", "paused", "failed"] };
const $ = (id) => document.getElementById(id);
const page = { key: null, scope: "read", timer: null };

async function api(path, options = {}) {
  const headers = { "Authorization": "Bearer " + page.key };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(new URL(path, document.baseURI).toString(), { ...options, headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body) });
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (response.status === 401) { showLogin("That key was not accepted."); throw new Error("unauthorized"); }
  if (!response.ok) throw new Error(data && data.error ? data.error.message : response.statusText);
  return data;
}

function showLogin(message) {
  sessionStorage.removeItem(KEY_STORAGE);
  page.key = null;
  clearTimeout(page.timer);
  $("sweep").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
}

function cell(text) { const td = document.createElement("td"); td.textContent = text; return td; }

function render(sweep) {
  const state = sweep.state || "not started";
  $("sweep-root").textContent = sweep.root;
  $("sweep-state").textContent = state;
  $("sweep-state").className = "badge " + state.replace(" ", "-");
  $("sweep-bar").style.width = (sweep.progress * 100).toFixed(1) + "%";
  const counts = Object.entries(sweep.counts).map(([s, n]) => `${n} ${s}`).join(" · ");
  $("sweep-summary").textContent = `${Math.round(sweep.progress * 100)}% · ${sweep.runs.length} runs: ` +
    `${counts} · ${sweep.tokens.toLocaleString()} tokens · cost ${sweep.cost.toFixed(4)}`;
  $("sweep-message").textContent = sweep.message || "";
  for (const action of Object.keys(LEGAL)) {
    $("sweep-" + action).disabled = page.scope !== "write" || !LEGAL[action].includes(state);
  }
  const rows = [...sweep.runs].sort((a, b) => (ORDER[a.state] ?? 4) - (ORDER[b.state] ?? 4));
  const body = $("sweep-runs").tBodies[0];
  body.replaceChildren(...rows.slice(0, MAX_ROWS).map((run) => {
    const tr = document.createElement("tr");
    const name = document.createElement("td");
    const link = document.createElement("a");
    link.href = "./#" + encodeURIComponent(run.name);  // the run is a project of this sidecar
    link.textContent = run.name;
    name.append(link);
    const params = Object.entries(run.params).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ");
    tr.append(name, cell(params), cell(run.state + (run.error ? ": " + run.error : "")),
      cell(Math.round(run.progress * 100) + "%"), cell(run.tokens.toLocaleString()),
      cell(run.cost.toFixed(4)), cell(run.elapsed.toFixed(1) + " s"));
    return tr;
  }));
  $("sweep-more").textContent = rows.length > MAX_ROWS ? `… ${rows.length - MAX_ROWS} more runs` : "";
}

async function refresh() {
  try {
    render(await api("api/v2/sweep"));
    $("sweep-error").textContent = "";
  } catch (e) {
    if (page.key) $("sweep-error").textContent = e.message;
  }
  if (page.key) page.timer = setTimeout(refresh, 1000);
}

async function login(key) {
  page.key = key;
  const me = await api("api/v2/whoami");
  sessionStorage.setItem(KEY_STORAGE, key);
  page.scope = me.scope;
  document.body.classList.toggle("read-only", me.scope !== "write");
  $("whoami").textContent = `${me.scope} key`;
  $("login").hidden = true;
  $("sweep").hidden = false;
  refresh();
}

for (const action of Object.keys(LEGAL)) {
  $("sweep-" + action).addEventListener("click", async () => {
    try {
      const result = await api(`api/v2/sweep/${action}`, { method: "POST", body: {} });
      $("sweep-message").textContent = result.message;
    } catch (e) { $("sweep-error").textContent = e.message; }
  });
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  login($("key-input").value).catch((e) => { $("login-error").textContent = e.message; });
});

const saved = sessionStorage.getItem(KEY_STORAGE);
if (saved) login(saved).catch(() => showLogin()); else showLogin();
