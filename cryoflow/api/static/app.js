// The cryoflow web view: plain JavaScript, no build step, no outside resources.
// Every value from the server is put into the page as text (textContent, attributes
// set one by one); nothing from the server is ever parsed as HTML.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const NODE_W = 168;
const NODE_H = 58;
const GAP_X = 36;
const GAP_Y = 52;
const MARGIN = 16;
const PAGE = 50;
const MAX_LOG_LINES = 500;
const MAX_GANTT_JOBS = 300;
const REFRESH_MS = 100;
const STATUSES = ["pending", "running", "finished", "error", "skipped", "defined"];

const view = {
  token: sessionStorage.getItem("cryoflow-token") || "",
  workflow: null,
  selectedNode: null,
  pebble: null,
  seq: null,
  logId: null,
  socket: null,
  pages: { after: 0, stack: [] },
  gantt: new Map(),
  timers: new Map(),
};

// ------------------------------------------------------------------ small helpers

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function setAttrs(node, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "text") node.textContent = String(value);
    else if (key === "onclick") node.addEventListener("click", value);
    else node.setAttribute(key, String(value));
  }
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

function show(value) {
  if (value === null || value === undefined) return "";
  return typeof value === "string" ? value : JSON.stringify(value, null, 1);
}

function short(value, limit) {
  const text = show(value).replace(/\s+/g, " ");
  return text.length > limit ? text.slice(0, limit - 1) + "…" : text;
}

// "1/A#1" < "2/A#1" < "10/A#1": numbers inside ids compare as numbers.
const byId = (a, b) => String(a.id).localeCompare(String(b.id), undefined, { numeric: true });

// An item as a person reads it: "scene-1.zip · 1.2 MB" for a file, "src=s1.zip, n=3" else.
function itemSummary(item, limit) {
  if (item === null || typeof item !== "object" || Array.isArray(item)) return short(item, limit);
  const path = item.relpath || item.fullpath;
  if (typeof path === "string") {
    const size = typeof item.datasize === "number" ? " · " + bytes(item.datasize) : "";
    return short(path.split("/").filter(Boolean).pop() + size, limit);
  }
  const parts = [];
  for (const [key, value] of Object.entries(item)) {
    const text = value !== null && typeof value === "object"
      ? (Array.isArray(value) ? `[${value.length} items]` : "{…}") : short(value, 32);
    parts.push(`${key}=${text}`);
  }
  const all = parts.join(", ");
  if (all.length <= limit) return all || "(no fields)";
  let kept = "";
  let count = 0;
  for (const part of parts) {
    const next = kept ? kept + ", " + part : part;
    if (next.length > limit - 12) break;
    kept = next;
    count += 1;
  }
  return `${kept || short(parts[0], limit - 12)} +${parts.length - Math.max(count, 1)} more`;
}

function bytes(n) {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
  return (i ? n.toFixed(1) : String(n)) + " " + units[i];
}

function when(ts) {
  if (!ts) return "";
  const d = new Date(ts * 1000);
  return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

function seconds(value) { return value === null || value === undefined ? "" : value.toFixed(2) + " s"; }

function percent(value) {
  const n = Number(value);
  return Number.isFinite(n) ? Math.max(0, Math.min(100, n)) : 0;
}

function later(key, fn, ms) {
  if (view.timers.has(key)) return;
  view.timers.set(key, setTimeout(() => { view.timers.delete(key); fn(); }, ms));
}

function say(text) {
  const box = $("message");
  box.textContent = text;
  box.hidden = !text;
}

// ------------------------------------------------------------------ the API

async function api(path, options) {
  const opts = Object.assign({ headers: {} }, options || {});
  if (view.token) opts.headers.Authorization = "Bearer " + view.token;
  const response = await fetch(path, opts);
  if (response.status === 401) {
    $("login").hidden = false;
    throw new Error("a token is needed");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function post(path, body) {
  return api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body || {}) });
}

function quoteJob(id) { return encodeURIComponent(id); }

// ------------------------------------------------------------------ the graph

