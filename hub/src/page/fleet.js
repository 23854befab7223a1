// The fleet page: reads /api/nodes every few seconds, filters, sorts and pages the nodes in the
// browser (10,000 nodes are a few megabytes of JSON; only one page of rows is in the DOM), and
// keeps the last-push ages live between refreshes. The admin token, once entered, lives in
// sessionStorage (gone when the tab closes) and goes out only as an Authorization header.
// Every value from the hub is written with textContent: node names and rejection messages come
// from the nodes themselves.
"use strict";

const TOKEN_KEY = "fleetgate.adminToken";
const PAGE_SIZE = 100;
const REFRESH_MS = 5000;
const STATE_ORDER = { up: 0, stale: 1, removed: 2 };

let fleet = null; // the latest /api/nodes answer
let clockOffset = 0; // hub clock minus this browser's clock, seconds
let shown = []; // nodes after filter and sort
let sortKey = "node";
let sortDir = 1;
let page = 0;
let detailNode = null;
let refreshing = false;

const $ = (id) => document.getElementById(id);

function hubNow() {
  return Date.now() / 1000 + clockOffset;
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

function setStatus(text, kind) {
  const el = $("status");
  el.textContent = text;
  el.className = kind || "";
}

async function api(path, options) {
  const opts = Object.assign({ cache: "no-store" }, options || {});
  const headers = Object.assign({}, opts.headers || {});
  const t = token();
  if (t) headers["Authorization"] = "Bearer " + t;
  opts.headers = headers;
  const resp = await fetch(path, opts);
  if (resp.status === 401 && t) {
    sessionStorage.removeItem(TOKEN_KEY);
    showAdmin();
    throw new Error("the admin token was refused and has been forgotten");
  }
  if (!resp.ok) {
    const text = (await resp.text()).trim();
    throw new Error(resp.status + ": " + text);
  }
  return resp.json();
}

function fmtAge(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 120) return s + "s";
  if (s < 7200) return Math.floor(s / 60) + "m";
  if (s < 172800) return Math.floor(s / 3600) + "h";
  return Math.floor(s / 86400) + "d";
}

function fmtInt(n) {
  return n.toLocaleString("en-US");
}

function labelsText(n) {
  return Object.keys(n.labels)
    .filter((k) => k !== "node_type")
    .map((k) => k + "=" + n.labels[k])
    .join(", ");
}

// A quarantine is answered with 200 (the rest of the push is served); its message says so.
function refusalText(r) {
  return r.status === 200 ? r.message : r.status + ": " + r.message;
}

function valuesRatio(n) {
  if (n.full_pushes === undefined) return null;
  const all = n.full_pushes + n.values_pushes;
  return all > 0 ? n.values_pushes / all : null;
}

function prepare(n) {
  n._type = n.labels.node_type || "";
  n._labels = labelsText(n);
  n._ratio = valuesRatio(n);
  n._search = [n.node, n.state, n._type]
    .concat(Object.keys(n.labels).map((k) => k + "=" + n.labels[k]))
    .join(" ")
    .toLowerCase();
}

const SORT_VALUE = {
  state: (n) => STATE_ORDER[n.state],
  node: (n) => n.node,
  type: (n) => n._type,
  labels: (n) => n._labels,
  last_push: (n) => (n.last_push == null ? -1 : n.last_push),
  series: (n) => n.series,
  ratio: (n) => (n._ratio == null ? -1 : n._ratio),
  rejection: (n) => (n.last_rejection ? n.last_rejection.at : 0),
  quarantined: (n) => n.quarantined_families,
};

// Filters and sorts the whole fleet, then shows the current page.
function applyView() {
  if (!fleet) return;
  const words = $("filter").value.toLowerCase().split(/\s+/).filter(Boolean);
  const state = $("state-filter").value;
  const key = SORT_VALUE[sortKey];
  // Each node's sort value is computed once, not once per comparison.
  const keyed = [];
  for (const n of fleet.nodes) {
    if ((!state || n.state === state) && words.every((w) => n._search.includes(w))) {
      keyed.push([key(n), n]);
    }
  }
  keyed.sort((a, b) => {
    if (a[0] < b[0]) return -sortDir;
    if (a[0] > b[0]) return sortDir;
    return a[1].node < b[1].node ? -1 : a[1].node > b[1].node ? 1 : 0;
  });
  shown = keyed.map((k) => k[1]);
  showPage();
}

