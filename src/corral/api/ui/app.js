// corral's dashboard: plain ES modules, no build step, everything live through the watch API.
//
// A page lists one kind a page at a time (server-side paging with limit/continue and the API's own
// label and field selectors), then keeps that page current from one watch stream (NDJSON over
// fetch) that starts at the list's resourceVersion: rows change in place, new objects join the
// first page, deleted ones leave. No polling. The token lives in sessionStorage (this tab only)
// and goes in the Authorization header, never in a URL.

const PAGE = 50;
const $ = (sel, root = document) => root.querySelector(sel);
const h = (tag, attrs = {}, ...children) => {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) el.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return el;
};

// --- talking to the API ---------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `HTTP ${status}`);
    this.status = status;
  }
}

const token = () => sessionStorage.getItem("corral-token") || "";

async function api(path, { method = "GET", body, contentType = "application/json", signal } = {}) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["Content-Type"] = contentType;
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { error: { message: text } }; }
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

// One watch stream: calls onEvent for each event until the signal aborts; resumes after a cut.
async function watch(path, params, rv, onEvent, signal) {
  while (!signal.aborted) {
    const q = new URLSearchParams({ ...params, watch: "1", resourceVersion: rv });
    try {
      const r = await fetch(`${path}?${q}`, { headers: { Authorization: `Bearer ${token()}` }, signal });
      if (r.status === 410) return "gone";
      if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => null));
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let nl;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (!line.trim()) continue;
          const ev = JSON.parse(line);
          if (ev.type === "ERROR") return "gone";
          rv = ev.object?.metadata?.resourceVersion || rv;
          if (ev.type !== "BOOKMARK") onEvent(ev);
        }
      }
    } catch (e) {
      if (signal.aborted) return "stopped";
      if (e instanceof ApiError && e.status === 401) { signOut("Your token is no longer accepted; sign in again."); return "stopped"; }
    }
    await new Promise((res) => setTimeout(res, 1000));
  }
  return "stopped";
}

function status(text) { $("#live").textContent = text; }

// --- formatting ------------------------------------------------------------------------------

function age(ts) {
  if (!ts) return "";
  const s = Math.max(0, (Date.now() - Date.parse(ts)) / 1000);
  if (s < 120) return `${Math.floor(s)}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}
const cond = (obj, type) => (obj.status?.conditions || []).find((c) => c.type === type);
const phase = (obj) => h("span", { class: `phase-${obj.status?.phase || "Pending"}` }, obj.status?.phase || "Pending");
const nsLink = (kind, o, text) => h("a", { href: `#/${kind}/${o.metadata.namespace}/${o.metadata.name}` }, text ?? o.metadata.name);
function cpu(q) { if (!q) return 0; return q.endsWith("m") ? parseFloat(q) : parseFloat(q) * 1000; }
function mem(q) {
  if (!q) return 0;
  const units = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, k: 1e3, M: 1e6, G: 1e9 };
  const m = /^([0-9.]+)([A-Za-z]*)$/.exec(q);
  return m ? parseFloat(m[1]) * (units[m[2]] || 1) : 0;
}
function usage(used, total, fmt) {
  const pct = total ? Math.min(100, Math.round((used / total) * 100)) : 0;
  return h("span", { title: `${fmt(used)} of ${fmt(total)}` },
    h("span", { class: "barbox", role: "img", "aria-label": `${pct}% allocated` }, h("span", { class: "bar", style: `width:${pct}%` })),
    `${pct}%`);
}

// --- the kinds the pages show -----------------------------------------------------------------