function place(node) {
  return { x: MARGIN + node.order * (NODE_W + GAP_X), y: MARGIN + node.layer * (NODE_H + GAP_Y) };
}

function drawGraph() {
  const graph = $("graph");
  clear(graph);
  const nodes = view.workflow.nodes;
  const spot = new Map(nodes.map((n) => [n.name, place(n)]));
  const width = Math.max(...nodes.map((n) => spot.get(n.name).x)) + NODE_W + MARGIN;
  const height = Math.max(...nodes.map((n) => spot.get(n.name).y)) + NODE_H + MARGIN;
  setAttrs(graph, { width, height, viewBox: `0 0 ${width} ${height}` });
  graph.append(arrowMarker());
  for (const edge of view.workflow.edges) graph.append(edgePath(spot.get(edge.from), spot.get(edge.to)));
  for (const node of nodes) graph.append(nodeGroup(node, spot.get(node.name)));
  colourGraph();
}

function arrowMarker() {
  const defs = svg("defs");
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 8, markerHeight: 8, orient: "auto-start-reverse" });
  marker.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrow" }));
  defs.append(marker);
  return defs;
}

function edgePath(from, to) {
  if (!from || !to) return svg("g");
  const x1 = from.x + NODE_W / 2, y1 = from.y + NODE_H;
  const x2 = to.x + NODE_W / 2, y2 = to.y - 2;
  const bend = (y2 - y1) / 2;
  return svg("path", { class: "edge", d: `M ${x1} ${y1} C ${x1} ${y1 + bend}, ${x2} ${y2 - bend}, ${x2} ${y2}`, "marker-end": "url(#arrow)" });
}

function nodeShape(kind) {
  const cx = NODE_W / 2, cy = NODE_H / 2;
  if (kind === "circle" || kind === "ellipse") return svg("ellipse", { class: "shape", cx, cy, rx: cx, ry: cy });
  if (kind === "diamond") return svg("polygon", { class: "shape", points: `${cx},0 ${NODE_W},${cy} ${cx},${NODE_H} 0,${cy}` });
  return svg("rect", { class: "shape", width: NODE_W, height: NODE_H, rx: 8, ry: 8 });
}

function nodeGroup(node, at) {
  const display = node.display || {};
  const group = svg("g", { class: "node", transform: `translate(${at.x},${at.y})`, "data-node": node.name, tabindex: 0 });
  group.append(nodeShape(display.shape));
  group.append(svg("text", { class: "name", x: NODE_W / 2, y: 16, "text-anchor": "middle" }, short(display.label || node.name, 24)));
  group.append(svg("text", { class: "module", x: NODE_W / 2, y: 31, "text-anchor": "middle" }, short(node.module, 26)));
  group.append(svg("text", { class: "counts", x: NODE_W / 2, y: 47, "text-anchor": "middle" }, ""));
  group.append(svg("title", {}, node.name));
  group.addEventListener("click", () => selectNode(node.name));
  return group;
}

function countsText(node) {
  const c = node.counts || {};
  const open = (c.waiting || 0) + (c.queued || 0) + (c.deferred || 0) + (c.split || 0);
  const failed = failedOf(c);
  const parts = [`✓${c.success || 0}`, `✗${failed}`, `▶${c.running || 0}`, `…${open}`];
  if (c.skipped) parts.push(`⤼${c.skipped}`);
  const value = node.display && node.display.value !== undefined ? " = " + short(node.display.value, 12) : "";
  return parts.join(" ") + value;
}

function colourGraph() {
  for (const node of view.workflow.nodes) {
    const group = document.querySelector(`g.node[data-node="${CSS.escape(node.name)}"]`);
    if (!group) continue;
    const status = view.pebble ? view.pebble.status[node.name] || "pending" : node.status;
    const shape = group.querySelector(".shape");
    for (const s of STATUSES) shape.classList.remove("st-" + s);
    shape.classList.add("st-" + status);
    group.setAttribute("data-status", status);
    const colour = !view.pebble && status === "finished" && node.display ? node.display.color : "";
    shape.style.fill = colour || "";
    group.querySelector(".counts").textContent = view.pebble ? status : (node.held ? "⏸ " : "") + countsText(node);
    group.querySelector("title").textContent = node.held ? `${node.name}: waits, ${node.held}` : node.name;
    group.classList.toggle("held", Boolean(node.held) && !view.pebble);
    group.classList.toggle("selected", node.name === view.selectedNode);
  }
}

