// kraft dashboard: polls the node's /v1 admin API and renders it. Every value reaches the
// DOM as text nodes or attributes (never parsed as HTML), so record keys, values and
// topic names cannot inject markup.
"use strict";

const POLL_MS = 2000;
const CHART_POINTS = 90;
const API = "/v1";

const state = {
  topics: [],           // TopicInfo[]
  details: new Map(),   // topic -> TopicDetail
  lastOffsets: null,    // {at: ms, offsets: Map "partition topic" -> high watermark}
  rates: [],            // messages/s, oldest first
  counted: 0,           // messages the chart has seen arrive
  // Topics the reader opened or closed: a few topics start open, many start closed.
  openTopics: new Set(),
  closedTopics: new Set(),
};

// ------------------------------------------------------------------ helpers

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function $(id) { return document.getElementById(id); }

function show(v) {
  if (v === null || v === undefined) return "–";
  if (Array.isArray(v)) return v.length ? v.join(", ") : "–";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

function setRows(table, rows) {
  const body = table.tBodies[0];
  body.replaceChildren(...rows);
  if (!rows.length) {
    const cols = table.tHead.rows[0].cells.length;
    body.append(el("tr", {class: "empty"}, el("td", {colspan: cols}, "none")));
  }
}

function cell(col, value, cls) {
  return el("td", {"data-col": col, class: cls}, show(value));
}

function token() { return $("token").value.trim(); }

class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.data = null;
  }
}

async function call(method, path, body) {
  const headers = {"Accept": "application/json"};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && token()) headers["Authorization"] = `Bearer ${token()}`;
  const response = await fetch(API + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = text; }
  if (!response.ok) {
    const code = data && data.error ? data.error : `HTTP ${response.status}`;
    const message = data && data.message ? data.message : (typeof data === "string" ? data : "");
    const error = new ApiError(response.status, code, message);
    error.data = data;
    throw error;
  }
  return data;
}

const get = (path) => call("GET", path);
const enc = encodeURIComponent;

// ------------------------------------------------------------------ health and cluster

const count = (v) => (Array.isArray(v) ? v.length : v || 0);
const partitionNames = (v) => (Array.isArray(v) ? v.map(([t, p]) => `${t}-${p}`) : []);

// ClusterOverview: is_healthy with its reasons; the node's own readiness (Health) adds its own.
function renderCluster(cluster, health) {
  $("cluster-id").textContent = show(cluster.cluster_id);
  $("node-id").textContent = show(cluster.node_id);
  // Controlled shutdown is asked of the node's own broker: offer this node's id.
  const shutdown = $("controlled-shutdown").broker;
  if (shutdown.value === "" && document.activeElement !== shutdown) shutdown.value = cluster.node_id;
  $("controller-id").textContent = show(cluster.controller_id);

  const reasons = [...new Set([...(cluster.reasons || []), ...((health && health.reasons) || [])])];
  const healthy = cluster.is_healthy !== undefined ? cluster.is_healthy && reasons.length === 0
    : reasons.length === 0;

  const badge = $("health-badge");
  badge.textContent = healthy ? "healthy" : "unhealthy";
  badge.className = `badge ${healthy ? "ok" : "bad"}`;
  badge.dataset.healthy = String(healthy);
  $("health-reasons").replaceChildren(
    ...(reasons.length ? reasons.map((r) => el("li", {class: "bad"}, r))
      : [el("li", {class: "ok"}, "all brokers serving, every partition fully replicated")]));

  const stat = (label, value, bad, title) =>
    el("div", {class: `stat${bad ? " bad" : ""}`, title},
      el("span", {class: "value"}, show(value)), el("span", {class: "label"}, label));
  const listed = (label, v) => stat(label, count(v), count(v) > 0,
    partitionNames(v).join(", ") || null);
  $("cluster-stats").replaceChildren(
    stat("brokers", (cluster.brokers || []).length),
    stat("topics", cluster.topics),
    stat("partitions", cluster.partitions),
    listed("under-replicated", cluster.under_replicated),
    listed("under min ISR", cluster.under_min_isr),
    listed("leaderless", cluster.leaderless),
    listed("offline", cluster.offline),
  );
}

