// The live cluster page: draws each frame of GET /ui/events (server-sent
// events) as cards, a network diagram and an event stream. Plain
// JavaScript, no libraries, no build step.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
};
const SVG = "http://www.w3.org/2000/svg";
const svg = (tag, attrs = {}) => {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
};

// A term's colour: far apart for consecutive terms, the same on every card.
const termColour = (t) => `hsl(${(t * 67) % 360} 70% 62%)`;
const fmt = (n) => n.toLocaleString("en-US");
const clock = (ms) => {
  const d = new Date(ms);
  return d.toTimeString().slice(0, 8) + "." + String(d.getMilliseconds()).padStart(3, "0");
};

const page = {
  lastFrameAt: 0,   // Date.now() of the last frame
  prevCounts: {},   // "from>to" → messages received so far
  prevAt: 0,
  rates: {},        // "from>to" → messages per second, smoothed
  breakdown: {},    // "from>to" → {type: per second}
  cards: new Map(), // node id → card elements
  lab: false,
  nodes: [],
};

// ---- event stream -------------------------------------------------------

function logEvent(kind, text, at = Date.now()) {
  const list = $("#events");
  list.prepend(el("li", { class: "k-" + kind },
    el("time", {}, clock(at)), el("span", { class: "dot" }), el("span", {}, text)));
  while (list.children.length > 200) list.lastChild.remove();
}

function connect() {
  const es = new EventSource("events");
  es.addEventListener("open", () => { $("#live-text").textContent = "live"; });
  es.addEventListener("state", (e) => render(JSON.parse(e.data)));
  es.addEventListener("log", (e) => {
    const ev = JSON.parse(e.data);
    logEvent(ev.kind, ev.text, ev.at);
  });
  es.addEventListener("error", () => { $("#live-text").textContent = "reconnecting…"; });
}

// A page that stops getting frames says so, instead of showing a cluster
// that may no longer look like that.
setInterval(() => {
  const stale = Date.now() - page.lastFrameAt > 2000;
  document.body.dataset.stale = String(stale);
  $("#stale-banner").hidden = !stale || page.lastFrameAt === 0;
}, 500);

// ---- one frame ----------------------------------------------------------

function render(f) {
  page.lastFrameAt = Date.now();
  // Frames received by this page: it only grows, across reconnections
  // (f.seq starts again at 1 on each new stream).
  page.frames = (page.frames || 0) + 1;
  document.body.dataset.frames = page.frames;
  document.body.dataset.stale = "false";
  $("#stale-banner").hidden = true;
  $("#live-text").textContent = `live · frame ${page.frames}`;
  page.nodes = f.nodes;
  setLab(f.lab);
  updateRates(f);
  renderSummary(f);
  renderNetwork(f);
  for (const n of f.nodes) renderCard(n, f.lab);
  for (const [id, c] of page.cards) {
    if (!f.nodes.some((n) => n.id === id)) { c.root.remove(); page.cards.delete(id); }
  }
}

function renderSummary(f) {
  const leaders = f.nodes.filter((n) => n.up && n.role === "leader");
  const s = $("#summary");
  if (leaders.length === 0) {
    s.innerHTML = "<b>no leader</b> · an election is under way, or too few nodes can talk";
    return;
  }
  const l = leaders.reduce((a, b) => (b.term > a.term ? b : a));
  const up = f.nodes.filter((n) => n.up).length;
  s.innerHTML = `leader <b>node ${l.id}</b> · term <b>${l.term}</b> · commit <b>${fmt(l.commit)}</b> · ${up} of ${f.nodes.length} nodes up`;
  // Two "leader" cards are not split brain: one leader per term, and the
  // one of the older term has not heard of the newer yet. Say so.
  for (const old of leaders.filter((n) => n.term < l.term)) {
    s.innerHTML += `<br><span class="hint">node ${old.id} still believes it leads term ${old.term}: it has not heard of term ${l.term} yet. It cannot commit anything (that needs a majority, which has moved on), and steps down at the first message of term ${l.term}. Raft allows one leader per term, not one at a time.</span>`;
  }
}