async function loadWorkflow() {
  const fresh = await api("/api/v1/workflow");
  const shapeChanged = !view.workflow || JSON.stringify(layoutOf(fresh)) !== JSON.stringify(layoutOf(view.workflow));
  view.workflow = fresh;
  $("workflow-name").textContent = fresh.name;
  const p = fresh.pebbles;
  $("summary").textContent = summaryText(p, fresh.nodes);
  $("pause").textContent = fresh.paused ? "Resume" : "Pause";
  if (shapeChanged) drawGraph(); else colourGraph();
}

// The header names node errors too, so a red node always has a count that says why:
// an error that an error node handled leaves its pebble completed, not failed.
function summaryText(p, nodes) {
  const errors = nodes.reduce((sum, n) => sum + failedOf(n.counts || {}), 0);
  const failed = p.failed || 0;
  let text = `${p.active || 0} active · ${p.completed || 0} completed · ${failed} failed`;
  if (errors) text += ` · ${errors} node error${errors === 1 ? "" : "s"}` + (failed ? "" : " (handled)");
  return text;
}

function failedOf(c) { return (c.error || 0) + (c.timeout || 0) + (c.cancel || 0) + (c.lost || 0); }

function layoutOf(workflow) {
  return workflow.nodes.map((n) => [n.name, n.layer, n.order, n.display && n.display.shape, n.display && n.display.label]);
}

// ------------------------------------------------------------------ details

function detail(title, ...parts) {
  $("detail-title").textContent = title;
  const box = $("detail");
  clear(box);
  for (const part of parts) if (part) box.append(part);
}

function keyValues(pairs) {
  const list = el("dl", { class: "kv" });
  for (const [key, value] of pairs) list.append(el("dt", {}, key), el("dd", {}, value));
  return list;
}

function progressBar(value) {
  const fill = el("span", { class: "fill" });
  fill.style.width = percent(value) + "%";
  return el("span", { class: "bar", title: `${percent(value)}%` }, fill);
}

function statusBadge(status) { return el("span", { class: "badge st-" + status }, status); }

function jobTable(jobs) {
  const body = el("tbody");
  for (const job of [...jobs].sort(byId)) {
    const state = job.state === "running" ? progressBar(job.progress) : job.outcome || job.state;
    const row = el("tr", { "data-job": job.id, title: job.error || "" },
      el("td", {}, job.id), el("td", {}, state), el("td", {}, seconds(job.duration)),
      el("td", { class: "error" }, job.error || ""));
    row.addEventListener("click", () => selectPebble(job.pebble_id));
    body.append(row);
  }
  const head = el("thead", {}, el("tr", {}, el("th", {}, "job"), el("th", {}, "state"), el("th", {}, "duration"), el("th", {}, "error")));
  return el("table", { class: "list jobs" }, head, body);
}

async function selectNode(name) {
  view.selectedNode = name;
  colourGraph();
  if (view.pebble) return showPebbleNode(name);
  const node = view.workflow.nodes.find((n) => n.name === name);
  const q = encodeURIComponent(name);
  const [running, recent] = await Promise.all([
    api(`/api/v1/jobs?node=${q}&state=running&limit=${PAGE}`),
    api(`/api/v1/jobs?node=${q}&limit=${PAGE}`),
  ]);
  if (view.selectedNode !== name || view.pebble) return;
  detail(`Node ${name}`,
    keyValues([["module", node.module], ["status", statusBadge(node.status)], ["counts", countsText(node)],
      ["worker class", node.worker_class], ["depends on", node.dependencies.join(", ")],
      ...(node.held ? [["waits", node.held]] : [])]),
    node.display ? el("pre", { class: "value" }, show(node.display)) : null,
    el("h3", {}, "Running"), jobTable(running.items),
    el("h3", {}, "Jobs"), jobTable(recent.items));
}