function brokerState(b) {
  if (b.state) return b.state;
  if (b.fenced) return "fenced";
  if (b.in_controlled_shutdown) return "controlled-shutdown";
  if (b.in_maintenance) return "maintenance";
  return "registered";
}

function renderBrokers(brokers, controllerId) {
  setRows($("brokers"), brokers.map((b) => {
    const st = brokerState(b);
    return el("tr", {"data-broker": b.node_id, class: `broker-${st}`},
      el("td", {"data-col": "id"}, String(b.node_id),
        b.node_id === controllerId ? el("span", {class: "tag"}, "controller") : null),
      el("td", {"data-col": "state"}, el("span", {class: `pill ${st}`}, st)),
      cell("leads", b.leaderships), cell("epoch", b.epoch), cell("rack", b.rack),
      cell("endpoints", Object.entries(b.endpoints || {}).map(([k, v]) => `${k} ${v}`)));
  }));
}

function renderQuorum(q) {
  if (!q) {
    $("quorum-stats").replaceChildren(el("span", {class: "muted"},
      "this node is not a quorum member"));
    setRows($("voters"), []);
    return;
  }
  const stat = (label, value) =>
    el("div", {class: "stat"}, el("span", {class: "value"}, show(value)),
      el("span", {class: "label"}, label));
  $("quorum-stats").replaceChildren(
    stat("leader", q.leader_id), stat("term", q.term), stat("commit", q.commit_index),
    stat("applied", q.applied_index), stat("snapshot", q.snapshot_index));
  setRows($("voters"), (q.voters || []).map((v) => el("tr", {"data-voter": v.node_id},
    el("td", {"data-col": "id"}, String(v.node_id),
      v.node_id === q.leader_id ? el("span", {class: "tag"}, "leader") : null),
    cell("log_end", v.log_end_offset),
    cell("lag", v.lag, v.lag > 0 ? "warn" : null),
    cell("connected", v.connected === null || v.connected === undefined ? null
      : v.connected ? "yes" : "no", v.connected === false ? "bad" : null),
    cell("last_heard", v.last_heard_ms === null || v.last_heard_ms === undefined ? null
      : `${v.last_heard_ms} ms ago`))));
}

// ------------------------------------------------------------------ topics and partitions

function maxLag(p) {
  const lags = (p.replica_states || []).map((r) => r.lag).filter((l) => typeof l === "number");
  return lags.length ? Math.max(...lags) : null;
}

function partitionStatus(p) {
  if (p.offline) return "offline";
  if (p.under_min_isr) return "under-min-isr";
  if (p.under_replicated) return "under-replicated";
  return "ok";
}

function partitionRow(p) {
  const status = partitionStatus(p);
  const classes = [];
  if (p.under_replicated) classes.push("under-replicated");
  if (p.under_min_isr) classes.push("under-min-isr");
  if (p.offline) classes.push("offline");
  return el("tr", {class: classes.join(" "), "data-topic": p.topic, "data-partition": p.partition},
    cell("partition", p.partition),
    cell("leader", p.leader < 0 ? "none" : p.leader, p.leader < 0 ? "bad" : null),
    cell("replicas", p.replicas), cell("isr", p.isr), cell("elr", p.elr),
    cell("log_start", p.log_start_offset), cell("log_end", p.log_end_offset),
    cell("hw", p.high_watermark), cell("lag", maxLag(p)),
    el("td", {"data-col": "status"}, el("span", {class: `pill ${status}`}, status)));
}

