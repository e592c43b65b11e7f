// trioflow's dashboard page: plain DOM and SVG, no library and no network beyond this
// server. Every user string (task keys, function and worker names, error reports) is
// set as textContent, never parsed as HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const WINDOW = 10;          // seconds of task stream shown
const MAX_ROWS = 5000;      // stream rows kept in the page
let stream = [];            // [seq, worker, thread, fn, key, start, duration, returned]
let lastSeq = -1;

function el(name, attrs, text) {
  const ns = ["svg", "rect", "text", "line", "g", "title", "path"].includes(name) ? SVG : null;
  const node = ns ? document.createElementNS(SVG, name) : document.createElement(name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948",
                 "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
function colour(name) {     // a stable colour per function name
  let h = 0;
  for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
  return PALETTE[h % PALETTE.length];
}

function bytes(n) {
  if (n === null || n === undefined) return "?";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function bar(parts, total, width) {   // parts: [[count, colour, label], ...]
  const svg = el("svg", {width: width, height: 14, class: "bar"});
  let x = 0;
  for (const [count, fill, label] of parts) {
    if (!count || !total) continue;
    const w = Math.max(1, width * count / total);
    const r = el("rect", {x: x, y: 1, width: w, height: 12, fill: fill});
    r.appendChild(el("title", {}, `${label}: ${count}`));
    svg.appendChild(r);
    x += w;
  }
  svg.appendChild(el("rect", {x: 0, y: 1, width: width, height: 12, fill: "none", stroke: "#999"}));
  return svg;
}

function drawWorkers(workers) {
  const body = document.querySelector("#workers tbody");
  clear(body);
  for (const w of workers) {
    const tr = el("tr", {"data-worker": w.name});
    tr.appendChild(el("td", {class: "name"}, w.name + (w.closing ? " (closing)" : "")));
    const td = el("td", {class: "bar"});
    const total = Math.max(w.slots, w.busy + w.blocked + w.queued);
    td.appendChild(bar([[w.busy, "#2e9e5b", "busy"], [w.blocked, "#d9534f", "blocked"],
                        [w.queued, "#bbb", "queued"]], total, 240));
    td.appendChild(el("span", {class: "slots"},
                      ` ${w.busy} · ${w.blocked} · ${w.queued} of ${w.slots}`));
    tr.appendChild(td);
    tr.appendChild(el("td", {class: "seceded"}, w.seceded));
    tr.appendChild(el("td", {class: "threads"}, w.threads === null ? "?" :
                      `${w.threads} (${w.idle_threads} · ${w.overflow})`));
    tr.appendChild(el("td", {class: "memory"}, bytes(w.memory)));
    tr.appendChild(el("td", {}, w.holds === null ? "?" : w.holds));
    tr.appendChild(el("td", {class: "rss"}, bytes(w.rss)));
    body.appendChild(tr);
  }
}

function drawStream(now) {
  const svg = document.getElementById("stream");
  clear(svg);
  const width = svg.clientWidth || 900, left = 160, lane = 14;
  const lanes = new Map();
  const t0 = now - WINDOW;
  for (const r of stream) {
    const key = `${r[1]} / ${r[2]}`;
    if (!lanes.has(key)) lanes.set(key, lanes.size);
  }
  const names = [...lanes.keys()].sort();
  names.forEach((k, i) => lanes.set(k, i));
  svg.setAttribute("height", Math.max(30, names.length * lane + 20));
  names.forEach((k, i) => svg.appendChild(el("text", {x: 0, y: i * lane + 11, class: "lane"}, k)));
  const scale = (width - left) / WINDOW;
  for (const r of stream) {
    const end = r[5] + r[6];
    if (end < t0) continue;
    const x = left + Math.max(0, r[5] - t0) * scale;
    const w = Math.max(1, (end - Math.max(r[5], t0)) * scale);
    // a run that raised is red, with a dark outline
    const rect = el("rect", {x: x, y: lanes.get(`${r[1]} / ${r[2]}`) * lane + 1, width: w,
                             height: lane - 2, fill: r[7] ? colour(r[3]) : "#d9534f",
                             stroke: r[7] ? "none" : "#700", class: r[7] ? "run" : "run raised"});
    rect.appendChild(el("title", {}, `${r[4]} (${r[3]}) ${(r[6] * 1000).toFixed(1)} ms` +
                                     (r[7] ? "" : ", raised")));
    rect.addEventListener("click", () => showRun(r));
    svg.appendChild(rect);
  }
  svg.appendChild(el("text", {x: left, y: names.length * lane + 16}, `-${WINDOW}s`));
  svg.appendChild(el("text", {x: width - 30, y: names.length * lane + 16}, "now"));
}

async function showWhy(key) {   // a clicked task of the wait-for graph: why it waits
  const details = document.getElementById("why");
  details.textContent = `why ${key}: asking…`;
  const answer = await fetch(`/api/why?key=${encodeURIComponent(key)}`);
  details.textContent = answer.ok ? (await answer.json()).why : `why ${key}: ${answer.status}`;
}

function showRun(r) {      // a clicked run: everything the stream knows of it
  document.getElementById("details").textContent =
    `key ${r[4]}\nfunction ${r[3]}\nworker ${r[1]}, thread ${r[2]}\n` +
    `started ${new Date(r[5] * 1000).toISOString()}, ran ${(r[6] * 1000).toFixed(2)} ms` +
    (r[7] ? "" : ", and raised");
}

function drawProgress(progress) {
  const body = document.querySelector("#progress tbody");
  clear(body);
  for (const p of progress) {
    const remaining = p.waiting + p.queued + p.processing;
    const total = p.done + remaining + p.erred;
    const tr = el("tr", {"data-fn": p.fn});
    tr.appendChild(el("td", {class: "name"}, p.fn));
    const td = el("td", {class: "bar"});
    td.appendChild(bar([[p.done, colour(p.fn), "done"], [p.erred, "#d9534f", "erred"],
                        [p.processing, "#888", "processing"], [p.queued, "#bbb", "queued"],
                        [p.waiting, "#ddd", "waiting"]], total, 300));
    tr.appendChild(td);
    tr.appendChild(el("td", {class: "count"}, `${p.done} / ${total}`));
    tr.appendChild(el("td", {class: "muted"},
                      [p.erred ? `${p.erred} erred` : "", p.raised ? `${p.raised} runs raised` : ""]
                        .filter(Boolean).join(" · ")));
    body.appendChild(tr);
  }
}

function drawTree(tree) {
  const svg = document.getElementById("tree");
  clear(svg);
  // one box per (depth, function); edges from the parent's function one level up
  const nodes = new Map(), kids = new Map();
  const id = (depth, fn) => `${depth}\u0000${fn}`;
  for (const e of tree) {
    const key = id(e.depth, e.fn);
    if (!nodes.has(key)) nodes.set(key, {depth: e.depth, fn: e.fn, done: 0, live: 0, row: -1});
    const n = nodes.get(key);
    n.done += e.done;
    n.live += e.live;
  }
  for (const e of tree) {
    const from = id(e.depth - 1, e.parent);
    if (!e.parent || !nodes.has(from)) continue;
    if (!kids.has(from)) kids.set(from, new Set());
    kids.get(from).add(id(e.depth, e.fn));
  }
  // rows in depth-first order: a node's first child on its row, later ones below
  let next = 0;
  const place = (key) => {
    const n = nodes.get(key);
    n.row = next;
    for (const k of kids.get(key) || []) if (nodes.get(k).row < 0) place(k);
    next = Math.max(next, n.row + 1);
  };
  const order = [...nodes.keys()].sort((a, b) => nodes.get(a).depth - nodes.get(b).depth);
  for (const key of order) if (nodes.get(key).row < 0) place(key);
  const colW = 190, rowH = 28, boxW = 160;
  svg.setAttribute("height", Math.max(1, next) * rowH + 10);
  for (const e of tree) {
    if (!e.parent) continue;
    const from = nodes.get(id(e.depth - 1, e.parent)), to = nodes.get(id(e.depth, e.fn));
    if (!from || !to) continue;
    svg.appendChild(el("line", {x1: from.depth * colW + boxW, y1: from.row * rowH + 14,
                                x2: to.depth * colW, y2: to.row * rowH + 14, stroke: "#999"}));
  }
  for (const n of nodes.values()) {
    const g = el("g", {class: "node", "data-fn": n.fn, "data-depth": n.depth});
    g.appendChild(el("rect", {x: n.depth * colW, y: n.row * rowH + 3, width: boxW, height: 22,
                              rx: 3, fill: colour(n.fn), "fill-opacity": 0.35, stroke: "#666"}));
    g.appendChild(el("text", {x: n.depth * colW + 5, y: n.row * rowH + 18},
                     `${n.fn}  ${n.done} / ${n.live}`));
    g.appendChild(el("title", {}, `${n.fn} at depth ${n.depth}: ${n.done} done, ${n.live} live`));
    svg.appendChild(g);
  }
}

function drawWaits(waits) {
  const svg = document.getElementById("waits");
  clear(svg);
  const left = new Map(), right = new Map(), rowH = 18;
  for (const [a, b] of waits) {
    if (!left.has(a)) left.set(a, left.size);
    if (!right.has(b)) right.set(b, right.size);
  }
  svg.setAttribute("height", Math.max(30, Math.max(left.size, right.size) * rowH + 10));
  if (!waits.length) { svg.appendChild(el("text", {x: 0, y: 15}, "no run is blocked")); return; }
  const width = svg.clientWidth || 900, x2 = Math.max(350, width / 2);
  for (const [a, b] of waits) {
    svg.appendChild(el("line", {x1: 300, y1: left.get(a) * rowH + 12, x2: x2 - 5,
                                y2: right.get(b) * rowH + 12, stroke: "#d9534f", class: "edge"}));
  }
  for (const [k, i] of left) {
    const t = el("text", {x: 0, y: i * rowH + 15, class: "waiter"}, k);
    t.addEventListener("click", () => showWhy(k));
    svg.appendChild(t);
  }
  for (const [k, i] of right) {
    const t = el("text", {x: x2, y: i * rowH + 15, class: "awaited"}, k);
    t.addEventListener("click", () => showWhy(k));
    svg.appendChild(t);
  }
}

function render(snap) {
  for (const r of snap.stream) if (r[0] > lastSeq) { stream.push(r); lastSeq = r[0]; }
  const t0 = snap.time - WINDOW;
  stream = stream.filter(r => r[5] + r[6] >= t0).slice(-MAX_ROWS);
  const tasks = snap.tasks, n = Object.values(tasks).reduce((a, b) => a + b, 0);
  document.getElementById("summary").textContent =
    `${snap.workers.length} workers · ${snap.clients} clients · ${n} tasks held · ` +
    `${snap.runs_total} runs finished · ${snap.seceded} seceded · ${snap.deadlocks} deadlocks`;
  const age = snap.scan_age > 2 ? ` (task counts from ${snap.scan_age.toFixed(0)} s ago)` : "";
  document.getElementById("updated").textContent =
    `updated ${new Date(snap.time * 1000).toLocaleTimeString()}${age}`;
  drawWorkers(snap.workers);
  drawStream(snap.time);
  drawProgress(snap.progress);
  drawTree(snap.tree);
  drawWaits(snap.waits);
  document.getElementById("deadlock").textContent = snap.deadlock || "none";
  document.getElementById("deadlock-count").textContent = `(${snap.deadlocks} raised)`;
  document.body.dataset.runs = snap.runs_total;
}

function connect() {
  const source = new EventSource("/events");
  source.onmessage = (event) => render(JSON.parse(event.data));
  source.onerror = () => {
    document.getElementById("summary").textContent = "disconnected; retrying…";
  };
}

document.addEventListener("DOMContentLoaded", connect);