function showPebbleNode(name) {
  const nodes = view.pebble.nodes.filter((n) => n.name === name || n.name.startsWith(name + "@"));
  const parts = nodes.map((n) => el("div", {}, el("h3", {}, n.name, " ", statusBadge(n.status)),
    n.output === null ? null : el("pre", { class: "value" }, show(n.output)),
    ...n.branches.filter((b) => b.error).map((b) => el("pre", { class: "value error" }, b.error))));
  detail(`Pebble ${view.pebble.id} · node ${name}`, ...parts, jobTable(view.pebble.jobs.filter((j) => j.node.split("@")[0] === name)));
}

async function selectPebble(id) {
  const [pebble, logs] = await Promise.all([api(`/api/v1/pebbles/${id}`), api(`/api/v1/logs?pebble=${id}&limit=200`)]);
  view.pebble = pebble;
  $("graph-scope").textContent = `pebble ${pebble.id}`;
  $("graph-all").hidden = false;
  colourGraph();
  detail(`Pebble ${pebble.id}`, pebbleSummary(pebble), pebbleActions(pebble),
    el("h3", {}, "Input"), el("pre", { class: "value" }, show(pebble.item)),
    el("h3", {}, "Nodes"), pebbleNodes(pebble),
    el("h3", {}, "Jobs"), jobTable(pebble.jobs),
    el("h3", {}, "Log"), logList(logs.items));
}

function pebbleSummary(pebble) {
  const outcome = pebble.outcome || pebble.state;
  return keyValues([["outcome", outcome], ["input", pebble.input_node], ["created", when(pebble.created)],
    ["finished", when(pebble.finished)], ["failed at", (pebble.failed_nodes || []).join(", ")]]);
}

function pebbleActions(pebble) {
  const box = el("div", { class: "actions" });
  const act = (label, path) => {
    const button = el("button", { type: "button" }, label);
    button.addEventListener("click", () => post(path).then(() => say(`${label}: accepted`)).catch((e) => say(`${label}: ${e.message}`)));
    box.append(button);
  };
  if (pebble.state === "active") act("Cancel pebble", `/api/v1/pebbles/${pebble.id}/cancel`);
  if (pebble.outcome === "failed") act("Retry failed nodes", `/api/v1/pebbles/${pebble.id}/retry`);
  return box;
}

function pebbleNodes(pebble) {
  const box = el("div");
  for (const node of pebble.nodes) {
    const errors = node.branches.filter((b) => b.error).map((b) => el("pre", { class: "value error" }, b.error));
    const output = node.output === null ? null : el("pre", { class: "value" }, show(node.output));
    box.append(el("div", { "data-pebble-node": node.name }, el("strong", {}, node.name), " ", statusBadge(node.status),
      output, ...errors));
  }
  return box;
}

function leavePebble() {
  view.pebble = null;
  $("graph-scope").textContent = "";
  $("graph-all").hidden = true;
  colourGraph();
  detail("Click a node or a pebble");
}

// ------------------------------------------------------------------ pebble list

async function loadPebbles() {
  const params = new URLSearchParams({ after: view.pages.after, limit: PAGE });
  if ($("filter-state").value) params.set("state", $("filter-state").value);
  if ($("filter-outcome").value) params.set("outcome", $("filter-outcome").value);
  const page = await api(`/api/v1/pebbles?${params}`);
  const body = $("pebbles");
  clear(body);
  for (const p of page.items) body.append(pebbleRow(p));
  view.pages.next = page.next;
  $("page-next").disabled = page.next === null;
  $("page-prev").disabled = view.pages.stack.length === 0;
  $("page-info").textContent = page.items.length ? `ids ${page.items[0].id}–${page.items[page.items.length - 1].id}` : "none";
}