// Shows the current page of the filtered, sorted nodes.
function showPage() {
  const pages = Math.max(1, Math.ceil(shown.length / PAGE_SIZE));
  page = Math.max(0, Math.min(page, pages - 1));
  renderRows();
  const first = shown.length ? page * PAGE_SIZE + 1 : 0;
  const last = Math.min(shown.length, (page + 1) * PAGE_SIZE);
  $("page-info").textContent =
    first + "–" + last + " of " + fmtInt(shown.length) +
    (shown.length !== fleet.nodes.length ? " (" + fmtInt(fleet.nodes.length) + " in all)" : "");
  $("prev").disabled = page === 0;
  $("next").disabled = page >= pages - 1;
  for (const th of document.querySelectorAll("#nodes th[data-key]")) {
    th.classList.toggle("sorted", th.dataset.key === sortKey);
    th.classList.toggle("desc", th.dataset.key === sortKey && sortDir < 0);
  }
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function actionButton(td, label, cls, handler) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.className = cls;
  b.addEventListener("click", (e) => {
    e.stopPropagation();
    handler();
  });
  td.appendChild(b);
}

function renderRows() {
  const body = $("rows");
  const frag = document.createDocumentFragment();
  const now = hubNow();
  const admin = fleet.admin;
  for (const n of shown.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE)) {
    const tr = document.createElement("tr");
    tr.dataset.node = n.node;
    tr.className = "state-" + n.state;
    const st = cell(tr, "", "state");
    const pill = document.createElement("span");
    pill.className = "pill " + n.state;
    pill.textContent = n.state;
    st.appendChild(pill);
    const name = cell(tr, "", "node");
    const link = document.createElement("button");
    link.type = "button";
    link.className = "link";
    link.textContent = n.node;
    link.addEventListener("click", () => openDetail(n.node));
    name.appendChild(link);
    cell(tr, n._type || "–", "type");
    cell(tr, n._labels, "labels");
    const age = cell(tr, n.last_push == null ? "never" : fmtAge(now - n.last_push) + " ago", "num age");
    if (n.last_push != null) age.dataset.t = n.last_push;
    cell(tr, fmtInt(n.series), "num series");
    cell(tr, n._ratio == null ? "–" : Math.round(n._ratio * 100) + "%", "num ratio");
    const rej = n.last_rejection;
    const rc = cell(tr, rej ? refusalText(rej) : "–", rej ? "bad rejection" : "rejection");
    if (rej) rc.title = rej.message;
    cell(tr, n.quarantined_families ? String(n.quarantined_families) : "–", "num quarantined");
    const actions = cell(tr, "", "actions");
    if (admin && n.state === "removed") {
      actionButton(actions, "Re-admit", "readmit", () => readmit(n.node));
    } else if (admin) {
      actionButton(actions, "Remove", "remove", () => remove(n.node));
    }
    frag.appendChild(tr);
  }
  body.replaceChildren(frag);
}

function tickAges() {
  const now = hubNow();
  for (const td of document.querySelectorAll("td.age[data-t]")) {
    td.textContent = fmtAge(now - Number(td.dataset.t)) + " ago";
  }
}

function renderSummary() {
  const s = fleet.summary;
  $("sum-up").textContent = fmtInt(s.up);
  $("sum-stale").textContent = fmtInt(s.stale);
  $("sum-removed").textContent = fmtInt(s.removed);
  $("sum-series").textContent = fmtInt(s.series);
  $("sum-rate").textContent = s.pushes_per_second.toFixed(1);
}

async function refresh() {
  if (refreshing) return;
  refreshing = true;
  try {
    const view = await api("/api/nodes");
    clockOffset = view.now - Date.now() / 1000;
    view.nodes.forEach(prepare);
    fleet = view;
    showAdmin();
    renderSummary();
    applyView();
    if (detailNode) await loadDetail(detailNode);
    setStatus("updated " + new Date().toLocaleTimeString(), "ok");
    document.body.dataset.loaded = "true";
  } catch (e) {
    setStatus("cannot load the fleet: " + e.message, "error");
  } finally {
    refreshing = false;
  }
}

function showAdmin() {
  const on = Boolean(token()) && (!fleet || fleet.admin);
  $("admin-form").hidden = on;
  $("admin-on").hidden = !on;
  $("public-note").hidden = on;
  document.body.classList.toggle("is-admin", on);
}

