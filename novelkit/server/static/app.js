// novelkit dashboard: plain JS, relative URLs (works under /proxy/PORT/), key in sessionStorage.
"use strict";

const KEY_STORAGE = "novelkit.key";
const $ = (id) => document.getElementById(id);
const state = { key: null, scope: "read", project: null, ws: null, lastSeq: 0, statusTimer: null,
                reconnect: null, preview: "", previewOf: null, previewEnded: false, jobState: null };

function apiUrl(path) { return new URL(path, document.baseURI).toString(); }

async function api(path, options = {}) {
  const headers = { "Authorization": "Bearer " + state.key, ...(options.headers || {}) };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(apiUrl(path), { ...options, headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body) });
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (response.status === 401) { logout("That key was not accepted."); throw new Error("unauthorized"); }
  if (!response.ok) {
    const message = data && data.error ? data.error.message : response.statusText;
    throw new Error(message);
  }
  return data;
}

function logout(message) {
  sessionStorage.removeItem(KEY_STORAGE);
  state.key = null;
  state.project = null;
  if (state.ws) { state.ws.onclose = null; state.ws.close(); state.ws = null; }
  clearTimeout(state.reconnect);
  // nothing the last key could see or do stays on the page
  document.body.classList.add("read-only");
  $("projects").replaceChildren();
  $("stages").tBodies[0].replaceChildren();
  $("project").hidden = true;
  $("main").hidden = true;
  $("forget-key").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("whoami").textContent = "";
}

async function login(key) {
  state.key = key;
  const me = await api("api/v2/whoami");
  sessionStorage.setItem(KEY_STORAGE, key);
  state.scope = me.scope;
  document.body.classList.toggle("read-only", me.scope !== "write");
  $("whoami").textContent = `${me.scope} key${me.project ? " for " + me.project : ""}`;
  $("login").hidden = true;
  $("main").hidden = false;
  $("forget-key").hidden = false;
  const list = await api("api/v2/projects");
  const ul = $("projects");
  ul.replaceChildren();
  for (const p of list.projects) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = p.id;
    button.title = p.title;
    button.dataset.project = p.id;
    button.addEventListener("click", () => selectProject(p.id));
    li.append(button);
    ul.append(li);
  }
  // a link from the sweep page (…/#RUN) opens that run's project
  const wanted = decodeURIComponent(location.hash.slice(1));
  const first = list.projects.find((p) => p.id === wanted) || list.projects[0];
  if (first) selectProject(first.id);
}

async function selectProject(id) {
  state.project = id;
  state.lastSeq = 0;
  showPreview(null, "");
  $("events").replaceChildren();
  for (const b of document.querySelectorAll("#projects button")) {
    b.classList.toggle("active", b.dataset.project === id);
  }
  const project = await api(`api/v2/projects/${encodeURIComponent(id)}`);
  $("project").hidden = false;
  $("project-title").textContent = project.title;
  // who writes the book; the offline backend's placeholder prose is flagged
  $("backend").textContent = `backend: ${project.writer.label}`;
  $("backend").classList.toggle("placeholder", project.writer.placeholder);
  const select = $("stage-select");
  select.replaceChildren();
  for (const s of project.status.stages) {
    const option = document.createElement("option");
    option.value = s.name;
    option.textContent = `${s.number}. ${s.name}`;
    select.append(option);
  }
  renderStatus(project.status);
  connect();
  loadReport();
}

// The scorecard: figures and issues as JSON, each chart fetched with the key (an <img> URL
// could not carry it) and shown as a data: URL (what the page's img-src allows).
function dataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

const CHARTS = ["words", "presence", "relationships", "arc", "repetition"];
async function loadReport() {
  const id = state.project;
  const base = `api/v2/projects/${encodeURIComponent(id)}/report`;
  const box = $("report-charts");
  $("report-summary").textContent = "scoring…";
  try {
    const card = await api(base);
    if (state.project !== id) return;
    const parts = [`${card.total_words.toLocaleString()} words in ${card.chapters.length} chapters`,
      `${card.issues.length} issue${card.issues.length === 1 ? "" : "s"}`];
    if (card.placeholder) parts.push("placeholder prose from the offline backend");
    if (card.problems.length) parts.push(card.problems.join("; "));
    $("report-summary").textContent = parts.join(" · ");
    const list = $("report-issues");
    list.replaceChildren();
    for (const issue of card.issues.slice(0, 20)) {
      const li = document.createElement("li");
      li.textContent = `${issue.kind}: ${issue.message}`;
      list.append(li);
    }
    box.replaceChildren();
    for (const name of CHARTS) {
      const response = await fetch(apiUrl(`${base}/charts/${name}`),
        { headers: { "Authorization": "Bearer " + state.key } });
      if (!response.ok || state.project !== id) continue;
      const img = document.createElement("img");
      img.alt = name;
      img.dataset.chart = name;
      img.src = await dataUrl(await response.blob());
      box.append(img);
    }
  } catch (e) {
    $("report-summary").textContent = e.message;
  }
}