const KINDS = {
  nodes: {
    title: "Nodes", path: () => "/nodes", namespaced: false,
    columns: ["Name", "Ready", "Pod CIDR", "CPU allocated", "Memory allocated", "Containers", "Taints", "Age"],
    row: (o, extra) => {
      const ready = cond(o, "Ready");
      const a = extra.allocated?.get(o.metadata.name);
      const alloc = o.status?.allocatable || {};
      return [o.metadata.name,
        h("span", { class: `ready-${ready?.status || "Unknown"}` }, ready?.status === "True" ? "Ready" : (ready ? "NotReady" : "Unknown")),
        o.spec?.podCidr || "",
        a ? usage(a.cpu, cpu(alloc.cpu), (v) => `${Math.round(v)}m`) : "…",
        a ? usage(a.mem, mem(alloc.memory), (v) => `${Math.round(v / 2 ** 20)}Mi`) : "…",
        a ? `${a.count}` : "…",
        (o.spec?.taints || []).map((t) => `${t.key}=${t.value || ""}:${t.effect}`).join(", ") + (o.spec?.unschedulable ? " (cordoned)" : ""),
        age(o.metadata.creationTimestamp)];
    },
  },
  containers: {
    title: "Containers", path: (ns) => ns ? `/namespaces/${ns}/containers` : "/containers", namespaced: true,
    filters: { phase: ["", "Pending", "Scheduled", "Creating", "Running", "Succeeded", "Failed", "Unknown"] },
    columns: ["Name", "Namespace", "Phase", "Node", "IP", "Restarts", "Ready", "Age"],
    row: (o) => [nsLink("containers", o), o.metadata.namespace, phase(o), o.status?.node || o.spec?.node || "",
      o.status?.ip || "", h("span", { class: "num" }, o.status?.restartCount || 0),
      o.spec?.readinessProbe ? (o.status?.ready ? "yes" : "no") : "—", age(o.metadata.creationTimestamp)],
  },
  deployments: {
    title: "Deployments", path: (ns) => ns ? `/namespaces/${ns}/deployments` : "/deployments", namespaced: true,
    columns: ["Name", "Namespace", "Ready", "Up to date", "Available", "Revision", "Age"],
    row: (o) => [nsLink("deployments", o), o.metadata.namespace, `${o.status?.readyReplicas || 0}/${o.spec?.replicas ?? 1}`,
      o.status?.updatedReplicas || 0, o.status?.availableReplicas || 0, o.status?.revision || "", age(o.metadata.creationTimestamp)],
  },
  services: {
    title: "Services", path: (ns) => ns ? `/namespaces/${ns}/services` : "/services", namespaced: true,
    columns: ["Name", "Namespace", "Type", "Cluster IP", "Ports", "Age"],
    row: (o) => [o.metadata.name, o.metadata.namespace, o.spec?.type || "ClusterIP", o.spec?.clusterIP || o.spec?.clusterIp || "",
      (o.spec?.ports || []).map((p) => `${p.port}${p.nodePort ? ":" + p.nodePort : ""}/${p.protocol || "TCP"}`).join(", "),
      age(o.metadata.creationTimestamp)],
  },
  jobs: {
    title: "Jobs", path: (ns) => ns ? `/namespaces/${ns}/jobs` : "/jobs", namespaced: true,
    columns: ["Name", "Namespace", "Completions", "Active", "Failed", "Status", "Age"],
    row: (o) => [o.metadata.name, o.metadata.namespace, `${o.status?.succeeded || 0}/${o.spec?.completions ?? 1}`,
      o.status?.active || 0, o.status?.failed || 0,
      (o.status?.conditions || []).filter((c) => c.status === "True").map((c) => c.type).join(", ") || "Running",
      age(o.metadata.creationTimestamp)],
  },
  events: {
    title: "Events", path: (ns) => ns ? `/namespaces/${ns}/events` : "/events", namespaced: true, newestFirst: true,
    columns: ["Last seen", "Type", "Reason", "Object", "Message"],
    row: (o) => [age(o.spec?.lastTimestamp || o.metadata.creationTimestamp), o.spec?.type || "Normal", o.spec?.reason || "",
      `${(o.spec?.involvedObject?.kind || "").toLowerCase()}/${o.spec?.involvedObject?.name || ""}`, o.spec?.message || ""],
  },
};

// --- a live, paged list ------------------------------------------------------------------------

const when = (o) => o.spec?.lastTimestamp || o.metadata?.creationTimestamp || "";

// Events are kept in key order, not time order: read them a page of 500 at a time (at most
// NEWEST_SCAN; Events expire, so there are rarely more), then keep the newest PAGE.
const NEWEST_SCAN = 5000;
async function newest(path, params) {
  let items = [], cont = "", rv = "";
  do {
    const q = new URLSearchParams({ ...params, limit: "500" });
    if (cont) q.set("continue", cont);
    const page = await api(`${path}?${q}`);
    items = items.concat(page.items);
    cont = page.metadata?.continue || "";
    rv = rv || page.metadata.resourceVersion;
  } while (cont && items.length < NEWEST_SCAN);
  items.sort((a, b) => when(b).localeCompare(when(a)));
  // oldest of the page first: rendering prepends, so the newest ends on top
  return { items: items.slice(0, PAGE).reverse(), total: items.length, metadata: { resourceVersion: rv } };
}

let stopCurrent = () => {};

function key(o) { return `${o.metadata.namespace || ""}/${o.metadata.name}`; }