async function post(path, node) {
  return api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ node: node }),
  });
}

async function remove(node) {
  if (!confirm("Remove node " + node + "? Its push token is revoked and its series leave /metrics at once.")) return;
  try {
    await post("/remove_node", node);
    setStatus("node " + node + " removed", "ok");
  } catch (e) {
    setStatus("removing " + node + " failed: " + e.message, "error");
  }
  await refresh();
}

async function readmit(node) {
  if (!confirm("Re-admit node " + node + "? It may enroll again with the enrollment token.")) return;
  try {
    await post("/readmit_node", node);
    setStatus("node " + node + " re-admitted: restart its agent and it enrolls again", "ok");
  } catch (e) {
    setStatus("re-admitting " + node + " failed: " + e.message, "error");
  }
  await refresh();
}

function fact(dl, name, value) {
  const dt = document.createElement("dt");
  dt.textContent = name;
  const dd = document.createElement("dd");
  dd.textContent = value;
  dl.append(dt, dd);
}

async function loadDetail(node) {
  let d;
  try {
    d = await api("/api/nodes/" + encodeURIComponent(node));
  } catch (e) {
    setStatus("cannot load node " + node + ": " + e.message, "error");
    return;
  }
  if (detailNode !== node) return;
  $("detail-title").textContent = d.node;
  const dl = $("detail-facts");
  dl.replaceChildren();
  fact(dl, "state", d.state);
  fact(dl, "labels", Object.keys(d.labels).map((k) => k + "=" + d.labels[k]).join(", ") || "–");
  fact(dl, "last push", d.last_push == null ? "never" : fmtAge(hubNow() - d.last_push) + " ago");
  fact(dl, "series", fmtInt(d.series));
  if (d.hostname) fact(dl, "hostname", d.hostname);
  if (d.ip) fact(dl, "ip", d.ip);
  if (d.full_pushes !== undefined) {
    fact(dl, "pushes", d.full_pushes + " full, " + d.values_pushes + " values only");
  }
  if (d.last_rejection) {
    const r = d.last_rejection;
    fact(dl, "last rejection", fmtAge(hubNow() - r.at) + " ago, " + refusalText(r));
  }
  if (d.quarantined && d.quarantined.length) fact(dl, "quarantined", d.quarantined.join(", "));
  const families = d.families.slice().sort((a, b) => b.series - a.series || (a.name < b.name ? -1 : 1));
  $("detail-count").textContent = "(" + families.length + ")";
  const body = document.querySelector("#families tbody");
  const frag = document.createDocumentFragment();
  for (const f of families) {
    const tr = document.createElement("tr");
    cell(tr, f.name, "family");
    cell(tr, f.type, "");
    cell(tr, fmtInt(f.series), "num");
    frag.appendChild(tr);
  }
  body.replaceChildren(frag);
  $("detail").hidden = false;
}

function openDetail(node) {
  detailNode = node;
  loadDetail(node);
}

function init() {
  $("admin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const t = $("admin-token").value.trim();
    $("admin-token").value = "";
    if (!t) return;
    sessionStorage.setItem(TOKEN_KEY, t);
    refresh();
  });
  $("admin-logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    fleet = null;
    showAdmin();
    refresh();
  });
  let typing = null;
  $("filter").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      page = 0;
      applyView();
    }, 120);
  });
  $("state-filter").addEventListener("change", () => {
    page = 0;
    applyView();
  });
  $("prev").addEventListener("click", () => {
    page -= 1;
    showPage();
  });
  $("next").addEventListener("click", () => {
    page += 1;
    showPage();
  });
  for (const th of document.querySelectorAll("#nodes th[data-key]")) {
    th.addEventListener("click", () => {
      const key = th.dataset.key;
      sortDir = key === sortKey ? -sortDir : 1;
      sortKey = key;
      applyView();
    });
  }
  $("detail-close").addEventListener("click", () => {
    detailNode = null;
    $("detail").hidden = true;
  });
  showAdmin();
  refreshLoop();
  setInterval(tickAges, 1000);
}

// Refreshes every REFRESH_MS, or five times as long as a refresh took when that is longer, so
// a very large fleet never keeps the browser busy.
async function refreshLoop() {
  const started = performance.now();
  await refresh();
  setTimeout(refreshLoop, Math.max(REFRESH_MS, 5 * (performance.now() - started)));
}

document.addEventListener("DOMContentLoaded", init);