function connect() {
  if (state.ws) { state.ws.onclose = null; state.ws.close(); }
  clearTimeout(state.reconnect);
  const url = new URL(`api/v2/projects/${encodeURIComponent(state.project)}/ws`, document.baseURI);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  if (state.lastSeq) url.searchParams.set("since", String(state.lastSeq));
  const ws = new WebSocket(url, ["novelkit.v1", "novelkit.key." + state.key]);
  state.ws = ws;
  ws.onopen = () => { $("connection").textContent = "live"; };
  ws.onmessage = (event) => onMessage(JSON.parse(event.data));
  ws.onclose = () => {
    $("connection").textContent = "reconnecting…";
    state.reconnect = setTimeout(() => { if (state.key && state.project) connect(); }, 1000);
  };
}

function requestStatus() {
  if (state.statusTimer) return;
  state.statusTimer = setTimeout(() => {
    state.statusTimer = null;
    if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify({ type: "get_status" }));
  }, 250);
}

function onMessage(msg) {
  if (typeof msg.seq === "number") state.lastSeq = Math.max(state.lastSeq, msg.seq);
  switch (msg.type) {
    case "status_update": renderStatus(msg.status); break;
    case "resync":
      state.lastSeq = msg.last_seq;
      renderStatus(msg.status);
      logEvent(`resync (${msg.reason})`);
      break;
    case "delta": {
      // one unit's text at a time: another unit's words wait until the shown unit ends
      const of = unitKey(msg.stage, msg.unit);
      if (state.previewOf && of !== state.previewOf && !state.previewEnded) break;
      showPreview(of, (of === state.previewOf ? state.preview : "") + msg.text);
      break;
    }
    case "unit":
      if (unitKey(msg.stage, msg.unit) === state.previewOf && msg.state !== "running") {
        state.previewEnded = true;
      }
      logEvent(`unit ${msg.stage || ""} ${msg.unit || ""} ${msg.state || ""}`);
      break;
    case "pong": case "error": break;
    case "job":
      state.jobState = msg.state;
      $("job-state").textContent = msg.state;
      $("job-state").className = "badge " + msg.state;
      logEvent(`job ${msg.state}${msg.message ? ": " + msg.message : ""}`);
      requestStatus();
      if (msg.state === "succeeded") loadReport();
      break;
    case "stage":
      setStageState(msg.stage, msg.state);
      logEvent(`stage ${msg.stage} ${msg.state}`);
      requestStatus();
      break;
    case "progress":
      $("overall-bar").style.width = `${Math.round(msg.overall * 100)}%`;
      $("progress-text").textContent = `${Math.round(msg.overall * 100)}%`;
      requestStatus();
      break;
    default:
      if (msg.type === "unit" || msg.type === "export" || msg.type === "retry" || msg.type === "log") {
        logEvent(`${msg.type} ${msg.stage || msg.format || ""} ${msg.unit || ""} ${msg.state || msg.message || ""}`);
      }
  }
}

function logEvent(text) {
  const li = document.createElement("li");
  li.textContent = text;
  const list = $("events");
  list.prepend(li);
  while (list.children.length > 60) list.lastChild.remove();
}

function setStageState(name, value) {
  const row = document.querySelector(`#stages tr[data-stage="${CSS.escape(name)}"]`);
  if (!row) return;
  row.className = "stage-row " + value;
  row.querySelector(".stage-state").textContent = value;
}