function pebbleRow(p) {
  const state = p.outcome || p.state;
  const row = el("tr", { "data-pebble": p.id },
    el("td", {}, p.id), el("td", {}, p.input_node), el("td", {}, el("span", { class: "badge st-" + pebbleColour(state) }, state)),
    el("td", { title: short(p.item, 500) }, itemSummary(p.item, 80)), el("td", {}, when(p.created)));
  row.addEventListener("click", () => selectPebble(p.id));
  return row;
}

function pebbleColour(state) {
  return { completed: "finished", failed: "error", active: "running" }[state] || "pending";
}

function turnPage(where) {
  const pages = view.pages;
  if (where === "next" && pages.next !== null) { pages.stack.push(pages.after); pages.after = pages.next; }
  if (where === "prev") pages.after = pages.stack.pop() || 0;
  if (where === "first") { pages.after = 0; pages.stack = []; }
  if (where === "latest") {
    const c = view.workflow ? view.workflow.pebbles : {};
    const total = (c.active || 0) + (c.completed || 0) + (c.failed || 0);
    pages.stack = []; pages.after = Math.max(0, total - PAGE);
  }
  loadPebbles().catch(report);
}

// ------------------------------------------------------------------ gantt

function ganttEvent(message) {
  const id = message.job_id;
  if (message.kind === "job_started") {
    const data = message.data || {};
    view.gantt.set(id, { id, worker: data.worker || "?", start: message.ts, end: null, outcome: "running" });
  } else if (["job_finished", "job_lost", "job_cancelled"].includes(message.kind) && view.gantt.has(id)) {
    const job = view.gantt.get(id);
    job.end = message.ts;
    job.outcome = (message.data && message.data.outcome) || message.kind.slice(4);
  } else return;
  while (view.gantt.size > MAX_GANTT_JOBS) view.gantt.delete(view.gantt.keys().next().value);
  later("gantt", drawGantt, 300);
}

function ganttColour(outcome) {
  if (outcome === "running") return "running";
  if (outcome === "success") return "finished";
  if (outcome === "skipped") return "skipped";
  return "error";
}

function drawGantt() {
  const chart = $("gantt");
  clear(chart);
  const jobs = [...view.gantt.values()];
  if (!jobs.length) return setAttrs(chart, { width: 10, height: 10 });
  const now = Date.now() / 1000;
  const running = jobs.some((j) => j.end === null);
  const t0 = Math.min(...jobs.map((j) => j.start));
  const t1 = Math.max(...jobs.map((j) => j.end || now), running ? now : t0);
  if (running) later("gantt", drawGantt, 1000);
  const workers = [...new Set(jobs.map((j) => j.worker))].sort();
  const left = 170, width = 900, row = 18;
  const scale = width / Math.max(t1 - t0, 0.001);
  setAttrs(chart, { width: left + width + 10, height: workers.length * row + 20 });
  workers.forEach((w, i) => chart.append(svg("text", { class: "gantt-row-label", x: 4, y: i * row + 13 }, short(w, 26))));
  for (const job of jobs) {
    const i = workers.indexOf(job.worker);
    const x = left + (job.start - t0) * scale;
    const w = Math.max(2, ((job.end || now) - job.start) * scale);
    const bar = svg("rect", { class: "gantt-job st-" + ganttColour(job.outcome), x, y: i * row + 3, width: w, height: row - 6 });
    bar.append(svg("title", {}, `${job.id} ${job.outcome} ${(((job.end || now) - job.start)).toFixed(2)} s`));
    chart.append(bar);
  }
  chart.append(svg("text", { class: "gantt-row-label", x: left, y: workers.length * row + 14 }, when(t0)));
  chart.append(svg("text", { class: "gantt-row-label", x: left + width, y: workers.length * row + 14, "text-anchor": "end" }, when(t1)));
}

// ------------------------------------------------------------------ log pane