function renderTopics() {
  const showInternal = $("show-internal").checked;
  const topics = state.topics.filter((t) => showInternal || !t.internal);
  const blocks = topics.map((t) => {
    const detail = state.details.get(t.name);
    const bad = t.offline_partitions > 0 || t.under_replicated_partitions > 0;
    const open = !state.closedTopics.has(t.name)
      && (state.openTopics.has(t.name) || topics.length <= 4);
    const summary = el("summary", {},
      el("span", {class: "topic-name"}, t.name),
      el("span", {class: "muted"},
        ` ${t.partitions} partition(s) × RF ${t.replication_factor}`),
      t.under_replicated_partitions
        ? el("span", {class: "pill under-replicated"},
          `${t.under_replicated_partitions} under-replicated`) : null,
      t.offline_partitions
        ? el("span", {class: "pill offline"}, `${t.offline_partitions} offline`) : null,
      Object.keys(t.configs || {}).length
        ? el("span", {class: "muted small"}, " " + Object.entries(t.configs)
          .map(([k, v]) => `${k}=${v}`).join(" ")) : null);
    const table = el("table", {class: "partitions", "data-topic": t.name},
      el("thead", {}, el("tr", {}, ...["partition", "leader", "replicas", "ISR", "ELR",
        "log start", "log end", "HW", "max lag", "status"].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...(detail ? detail.partitions.map(partitionRow) : [])));
    const details = el("details", {class: `topic${bad ? " degraded" : ""}`, "data-topic": t.name,
      open: open}, summary, table);
    details.addEventListener("toggle", () => {
      const [add, remove] = details.open ? [state.openTopics, state.closedTopics]
        : [state.closedTopics, state.openTopics];
      add.add(t.name);
      remove.delete(t.name);
    });
    return details;
  });
  $("topics").replaceChildren(...(blocks.length ? blocks
    : [el("p", {class: "muted"}, "no topics")]));

  const select = $("records-topic");
  const chosen = select.value;
  select.replaceChildren(...topics.map((t) => el("option", {value: t.name}, t.name)));
  if (topics.some((t) => t.name === chosen)) select.value = chosen;
}

// ------------------------------------------------------------------ throughput chart

// Messages/s from successive polls: the growth of each partition's high watermark, summed over
// the partitions seen in both polls (a topic appearing or being deleted is not traffic).
function sampleThroughput() {
  const offsets = new Map();
  for (const [name, detail] of state.details) {
    const info = state.topics.find((t) => t.name === name);
    if (!info || info.internal) continue;
    for (const p of detail.partitions) {
      if (typeof p.high_watermark === "number") offsets.set(`${p.partition} ${name}`, p.high_watermark);
    }
  }
  const now = performance.now();
  if (state.lastOffsets) {
    let grown = 0;
    for (const [key, hw] of offsets) {
      const before = state.lastOffsets.offsets.get(key);
      if (before !== undefined) grown += Math.max(0, hw - before);
    }
    state.counted += grown;
    const seconds = (now - state.lastOffsets.at) / 1000;
    state.rates.push(seconds > 0 ? grown / seconds : 0);
    if (state.rates.length > CHART_POINTS) state.rates.shift();
  }
  state.lastOffsets = {at: now, offsets};
  const latest = state.rates.length ? state.rates[state.rates.length - 1] : 0;
  $("throughput-now").textContent = `${latest.toFixed(1)} msg/s`;
  // Every message the chart has counted since the page loaded, for a reader (or a test) that
  // looks less often than the page polls.
  $("throughput").dataset.counted = String(state.counted);
  drawChart();
}

function niceMax(v) {
  if (v <= 0) return 1;
  const step = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (v <= m * step) return m * step;
  return 10 * step;
}

function drawChart() {
  const canvas = $("throughput");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 520;
  const height = canvas.clientHeight || 150;
  if (canvas.width !== width * ratio) { canvas.width = width * ratio; canvas.height = height * ratio; }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const css = getComputedStyle(document.documentElement);
  const pad = {l: 44, r: 8, t: 8, b: 18};
  const w = width - pad.l - pad.r;
  const h = height - pad.t - pad.b;
  const top = niceMax(Math.max(0, ...state.rates));

  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = css.getPropertyValue("--muted").trim() || "#888";
  ctx.strokeStyle = css.getPropertyValue("--grid").trim() || "#ddd";
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = pad.t + h - (h * i) / 4;
    ctx.beginPath(); ctx.moveTo(pad.l, y + 0.5); ctx.lineTo(pad.l + w, y + 0.5); ctx.stroke();
    const label = (top * i) / 4;
    ctx.fillText(label >= 1000 ? `${(label / 1000).toFixed(1)}k` : String(Math.round(label)),
      4, y + 4);
  }
  ctx.fillText(`last ${Math.round((CHART_POINTS * POLL_MS) / 1000)} s`, pad.l, height - 4);
  if (!state.rates.length) return;
  const x = (i) => pad.l + (w * i) / (CHART_POINTS - 1);
  const y = (v) => pad.t + h - (h * v) / top;
  const offset = CHART_POINTS - state.rates.length;
  const accent = css.getPropertyValue("--accent").trim() || "#36c";
  // The latest sample as a dot, so a single one shows too.
  const last = state.rates[state.rates.length - 1];
  ctx.fillStyle = accent;
  ctx.beginPath(); ctx.arc(x(CHART_POINTS - 1), y(last), 3, 0, 2 * Math.PI); ctx.fill();
  if (state.rates.length < 2) return;
  ctx.beginPath();
  state.rates.forEach((v, i) => (i ? ctx.lineTo(x(i + offset), y(v)) : ctx.moveTo(x(i + offset), y(v))));
  ctx.strokeStyle = accent; ctx.lineWidth = 2; ctx.stroke();
  ctx.lineTo(x(CHART_POINTS - 1), pad.t + h); ctx.lineTo(x(offset), pad.t + h); ctx.closePath();
  ctx.globalAlpha = 0.15; ctx.fillStyle = accent; ctx.fill(); ctx.globalAlpha = 1;
}