function renderStatus(s) {
  state.jobState = s.state || null;
  $("job-state").textContent = s.state || "no job";
  $("job-state").className = "badge " + (s.state || "");
  $("overall-bar").style.width = `${Math.round(s.progress * 100)}%`;
  $("progress-text").textContent = `${Math.round(s.progress * 100)}%`;
  $("tokens").textContent = s.tokens.toLocaleString();
  $("cost").textContent = s.cost.toFixed(4);
  $("current").textContent = s.stage ? `${s.stage} ${s.unit || ""}` : "";
  $("message").textContent = s.retry || s.message || "";
  $("error").textContent = s.error || "";
  if (s.preview) {
    const of = unitKey(s.preview_stage, s.preview_unit);
    // the server's unit, unless this page follows another one still streaming
    if (of === state.previewOf ? s.preview.length > state.preview.length
        : !state.previewOf || state.previewEnded) {
      showPreview(of, s.preview);
    }
  }
  const body = $("stages").tBodies[0];
  for (const stage of s.stages) {
    let row = body.querySelector(`tr[data-stage="${CSS.escape(stage.name)}"]`);
    if (!row) {
      row = document.createElement("tr");
      row.dataset.stage = stage.name;
      for (const cls of ["stage-number", "stage-name", "stage-state", "stage-units", "stage-bar", "stage-tokens"]) {
        const td = document.createElement("td");
        td.className = cls;
        row.append(td);
      }
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.append(document.createElement("div"));
      row.querySelector(".stage-bar").append(bar);
      body.append(row);
    }
    row.className = "stage-row " + stage.state;
    row.querySelector(".stage-number").textContent = stage.number;
    row.querySelector(".stage-name").textContent = stage.name;
    row.querySelector(".stage-name").title = stage.description;
    row.querySelector(".stage-state").textContent = stage.state;
    row.querySelector(".stage-units").textContent = `${stage.done}/${stage.total}`;
    row.querySelector(".stage-bar .bar > div").style.width =
      `${stage.total ? Math.round(100 * stage.done / stage.total) : 0}%`;
    row.querySelector(".stage-tokens").textContent = stage.tokens.toLocaleString();
  }
  const active = ["queued", "running", "pausing", "cancelling"].includes(s.state);
  $("btn-start").disabled = active;
  // the job's own table of legal actions (JobStatus.actions), never a copy of it here
  const actions = s.actions || [];
  $("btn-pause").disabled = !actions.includes("pause");
  $("btn-pause-now").disabled = !actions.includes("pause_now");
  $("btn-resume").disabled = !actions.includes("resume");
  $("btn-cancel").disabled = !actions.includes("cancel");
  $("btn-run-stage").disabled = active;
}

function unitKey(stage, unit) { return stage ? `${stage}/${unit || "all"}` : null; }

// The preview shows one unit's text, labelled with its stage and chapter.
function showPreview(of, text) {
  if (of !== state.previewOf) state.previewEnded = false;
  state.previewOf = of;
  state.preview = text.slice(-4000);
  $("preview").textContent = state.preview;
  $("preview").scrollTop = $("preview").scrollHeight;
  let label = "";
  if (of) {
    const [stage, unit] = of.split("/");
    const chapter = /^ch0*(\d+)$/.exec(unit);
    label = unit === "all" ? stage : `${stage} · ${chapter ? "chapter " + chapter[1] : unit}`;
  }
  $("preview-label").textContent = label ? `(${label})` : "";
}

// The REST answer carries only the new state; the old one is the state this page showed.
function describeControl(before, data) {
  if (!data.changed) return data.message || `already ${data.state}`;
  const moved = before === data.state ? data.state : `${before} → ${data.state}`;
  return data.message && data.message !== data.state ? `${moved} (${data.message})` : moved;
}

async function control(path, body) {
  const result = $("control-result");
  const before = state.jobState || "no job";
  try {
    const data = await api(`api/v2/projects/${encodeURIComponent(state.project)}/${path}`,
      { method: "POST", body: body || {} });
    result.textContent = describeControl(before, data);
    result.className = "muted";
    requestStatus();
  } catch (e) {
    result.textContent = e.message;
    result.className = "error";
  }
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("key-input").value.trim();
  $("key-input").value = "";
  login(key).catch((e) => { if (e.message !== "unauthorized") logout(e.message); });
});
$("forget-key").addEventListener("click", () => logout(""));
$("btn-report").addEventListener("click", () => loadReport());
$("btn-start").addEventListener("click", () => control("generate"));
$("btn-pause").addEventListener("click", () => control("generate/pause", { now: false }));
$("btn-pause-now").addEventListener("click", () => control("generate/pause", { now: true }));
$("btn-resume").addEventListener("click", () => control("generate/resume"));
$("btn-cancel").addEventListener("click", () => control("generate/cancel"));
$("run-stage").addEventListener("submit", (event) => {
  event.preventDefault();
  const raw = $("stage-chapters").value.trim();
  const body = { force: $("stage-force").checked };
  if (raw) body.chapters = raw.split(",").map((x) => parseInt(x.trim(), 10)).filter((x) => !Number.isNaN(x));
  control(`generate/stages/${encodeURIComponent($("stage-select").value)}`, body);
});

const saved = sessionStorage.getItem(KEY_STORAGE);
if (saved) login(saved).catch(() => logout("")); else logout("");