// updateRates turns the received-message counters into messages per
// second on each directed link.
function updateRates(f) {
  const now = f.at, dt = (now - page.prevAt) / 1000;
  const counts = {}, types = {};
  for (const n of f.nodes) {
    for (const r of n.received || []) {
      const key = `${r.from}>${n.id}`;
      counts[key] = (counts[key] || 0) + r.count;
      (types[key] = types[key] || {})[r.type] = r.count;
    }
  }
  if (page.prevAt && dt > 0) {
    for (const key of Object.keys(counts)) {
      const before = page.prevCounts[key];
      const inst = before === undefined ? 0 : Math.max(0, counts[key] - before) / dt;
      page.rates[key] = (page.rates[key] || 0) * 0.6 + inst * 0.4;
      const b = page.breakdown[key] = page.breakdown[key] || {};
      for (const [t, c] of Object.entries(types[key])) {
        const prev = (page.prevTypes?.[key] || {})[t];
        b[t] = (b[t] || 0) * 0.6 + (prev === undefined ? 0 : Math.max(0, c - prev) / dt) * 0.4;
      }
    }
    // A node that stopped answering sends and receives nothing.
    for (const key of Object.keys(page.rates)) if (!(key in counts)) page.rates[key] *= 0.5;
  }
  page.prevCounts = counts;
  page.prevTypes = types;
  page.prevAt = now;
}

// ---- network diagram ----------------------------------------------------

function roleClass(n) {
  if (!n.up) return "down";
  if (n.role === "pre-candidate") return "candidate";
  return n.role;
}
const roleFill = { leader: "var(--leader)", follower: "var(--follower)", candidate: "var(--candidate)", down: "var(--down)" };