async function listPage(kindName, params) {
  const kind = KINDS[kindName];
  const view = $("#view");
  const abort = new AbortController();
  stopCurrent = () => abort.abort();
  const namespaces = kind.namespaced ? await api("/namespaces").then((l) => l.items.map((n) => n.metadata.name)).catch(() => []) : [];
  const state = { ns: params.get("ns") || "", selector: params.get("l") || "", phase: params.get("phase") || "",
                  continueToken: "", cur: "", stack: [], rows: new Map(), extra: {} };
  const tbody = h("tbody");
  const table = h("table", { "aria-label": kind.title },
    h("thead", {}, h("tr", {}, kind.columns.map((c) => h("th", { scope: "col" }, c)))), tbody);
  const count = h("span", { role: "status" });
  const next = h("button", { type: "button", class: "secondary", onclick: () => { state.stack.push(state.cur); load(state.continueToken); } }, "Next page");
  const prev = h("button", { type: "button", class: "secondary", onclick: () => load(state.stack.pop() ?? "") }, "Previous page");
  const filters = h("form", { class: "filters", role: "search", onsubmit: (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    const f = new FormData(e.target);
    for (const [k, v] of f.entries()) if (v) q.set(k, v);
    location.hash = `#/${kindName}?${q}`;
  } },
    kind.namespaced ? [h("label", { for: "f-ns" }, "Namespace"),
      h("select", { id: "f-ns", name: "ns" }, h("option", { value: "" }, "all"),
        namespaces.map((n) => h("option", { value: n, selected: n === state.ns }, n)))] : [],
    h("label", { for: "f-l" }, "Labels"),
    h("input", { id: "f-l", name: "l", value: state.selector, placeholder: "app=web", size: 16 }),
    kind.filters?.phase ? [h("label", { for: "f-phase" }, "Phase"),
      h("select", { id: "f-phase", name: "phase" }, kind.filters.phase.map((p) => h("option", { value: p, selected: p === state.phase }, p || "any")))] : [],
    h("button", { type: "submit" }, "Filter"));
  view.replaceChildren(h("h2", {}, kind.title), filters, table, h("div", { class: "pager" }, prev, next, count));

  const query = () => {
    const q = {};
    if (state.selector) q.labelSelector = state.selector;
    if (state.phase) q.fieldSelector = `status.phase=${state.phase}`;
    return q;
  };
  const render = (o) => {
    const tr = h("tr", { "data-key": key(o) }, kind.row(o, state.extra).map((c) => h("td", {}, c)));
    const old = state.rows.get(key(o));
    if (old) old.tr.replaceWith(tr);
    else if (kind.newestFirst) tbody.prepend(tr);
    else tbody.append(tr);
    state.rows.set(key(o), { obj: o, tr });
  };
  const refreshNodes = async () => {  // capacity vs allocated: each visible node's containers, from the API's cache
    if (kindName !== "nodes") return;
    const allocated = new Map();
    await Promise.all([...state.rows.values()].map(async ({ obj }) => {
      const l = await api(`/containers?${new URLSearchParams({ fieldSelector: `spec.node=${obj.metadata.name}`, resourceVersion: "0" })}`);
      const live = l.items.filter((c) => !["Succeeded", "Failed"].includes(c.status?.phase));
      allocated.set(obj.metadata.name, {
        count: live.length,
        cpu: live.reduce((s, c) => s + cpu(c.spec?.resources?.requests?.cpu), 0),
        mem: live.reduce((s, c) => s + mem(c.spec?.resources?.requests?.memory), 0),
      });
    }));
    state.extra.allocated = allocated;
    for (const { obj } of [...state.rows.values()]) render(obj);
  };

  let watching = null;
  async function load(cont) {
    state.cur = cont;
    const q = new URLSearchParams({ ...query(), limit: String(PAGE) });
    if (cont) q.set("continue", cont);
    let list;
    try {
      list = kind.newestFirst ? await newest(kind.path(state.ns), query()) : await api(`${kind.path(state.ns)}?${q}`);
    } catch (e) {
      view.replaceChildren(h("h2", {}, kind.title), h("p", { class: "error", role: "alert" },
        e.status === 404 ? `This server has no ${kind.title.toLowerCase()}.` : e.message));
      return;
    }
    tbody.replaceChildren();
    state.rows.clear();
    const items = list.items;  // newest(): oldest of the page first, so prepending leaves the newest on top
    for (const o of items) render(o);
    state.continueToken = list.metadata?.continue || "";
    next.disabled = !state.continueToken;
    prev.disabled = !cont;
    count.textContent = kind.newestFirst ? `the newest ${list.items.length} of ${list.total}`
      : `${list.items.length} shown${state.continueToken ? ", more on the next pages" : ""}`;
    refreshNodes().catch(() => {});
    if (watching) watching.abort();
    watching = new AbortController();
    abort.signal.addEventListener("abort", () => watching.abort());
    const first = !cont;
    watch(kind.path(state.ns), query(), list.metadata.resourceVersion, (ev) => {
      const k = key(ev.object);
      if (ev.type === "DELETED") {
        const row = state.rows.get(k);
        if (row) { row.tr.remove(); state.rows.delete(k); }
      } else if (state.rows.has(k) || (first && state.rows.size < PAGE) || (first && kind.newestFirst)) {
        render(ev.object);
        if (kind.newestFirst && state.rows.size > PAGE) {
          const last = tbody.lastElementChild;
          state.rows.delete(last.dataset.key);
          last.remove();
        }
      }
      status(`live · updated ${new Date().toLocaleTimeString()}`);
    }, watching.signal).then((why) => { if (why === "gone" && !abort.signal.aborted) load(cont); });
  }
  await load("");
}