function logLine(line) {
  const who = line.job_id || (line.pebble_id !== null ? `pebble ${line.pebble_id}` : "head");
  return el("div", { class: "lv-" + line.level }, `${when(line.ts)} ${line.level.padEnd(7)} ${who}  ${line.message}`);
}

function logList(lines) {
  const box = el("div", { class: "log" });
  for (const line of lines) box.append(logLine(line));
  return box;
}

function appendLogs(lines) {
  const pane = $("log");
  for (const line of lines) pane.append(logLine(line));
  while (pane.childElementCount > MAX_LOG_LINES) pane.removeChild(pane.firstChild);
  if ($("follow").checked) pane.scrollTop = pane.scrollHeight;
}

// ------------------------------------------------------------------ live events

function b64url(text) {
  return btoa(String.fromCharCode(...new TextEncoder().encode(text))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const params = new URLSearchParams();
  if (view.seq !== null) params.set("after", view.seq);
  if (view.logId !== null) params.set("after_log", view.logId);
  const protocols = ["cryoflow"];
  if (view.token) protocols.push("bearer." + b64url(view.token));
  const socket = new WebSocket(`${scheme}//${location.host}/api/v1/events?${params}`, protocols);
  view.socket = socket;
  socket.addEventListener("open", () => setConn(true));
  socket.addEventListener("message", (m) => receive(JSON.parse(m.data)));
  socket.addEventListener("close", () => { setConn(false); setTimeout(connect, 1000); });
}

function setConn(on) {
  const conn = $("conn");
  conn.textContent = on ? "live" : "reconnecting";
  conn.className = "conn " + (on ? "conn-on" : "conn-off");
}

function receive(messages) {
  const logs = [];
  let changed = false;
  for (const m of messages) {
    if (m.type === "snapshot") { view.seq = m.seq; view.logId = m.log_id; }
    else if (m.type === "event") { view.seq = m.seq; ganttEvent(m); changed = true; touchPebble(m); }
    else if (m.type === "log") { view.logId = m.id; logs.push(m); }
    else if (m.type === "progress") updateProgress(m.job_id, m.value);
  }
  if (logs.length) appendLogs(logs);
  if (changed) later("workflow", refresh, REFRESH_MS);
}

function touchPebble(m) {
  const id = m.pebble_id !== null ? m.pebble_id : parseInt(m.job_id || "", 10);
  if (view.pebble && id === view.pebble.id) later("pebble", () => selectPebble(view.pebble.id).catch(report), REFRESH_MS);
}

function updateProgress(jobId, value) {
  for (const row of document.querySelectorAll("tr[data-job]")) {
    if (row.getAttribute("data-job") !== jobId) continue;
    const fill = row.querySelector(".bar .fill");
    if (fill && value !== null) fill.style.width = percent(value) + "%";
  }
}

async function refresh() {
  await loadWorkflow();
  if (view.selectedNode && !view.pebble) later("node", () => selectNode(view.selectedNode).catch(report), 0);
  later("pebbles", () => loadPebbles().catch(report), 500);
}

// ------------------------------------------------------------------ start

function report(error) { say(error.message); }

async function start() {
  $("login").hidden = true;
  await loadWorkflow();
  const cursor = view.workflow.cursor;
  view.seq = Math.max(0, cursor.seq - 2000);
  view.logId = Math.max(0, cursor.log_id - 200);
  await loadPebbles();
  say("");
  if (!view.socket) connect();
}

function wire() {
  $("graph-all").addEventListener("click", leavePebble);
  $("filter-state").addEventListener("change", () => turnPage("first"));
  $("filter-outcome").addEventListener("change", () => turnPage("first"));
  for (const where of ["first", "prev", "next", "latest"]) $("page-" + where).addEventListener("click", () => turnPage(where));
  $("pause").addEventListener("click", () => post("/api/v1/workflow/pause", { paused: !view.workflow.paused }).then(refresh).catch(report));
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    view.token = $("token").value.trim();
    sessionStorage.setItem("cryoflow-token", view.token);
    start().catch((e) => { $("login-error").textContent = e.message; });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  wire();
  start().catch(report);
});