function renderNetwork(f) {
  const g = $("#net");
  g.replaceChildren();
  const defs = svg("defs");
  for (const [id, colour] of [["arrow", "#7fb4ff"], ["arrow-idle", "#3b4a6e"], ["arrow-cut", "#ff5d6c"], ["arrow-slow", "#ff9f43"]]) {
    const m = svg("marker", { id, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
    m.append(svg("path", { d: "M0,0 L10,5 L0,10 z", fill: colour }));
    defs.append(m);
  }
  g.append(defs);
  const n = f.nodes.length, cx = 230, cy = 145, R = n <= 3 ? 100 : 115, r = 30;
  const pos = {};
  f.nodes.forEach((node, i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / n;
    pos[node.id] = { x: cx + R * Math.cos(a), y: cy + R * Math.sin(a) };
  });
  const isolated = new Set(f.lab ? f.lab.isolated : []);
  const slow = {};
  for (const s of f.lab ? f.lab.slow : []) slow[`${s.from}>${s.to}`] = s.delay_ms;
  const byId = Object.fromEntries(f.nodes.map((x) => [x.id, x]));
  for (const a of f.nodes) {
    for (const b of f.nodes) {
      if (a.id === b.id) continue;
      const key = `${a.id}>${b.id}`, p = pos[a.id], q = pos[b.id];
      // Two curves per pair, one each way, bent to opposite sides.
      const dx = q.x - p.x, dy = q.y - p.y, len = Math.hypot(dx, dy);
      const ux = dx / len, uy = dy / len, nx = -uy, ny = ux, bend = 16;
      const sx = p.x + ux * (r + 4) + nx * 6, sy = p.y + uy * (r + 4) + ny * 6;
      const ex = q.x - ux * (r + 6) + nx * 6, ey = q.y - uy * (r + 6) + ny * 6;
      const mx = (p.x + q.x) / 2 + nx * bend, my = (p.y + q.y) / 2 + ny * bend;
      const cut = isolated.has(a.id) !== isolated.has(b.id) || !byId[a.id].up || !byId[b.id].up;
      const rate = page.rates[key] || 0;
      let cls = "link", marker = "arrow-idle";
      if (cut) { cls += " cut"; marker = "arrow-cut"; }
      else if (slow[key]) { cls += " slow"; marker = "arrow-slow"; }
      if (!cut && rate > 0.5) { cls += " busy"; if (!slow[key]) marker = "arrow"; }
      const path = svg("path", { d: `M${sx},${sy} Q${mx},${my} ${ex},${ey}`, class: cls, "marker-end": `url(#${marker})`, "data-link": key });
      if (!cut && rate > 0.5) {
        path.style.strokeWidth = String(Math.min(5, 1.2 + Math.log2(1 + rate) / 2));
        path.style.animationDuration = `${Math.max(0.25, Math.min(2.5, 8 / rate))}s`;
      }
      const title = svg("title");
      const parts = Object.entries(page.breakdown[key] || {}).filter(([, v]) => v >= 0.5).map(([t, v]) => `${t} ${v.toFixed(0)}/s`);
      title.textContent = `node ${a.id} → node ${b.id}: ${parts.join(", ") || "quiet"}`;
      path.append(title);
      g.append(path);
      const lx = (p.x + q.x) / 2 + nx * (bend + 12), ly = (p.y + q.y) / 2 + ny * (bend + 12);
      let label = cut ? "✕" : rate >= 0.5 ? `${rate.toFixed(0)}/s` : "";
      if (!cut && slow[key]) label = `${label} ⏱${slow[key]}ms`.trim();
      if (label) g.append(Object.assign(svg("text", { x: lx, y: ly + 4, "text-anchor": "middle", class: "rate" + (slow[key] ? " slow" : "") }), { textContent: label }));
    }
  }
  for (const node of f.nodes) {
    const p = pos[node.id], rc = roleClass(node);
    const grp = svg("g", { "data-node": node.id });
    grp.append(svg("circle", { cx: p.x, cy: p.y, r, fill: roleFill[rc], class: "nodecircle", stroke: node.role === "leader" && node.up ? "#fff3" : "#0003" }));
    grp.append(Object.assign(svg("text", { x: p.x, y: p.y, class: "nodelabel" }), { textContent: node.role === "leader" && node.up ? `♛${node.id}` : String(node.id) }));
    // The caption goes on the side away from the centre, clear of links.
    const sub = node.up ? `${node.role} · t${node.term}` : "down";
    const below = p.y >= cy - 1;
    grp.append(Object.assign(svg("text", { x: p.x, y: below ? p.y + r + 16 : p.y - r - 8, class: "nodesub" }), { textContent: sub }));
    g.append(grp);
  }
}

// ---- cards --------------------------------------------------------------

function makeCard(id) {
  const c = {};
  c.title = el("h3", {}, `Node ${id}`);
  c.badge = el("span", { class: "badge" }, "…");
  c.facts = el("dl", { class: "facts" });
  c.health = el("div", { class: "health" });
  c.log = el("ol", { class: "log" });
  c.keys = el("ul", { class: "keys" });
  c.peers = el("div", { class: "peers" });
  c.peersBox = el("section", {}, el("h4", {}, "Replication (leader's view)"), c.peers);
  c.crash = el("button", { type: "button", "data-action": "crash", "data-node": id, onclick: () => crashOrRestart(id) }, "Crash");
  c.isolate = el("button", { type: "button", "data-action": "isolate", "data-node": id, onclick: () => lab(`../debug/isolate?node=${id}`, `you isolated node ${id}: it can neither send nor receive`) }, "Isolate");
  c.controls = el("footer", {}, c.crash, c.isolate);
  c.root = el("article", { class: "card", "data-node": id },
    el("header", {}, c.title, c.badge), c.facts, c.health,
    el("section", {}, el("h4", {}, "Log (newest last)"), c.log),
    c.peersBox,
    el("section", {}, el("h4", {}, "State machine"), c.keys),
    c.controls);
  const cards = $("#cards");
  const after = [...cards.children].find((x) => Number(x.dataset.node) > id);
  cards.insertBefore(c.root, after || null);
  page.cards.set(id, c);
  return c;
}

function renderCard(n, labState) {
  const c = page.cards.get(n.id) || makeCard(n.id);
  const crashed = labState && labState.crashed.includes(n.id);
  c.root.dataset.role = n.up ? n.role : "down";
  c.root.dataset.up = String(n.up);
  c.root.dataset.term = n.term;
  c.badge.textContent = n.up ? (n.role === "leader" ? "♛ leader" : n.role) : (n.down || "down");
  const dash = (v) => (n.up ? fmt(v) : "—");
  const facts = [["term", dash(n.term)], ["vote", n.up ? (n.vote || "—") : "—"], ["leader", n.up ? (n.leader || "none") : "—"], ["first", dash(n.first)],
    ["commit", dash(n.commit)], ["applied", dash(n.applied)], ["last", dash(n.last)], ["snapshot", dash(n.snapshot_index)]];
  c.facts.replaceChildren(...facts.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", { "data-fact": k }, String(v)))));
  const health = n.up ? n.health : `down: ${n.down || "not answering"}`;
  c.health.textContent = health;
  c.health.classList.toggle("bad", !n.up || /^no |cannot|silent|catching/.test(health));
  renderLog(c.log, n);
  renderPeers(c, n);
  c.keys.replaceChildren(...(n.keys || []).map((k) => el("li", { "data-key": k.key }, el("span", { class: "k" }, k.key), "=", el("span", { class: "v" }, k.value))));
  if (n.keys_more) c.keys.append(el("li", {}, "…"));
  if (!n.up || !(n.keys || []).length) c.keys.replaceChildren(el("li", { class: "hint" }, n.up ? "no keys yet" : "—"));
  c.controls.hidden = !page.lab;
  c.crash.textContent = crashed ? "Restart" : "Crash";
  c.crash.dataset.action = crashed ? "restart" : "crash";
  c.isolate.disabled = !n.up;
}

function renderLog(list, n) {
  const rows = [];
  if (!n.up || !n.entries || n.entries.length === 0) {
    list.replaceChildren(el("li", { class: "empty" }, n.up ? "empty" : "—"));
    return;
  }
  if (n.entries[0].index > n.first) rows.push(el("li", { class: "empty" }, `… ${fmt(n.entries[0].index - 1)} earlier entries`));
  for (const e of n.entries) {
    const chip = el("span", { class: "term", title: `term ${e.term}` }, `t${e.term}`);
    chip.style.background = termColour(e.term);
    chip.style.color = e.index > n.commit ? termColour(e.term) : "";
    const li = el("li", { "data-index": e.index, class: e.index > n.commit ? "uncommitted" : "", title: e.text }, el("span", { class: "idx" }, String(e.index)), chip, el("span", {}, e.text));
    rows.push(li);
    if (e.index === n.commit) rows.push(el("li", { class: "commit", "data-label": `committed up to ${e.index}` }));
  }
  list.replaceChildren(...rows);
}

function renderPeers(c, n) {
  const peers = n.up && n.role === "leader" ? n.peers || [] : [];
  c.peersBox.hidden = peers.length === 0;
  c.peers.replaceChildren(...peers.map((p) => {
    const pct = n.last ? Math.round((100 * p.match) / n.last) : 100;
    const bar = el("div", { class: "bar" }, el("i"));
    bar.firstChild.style.width = `${pct}%`;
    const state = p.unreachable ? "unreachable" : p.state;
    return el("div", { class: "peer" + (p.unreachable ? " unreachable" : ""), "data-peer": p.id },
      el("span", {}, `→ node ${p.id}`), bar,
      el("span", { class: "meta", title: `next ${p.next}, ${p.inflight} appends in flight` }, `${state} · ${fmt(p.match)} · ${p.last_contact_ms} ms`));
  }));
}

// ---- controls -----------------------------------------------------------

function setLab(labState) {
  const on = !!labState;
  if (on === page.lab && $("#s-a").options.length === page.nodes.length) return;
  page.lab = on;
  $("#lab").hidden = !on;
  for (const sel of [$("#s-a"), $("#s-b")]) {
    const keep = sel.value;
    sel.replaceChildren(...page.nodes.map((n) => el("option", { value: n.id }, `node ${n.id}`)));
    if (keep) sel.value = keep;
  }
  if (!$("#s-b").dataset.touched && page.nodes.length > 1) $("#s-b").value = page.nodes[1].id;
}

async function post(url, body) {
  const res = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: body ? JSON.stringify(body) : "" });
  let data = {};
  try { data = await res.json(); } catch (_) { /* an empty answer */ }
  return { ok: res.ok, status: res.status, data };
}

async function lab(url, text, body) {
  const r = await post(url, body);
  if (r.ok) logEvent("you", text);
  else logEvent("error", `${text.replace(/^you /, "could not ")}: ${r.data.error || r.status}`);
}

function crashOrRestart(id) {
  const crashed = page.cards.get(id).crash.dataset.action === "restart";
  if (crashed) lab(`../debug/restart?node=${id}`, `you restarted node ${id}: it recovers its log and term from storage`);
  else lab(`../debug/crash?node=${id}`, `you crashed node ${id}`);
}

$("#heal").addEventListener("click", () => lab("../debug/heal", "you healed the network: every link works again"));
$("#s-b").addEventListener("change", (e) => { e.target.dataset.touched = "1"; });
$("#slow").addEventListener("submit", (e) => {
  e.preventDefault();
  const a = Number($("#s-a").value), b = Number($("#s-b").value), d = Number($("#s-delay").value);
  if (a === b) { logEvent("error", "pick two different nodes"); return; }
  const what = d ? `you slowed the link between nodes ${a} and ${b} to ${d} ms each way` : `you put the link between nodes ${a} and ${b} back to normal`;
  lab("../debug/slow", what, { from: a, to: b, delay_ms: d, both: true });
});
$("#write").addEventListener("submit", async (e) => {
  e.preventDefault();
  const key = $("#w-key").value, value = $("#w-value").value;
  const btn = $("#w-put");
  btn.disabled = true;
  try {
    const r = await post("write", { key, value });
    const w = r.data;
    if (r.ok && w.status === 200) logEvent("write", `wrote ${key} = ${value}: committed at index ${w.index}, answered by ${w.via}`);
    else logEvent("error", `write of ${key} failed (${w.status || r.status}): ${w.error || r.data.error || ""}`);
  } catch (err) {
    logEvent("error", `write of ${key} failed: ${err}`);
  } finally {
    btn.disabled = false;
  }
});

logEvent("you", `watching the cluster through ${location.host}: each card is one node's own view`);
connect();