// --- one container: its status, why it waits, its logs ------------------------------------------

async function containerPage(ns, name) {
  const view = $("#view");
  const abort = new AbortController();
  stopCurrent = () => abort.abort();
  const dl = h("dl");
  const why = h("p", { role: "status" });
  const logs = h("pre", { class: "logs", tabindex: "0", "aria-label": `Logs of ${name}` });
  view.replaceChildren(h("h2", {}, `Container ${ns}/${name}`), h("section", { class: "detail" }, dl, why),
    h("h2", {}, "Logs"), logs);
  const show = (o) => {
    const s = o.status || {};
    const rows = [["Phase", phase(o)], ["Node", s.node || o.spec?.node || "—"], ["IP", s.ip || "—"], ["Image", o.spec?.image],
      ["Restarts", s.restartCount || 0], ["Ready", s.ready ? "yes" : "no"], ["Started", s.startedAt || "—"],
      ["Probes", [o.spec?.livenessProbe ? "liveness" : "", o.spec?.readinessProbe ? "readiness" : ""].filter(Boolean).join(", ") || "none"]];
    dl.replaceChildren(...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    why.textContent = (s.phase || "Pending") === "Pending" && (s.reason || s.message)
      ? `Why it is not running: ${s.reason || ""}${s.message ? ": " + s.message : ""}` : (s.reason ? `${s.reason}: ${s.message || ""}` : "");
  };
  let obj;
  try { obj = await api(`/namespaces/${ns}/containers/${name}`); } catch (e) {
    view.replaceChildren(h("p", { class: "error", role: "alert" }, e.message)); return;
  }
  show(obj);
  watch(`/namespaces/${ns}/containers`, { fieldSelector: `metadata.name=${name}` }, obj.metadata.resourceVersion,
    (ev) => { if (ev.type !== "DELETED") show(ev.object); else why.textContent = "This container was deleted."; }, abort.signal);
  followLogs(ns, name, logs, abort.signal);
}

async function followLogs(ns, name, pre, signal) {
  while (!signal.aborted) {
    try {
      const r = await fetch(`/namespaces/${ns}/containers/${name}/logs?follow=1&tail=200`,
        { headers: { Authorization: `Bearer ${token()}` }, signal });
      if (!r.ok) {
        const body = await r.json().catch(() => null);
        pre.textContent = body?.error?.message || `no logs yet (HTTP ${r.status})`;
      } else {
        pre.textContent = "";
        const reader = r.body.getReader();
        const decoder = new TextDecoder();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
          pre.append(decoder.decode(value, { stream: true }));
          if (atEnd) pre.scrollTop = pre.scrollHeight;
        }
      }
    } catch { if (signal.aborted) return; }
    await new Promise((res) => setTimeout(res, 2000));
  }
}

// --- one deployment: rollout, scale, history, rollback --------------------------------------------