// ------------------------------------------------------------------ groups

function renderGroups(list, details) {
  const groups = (list && list.groups) || [];
  const blocks = groups.map((g) => {
    const d = details.get(g.group_id);
    const offsets = d && d.offsets ? d.offsets : [];
    const table = el("table", {class: "group-offsets", "data-group": g.group_id},
      el("thead", {}, el("tr", {}, ...["topic", "partition", "committed", "log end", "lag",
        "member"].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...offsets.map((o) => {
        const owner = d.members.find((m) =>
          (m.assignment || []).some(([t, p]) => t === o.topic && p === o.partition));
        return el("tr", {"data-topic": o.topic, "data-partition": o.partition},
          cell("topic", o.topic), cell("partition", o.partition),
          cell("committed", o.committed < 0 ? "none" : o.committed),
          cell("log_end", o.log_end_offset),
          cell("lag", o.lag, o.lag > 0 ? "warn" : null),
          cell("member", owner ? owner.client_id || owner.member_id : null));
      })));
    return el("div", {class: "group", "data-group": g.group_id},
      el("div", {class: "group-head"},
        el("span", {class: "topic-name"}, g.group_id),
        el("span", {class: `pill ${String(g.state).toLowerCase()}`}, show(g.state)),
        el("span", {class: "muted"},
          ` ${g.group_type} · coordinator ${g.coordinator} · ` +
          `${d ? d.members.length : "?"} member(s) · total lag ${d ? d.total_lag : "?"}`),
        d && d.error ? el("span", {class: "pill bad"}, d.error) : null),
      offsets.length ? table : el("p", {class: "muted small"}, "no committed offsets"));
  });
  const unreachable = Object.entries((list && list.unreachable) || {});
  if (unreachable.length) {
    blocks.push(el("p", {class: "warn small"}, "not answering ListGroups: " +
      unreachable.map(([id, why]) => `broker ${id} (${why})`).join("; ")));
  }
  $("groups").replaceChildren(...(blocks.length ? blocks
    : [el("p", {class: "muted"}, "no consumer groups")]));
}

// ------------------------------------------------------------------ polling

// An optional read: an HTTP error (e.g. no quorum on a broker-only node, health answering 503
// with its reasons) still lets the rest of the page render; a dead connection does not.
async function settle(promise) {
  try {
    return await promise;
  } catch (e) {
    if (e instanceof ApiError) return e.data && typeof e.data === "object" ? e.data : null;
    throw e;
  }
}

async function poll() {
  try {
    const [cluster, health, topics, groups] = await Promise.all([
      get("/cluster"), settle(get("/health")), get("/topics"), settle(get("/groups")),
    ]);
    state.topics = topics;
    const details = await Promise.all(topics.map((t) => settle(get(`/topics/${enc(t.name)}`))));
    state.details = new Map();
    topics.forEach((t, i) => { if (details[i]) state.details.set(t.name, details[i]); });
    const groupDetails = new Map();
    const gd = await Promise.all(((groups && groups.groups) || []).map((g) =>
      get(`/groups/${enc(g.group_id)}`).catch(() => null)));
    ((groups && groups.groups) || []).forEach((g, i) => { if (gd[i]) groupDetails.set(g.group_id, gd[i]); });

    renderCluster(cluster, health);
    renderBrokers(cluster.brokers || [], cluster.controller_id);
    renderQuorum(cluster.quorum);
    renderTopics();
    renderGroups(groups, groupDetails);
    sampleThroughput();
    $("conn-error").hidden = true;
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
  } catch (e) {
    const banner = $("conn-error");
    banner.textContent = `cannot read the admin API: ${e.message || e}`;
    banner.hidden = false;
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

// ------------------------------------------------------------------ records

// Keys, values and header values arrive as text: UTF-8 when the bytes decode, else base64
// (the record says which), shown as such rather than guessed at.
function bytesText(v, encoding) {
  if (v === null || v === undefined) return el("span", {class: "muted"}, "null");
  if (encoding && encoding !== "utf-8")
    return el("span", {class: "binary", title: encoding}, `${encoding}:${v}`);
  return typeof v === "string" ? v : JSON.stringify(v);
}

function headersText(headers) {
  if (!headers || !headers.length) return "–";
  return headers.map((h) => {
    const value = h.value === null || h.value === undefined ? "null"
      : h.value_encoding && h.value_encoding !== "utf-8" ? `${h.value_encoding}:${h.value}` : h.value;
    return `${h.key}=${value}`;
  }).join(", ");
}

async function fetchRecords(event) {
  event.preventDefault();
  const form = event.target;
  const out = $("records-result");
  const topic = form.topic.value;
  const partition = form.partition.value || "0";
  const limit = form.limit.value || "20";
  out.replaceChildren();
  try {
    const data = await get(`/topics/${enc(topic)}/partitions/${enc(partition)}/records?limit=${enc(limit)}`);
    const records = Array.isArray(data) ? data : data.records || [];
    setRows($("records"), records.map((r) => el("tr", {"data-offset": r.offset},
      cell("offset", r.offset),
      cell("timestamp", typeof r.timestamp === "number" && r.timestamp >= 0
        ? new Date(r.timestamp).toISOString() : r.timestamp),
      el("td", {"data-col": "key", class: "mono"}, bytesText(r.key, r.key_encoding)),
      el("td", {"data-col": "value", class: "mono"}, bytesText(r.value, r.value_encoding)),
      el("td", {"data-col": "headers", class: "mono small"}, headersText(r.headers)))));
    const bounds = data.high_watermark !== undefined
      ? ` (log start ${data.log_start_offset}, high watermark ${data.high_watermark}, leader ${data.leader})`
      : "";
    out.replaceChildren(el("span", {class: "muted"},
      `${records.length} record(s) from ${topic}-${partition}${bounds}`));
  } catch (e) {
    out.replaceChildren(errorText(e));
  }
}

// ------------------------------------------------------------------ write actions

function errorText(e) {
  return el("span", {class: "error"},
    e instanceof ApiError ? `${e.code}${e.message && e.message !== e.code ? ": " + e.message : ""}`
      : String(e.message || e));
}

// A write answers a WriteResult {name, error, message}, a list of them (elect leaders), or the
// new offsets of a group (reset offsets).
function resultText(data) {
  if (data && Array.isArray(data.offsets)) {
    const failed = data.offsets.filter((o) => o.error);
    const text = data.offsets.map((o) => `${o.topic}-${o.partition} → ${o.error || o.offset}`);
    return el("span", {class: failed.length ? "error" : "ok"},
      `${failed.length ? "failed" : "done"}: ${text.join(", ") || "nothing to reset"}`);
  }
  const results = Array.isArray(data) ? data : [data];
  const failed = results.filter((r) => r && r.error);
  if (failed.length) {
    return el("span", {class: "error"},
      failed.map((r) => `${r.name ? r.name + ": " : ""}${r.error}${r.message ? " – " + r.message : ""}`)
        .join("; "));
  }
  const names = results.map((r) => (r && r.name) || "").filter(Boolean);
  return el("span", {class: "ok"}, `done${names.length ? ": " + names.join(", ") : ""}`);
}

function parseConfigs(text) {
  const configs = {};
  for (const line of text.split(/[\n,]/).map((s) => s.trim()).filter(Boolean)) {
    const at = line.indexOf("=");
    if (at <= 0) throw new Error(`config "${line}" is not key=value`);
    configs[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return configs;
}

const optionalInt = (v) => (v === "" || v === null || v === undefined ? null : Number(v));

// Each action: how its form becomes one API call.
const ACTIONS = {
  "create-topic": (f) => ["POST", "/topics", {
    name: f.name.value.trim(),
    partitions: Number(f.partitions.value),
    replication_factor: Number(f.replication_factor.value),
    configs: parseConfigs(f.configs.value),
  }],
  "delete-topic": (f) => {
    if (!confirm(`Delete topic ${f.name.value}?`)) return null;
    return ["DELETE", `/topics/${enc(f.name.value.trim())}`];
  },
  "add-partitions": (f) => ["POST", `/topics/${enc(f.topic.value.trim())}/partitions`,
    {count: Number(f.count.value)}],
  "alter-config": (f) => {
    const key = f.key.value.trim();
    const value = f.value.value;
    return ["PATCH", `/topics/${enc(f.topic.value.trim())}/configs`,
      value === "" ? {set: {}, delete: [key]} : {set: {[key]: value}, delete: []}];
  },
  "elect-leaders": (f) => {
    const topic = f.topic.value.trim();
    const partition = optionalInt(f.partition.value);
    let partitions = null;
    if (topic) {
      const info = state.topics.find((t) => t.name === topic);
      const all = info ? [...Array(info.partitions).keys()] : [0];
      partitions = (partition === null ? all : [partition]).map((p) => ({topic, partition: p}));
    }
    const replica = optionalInt(f.replica.value);
    if (replica === null) return ["POST", "/elect-leaders", {partitions, election: f.election.value}];
    if (!topic || partition === null) throw new Error("a named replica needs a topic and a partition");
    return ["POST", "/elect-leaders", {partitions, election: f.election.value, replica}];
  },
  "reset-offsets": (f) => {
    const body = {to: f.to.value};
    if (f.to.value === "timestamp") body.timestamp = optionalInt(f.value.value);
    if (f.to.value === "offset") body.offset = optionalInt(f.value.value);
    if (f.topic.value.trim()) body.topic = f.topic.value.trim();
    return ["POST", `/groups/${enc(f.group.value.trim())}/reset-offsets`, body];
  },
  "controlled-shutdown": (f) => {
    const broker = Number(f.broker.value);
    if (!confirm(`Move leadership off broker ${broker} and fence it (until it restarts)?`)) return null;
    return ["POST", `/brokers/${enc(broker)}/controlled-shutdown`];
  },
  maintenance: (f) => {
    const broker = Number(f.broker.value);
    return [f.mode.value === "in" ? "PUT" : "DELETE", `/brokers/${enc(broker)}/maintenance`];
  },
  "delete-group": (f) => {
    if (!confirm(`Delete group ${f.group.value}?`)) return null;
    return ["DELETE", `/groups/${enc(f.group.value.trim())}`];
  },
};

async function runAction(event) {
  event.preventDefault();
  const form = event.target;
  const out = form.querySelector(".result");
  const button = form.querySelector("button");
  let request;
  try {
    request = ACTIONS[form.id](form);
  } catch (e) {
    out.replaceChildren(errorText(e));
    return;
  }
  if (!request) return;
  button.disabled = true;
  out.replaceChildren(el("span", {class: "muted"}, "working…"));
  try {
    const data = await call(...request);
    out.replaceChildren(resultText(data));
  } catch (e) {
    out.replaceChildren(errorText(e));
  } finally {
    button.disabled = false;
  }
}

// ------------------------------------------------------------------ start

document.addEventListener("DOMContentLoaded", () => {
  const saved = sessionStorage.getItem("kraft.token");
  if (saved) $("token").value = saved;
  $("token").addEventListener("change", () => sessionStorage.setItem("kraft.token", token()));
  $("show-internal").addEventListener("change", renderTopics);
  $("records-form").addEventListener("submit", fetchRecords);
  for (const id of Object.keys(ACTIONS)) $(id).addEventListener("submit", runAction);
  window.addEventListener("resize", drawChart);
  poll();
});