async function deploymentPage(ns, name) {
  const view = $("#view");
  const abort = new AbortController();
  stopCurrent = () => abort.abort();
  const dl = h("dl");
  const msg = h("p", { role: "status" });
  const replicas = h("input", { id: "replicas", type: "number", min: "0", required: true, size: 5 });
  const history = h("ul");
  const form = h("form", { class: "filters", onsubmit: async (e) => {
    e.preventDefault();
    try {
      await api(`/namespaces/${ns}/deployments/${name}`, { method: "PATCH", contentType: "application/merge-patch+json",
        body: { spec: { replicas: Number(replicas.value) } } });
      msg.textContent = `Scaled to ${replicas.value}.`;
    } catch (err) { msg.textContent = `Could not scale: ${err.message}`; }
  } }, h("label", { for: "replicas" }, "Replicas"), replicas, h("button", { type: "submit" }, "Scale"));
  const rollback = h("button", { type: "button", class: "secondary" }, "Roll back to the previous revision");
  view.replaceChildren(h("h2", {}, `Deployment ${ns}/${name}`), h("section", { class: "detail" }, dl), form,
    h("h2", {}, "Revisions"), history, rollback, msg);
  let current;
  const show = (d) => {
    current = d;
    const s = d.status || {};
    const progressing = cond(d, "Progressing");
    dl.replaceChildren(...[["Replicas wanted", d.spec?.replicas ?? 1], ["Ready", s.readyReplicas || 0],
      ["Up to date", s.updatedReplicas || 0], ["Available", s.availableReplicas || 0], ["Revision", s.revision || "—"],
      ["Rollout", progressing ? `${progressing.reason}: ${progressing.message}` : "—"]].flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    if (document.activeElement !== replicas) replicas.value = d.spec?.replicas ?? 1;
    let entries = [];
    try { entries = JSON.parse(d.metadata.annotations?.["corral.io/revision-history"] || "[]"); } catch { entries = []; }
    history.replaceChildren(...entries.map((e) => h("li", {}, `revision ${e.revision}: ${e.template?.spec?.image || ""}`)));
    rollback.disabled = entries.length < 2;
    rollback.onclick = async () => {
      const target = entries[entries.length - 2];
      try {
        await api(`/namespaces/${ns}/deployments/${name}`, { method: "PATCH", contentType: "application/json-patch+json",
          body: [{ op: "test", path: "/metadata/resourceVersion", value: current.metadata.resourceVersion },
                 { op: "replace", path: "/spec/template", value: target.template }] });
        msg.textContent = `Rolled back to revision ${target.revision}.`;
      } catch (err) { msg.textContent = `Could not roll back: ${err.message}`; }
    };
  };
  let d;
  try { d = await api(`/namespaces/${ns}/deployments/${name}`); } catch (e) {
    view.replaceChildren(h("p", { class: "error", role: "alert" }, e.message)); return;
  }
  show(d);
  watch(`/namespaces/${ns}/deployments`, { fieldSelector: `metadata.name=${name}` }, d.metadata.resourceVersion,
    (ev) => { if (ev.type !== "DELETED") show(ev.object); }, abort.signal);
}

// --- sign in and routing ------------------------------------------------------------------------

function signOut(message = "") {
  stopCurrent();
  sessionStorage.removeItem("corral-token");
  $("#nav").hidden = true;
  $("#signout").hidden = true;
  $("#view").replaceChildren();
  $("#signin").hidden = false;
  $("#signin-error").textContent = message;
  $("#token").focus();
}

async function route() {
  stopCurrent();
  if (!token()) { signOut(); return; }
  $("#signin").hidden = true;
  $("#nav").hidden = false;
  $("#signout").hidden = false;
  const [path, query] = (location.hash.slice(1) || "/containers").split("?");
  const parts = path.split("/").filter(Boolean);
  for (const a of document.querySelectorAll("nav a")) {
    if (a.getAttribute("href") === `#/${parts[0]}`) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  try {
    if (parts[0] === "containers" && parts.length === 3) await containerPage(parts[1], parts[2]);
    else if (parts[0] === "deployments" && parts.length === 3) await deploymentPage(parts[1], parts[2]);
    else if (KINDS[parts[0]]) await listPage(parts[0], new URLSearchParams(query || ""));
    else location.hash = "#/containers";
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) signOut("The token was refused: " + e.message);
    else $("#view").replaceChildren(h("p", { class: "error", role: "alert" }, e.message));
  }
}

$("#signin-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const value = $("#token").value.trim();
  sessionStorage.setItem("corral-token", value);
  try {
    await api("/namespaces?limit=1");
  } catch (err) {
    signOut(err.status === 401 ? `The token was refused: ${err.message}` : `Cannot reach the API: ${err.message}`);
    return;
  }
  $("#token").value = "";
  route();
});
$("#signout").addEventListener("click", () => signOut());
window.addEventListener("hashchange", route);
route();
