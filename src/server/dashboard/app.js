// ferry's dashboard: polls the server's HTTP API (docs/http-api.md) about once a second
// and draws apps, containers, recent calls and one selected call with its logs and graph of futures.
// Plain DOM, no framework; every value from the server goes in through textContent, never as HTML.
'use strict';

const POLL_MS = 1000;
const TERMINAL = new Set(['succeeded', 'failed', 'cancelled', 'tail_called', 'expired']);
const SVG_NS = 'http://www.w3.org/2000/svg';

const $ = (sel) => document.querySelector(sel);
let token = '';
let selected = null;      // the call id shown in the detail panel
let lastDetail = {};      // JSON text last drawn per part, so unchanged data is not redrawn
let pollTimer = null;

// ---------- helpers ----------

/// Creates an element: el('td', {class: 'mono'}, 'text', childNode, ...).
function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith('svg:') ? document.createElementNS(SVG_NS, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'onclick') node.addEventListener('click', v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function fmtDuration(s) {
  if (s === null || s === undefined) return '';
  if (s < 0.01) return `${(s * 1000).toFixed(1)} ms`;
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(Math.floor(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
function fmtBytes(n) {
  if (!n) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; ++i; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}
// Times in one format, the CLI's: 2026-12-06 14:03:07 (local time), or 14:03:07 where the day is clear.
const pad2 = (n) => String(n).padStart(2, '0');
const fmtTime = (t) => {
  if (!t) return '';
  const d = new Date(t * 1000);
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
};
const fmtDate = (t) => {
  if (!t) return '';
  const d = new Date(t * 1000);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${fmtTime(t)}`;
};
// An error message in a table row: its first line, cut to 160 characters (the whole one is the cell's
// tooltip, and the call's detail shows it).
const summarize = (message) => {
  const first = (message || '').split('\n')[0];
  return first.length > 160 || first !== message ? `${first.slice(0, 160)}…` : first;
};
// Call ids are a random base plus a counter: their last digits tell calls of one server apart.
const shortId = (id) => `…${(id || '').slice(-6)}`;
const statusBadge = (status) => el('span', { class: `status status-${status}`, 'data-status': status }, status);
const callLink = (id) => el('a', { href: `#call=${id}`, class: 'mono' }, id);

// ---------- token and fetching ----------

class Unauthorized extends Error {}

/// The URL fragment's key=value pairs (#token=...&call=fc-...), decoded as written (a '+' stays a '+').
function hashParams() {
  const params = new Map();
  for (const part of location.hash.slice(1).split('&')) {
    const i = part.indexOf('=');
    if (i > 0) params.set(part.slice(0, i), decodeURIComponent(part.slice(i + 1)));
  }
  return params;
}

/// Takes a token from the fragment into localStorage, out of the address bar (and so out of the history
/// and of screenshots), and returns the call the fragment names, if any.
function readHash() {
  const params = hashParams();
  if (params.has('token')) {
    token = params.get('token');
    localStorage.setItem('ferry.token', token);
    const rest = location.hash.slice(1).split('&').filter((p) => !p.startsWith('token=')).join('&');
    history.replaceState(null, '', location.pathname + location.search + (rest ? `#${rest}` : ''));
  }
  return params.get('call') || null;
}

async function api(path, options = {}) {
  if (!token) throw new Unauthorized('no token');
  const headers = { Authorization: `Bearer ${token}`, ...(options.headers || {}) };
  const res = await fetch(path, { ...options, headers, cache: 'no-store' });
  if (res.status === 401) throw new Unauthorized('the server refused the token');
  const body = await res.json().catch(() => null);
  if (!res.ok) {
    const err = new Error((body && body.error && body.error.message) || `${res.status} ${res.statusText}`);
    err.status = res.status;
    throw err;
  }
  return body;
}

function askForToken(reason) {
  $('#token-reason').textContent = reason === 'no token'
    ? 'Paste the server\'s token (the file "token" in its state directory).'
    : 'The server refused the token: paste the current one (the file "token" in its state directory).';
  $('#token-form').hidden = false;
  $('#forget-token').hidden = true;
  setConnection('auth', 'needs a token');
  $('#token-input').focus();
}

function setConnection(state, text) {
  const c = $('#connection');
  c.dataset.state = state;
  c.textContent = text;
}

// ---------- polling ----------

async function poll() {
  clearTimeout(pollTimer);
  try {
    const [apps, containers, calls] = await Promise.all([
      api('/v1/apps'), api('/v1/containers'), api('/v1/calls?limit=100'),
    ]);
    renderApps(apps.apps || []);
    renderContainers(containers.containers || []);
    renderCalls(calls.calls || []);
    if (selected) await refreshDetail(selected);
    setConnection('live', `live · ${fmtTime(Date.now() / 1000)}`);
  } catch (e) {
    if (e instanceof Unauthorized) return askForToken(e.message);  // polling resumes when a token is given
    setConnection('offline', `offline: ${e.message}`);
  }
  pollTimer = setTimeout(poll, POLL_MS);
}

// ---------- apps, containers, calls ----------

function renderApps(apps) {
  const root = $('#apps');
  const key = JSON.stringify(apps);
  if (root.dataset.key === key) return;
  root.dataset.key = key;
  if (!apps.length) return root.replaceChildren(el('p', { class: 'empty' }, 'No apps yet: deploy one with `ferry deploy`.'));
  root.replaceChildren(...apps.map((app) => el('div', { class: 'app', 'data-app': app.name },
    el('div', { class: 'app-head' },
      el('h3', {}, app.name),
      el('span', { class: `kind kind-${app.kind}` }, app.kind),
      app.digest ? el('span', { class: 'mono dim', title: app.digest }, app.digest.slice(0, 12)) : null,
      app.deployed_at ? el('span', { class: 'dim' }, `deployed ${fmtDate(app.deployed_at)}`) : null),
    el('table', { class: 'functions' },
      el('thead', {}, el('tr', {}, ['function', 'signature', 'max inputs', 'max containers', 'min', 'buffer',
        'timeout', 'retries', 'scaledown', 'per container', 'queued', 'running', 'containers']
        .map((h, i) => el('th', { class: i >= 2 ? 'num' : null }, h)))),
      el('tbody', {}, (app.functions || []).flatMap((f) => {
        const o = f.options || {};
        const needs = [o.cpu ? `${o.cpu} CPU` : '', o.memory_mb ? `${o.memory_mb} MiB` : '',
          o.gpus ? `${o.gpus} GPU` : '', o.placement ? `on ${o.placement}` : ''].filter(Boolean).join(', ');
        const cells = [
          ['max_inputs', o.max_inputs], ['max_containers', o.max_containers], ['min_containers', o.min_containers],
          ['buffer_containers', o.buffer_containers], ['timeout_s', o.timeout_s ? `${o.timeout_s} s` : 'none'],
          ['max_retries', o.max_retries], ['scaledown_window_s', o.scaledown_window_s === undefined ? '' : `${o.scaledown_window_s} s`],
          ['resources', needs || 'any host'],
          ['queued', f.queued], ['running', f.running],
          ['containers', f.waiting_containers ? `${f.containers} +${f.waiting_containers} waiting` : f.containers],
        ];
        const row = el('tr', { 'data-function': `${app.name}.${f.name}` },
          el('td', { class: 'mono strong' }, f.name),
          el('td', { class: 'mono dim' }, f.signature),
          cells.map(([name, v]) => el('td', { class: 'num', 'data-option': name }, v ?? '')));
        // Containers it wants that no host has room for: say why, under the function.
        return f.waiting_containers ? [row, el('tr', { class: 'waiting', 'data-waiting': `${app.name}.${f.name}` },
          el('td', { colspan: 13 }, `${f.waiting_containers} container${f.waiting_containers === 1 ? '' : 's'} `
            + `waiting for a host: ${f.waiting_for}`))] : [row];
      }))))));
}

function renderContainers(containers) {
  containers = [...containers].sort((a, b) => a.id - b.id);  // the API lists them in no particular order
  $('#container-count').textContent = containers.length ? `(${containers.length})` : '';
  const rows = containers.map((c) => el('tr', { 'data-container-id': c.id, 'data-state': c.state },
    el('td', { class: 'mono' }, c.id), el('td', {}, c.app), el('td', { class: 'mono' }, c.function),
    el('td', {}, el('span', { class: `state state-${c.state}` }, c.state)),
    el('td', { class: 'num' }, c.inputs), el('td', { class: 'num mono' }, c.pid),
    el('td', { class: 'num' }, fmtDuration(c.uptime_s)), el('td', { class: 'num' }, fmtBytes(c.rss_bytes))));
  $('#containers tbody').replaceChildren(...(rows.length ? rows
    : [el('tr', { class: 'empty' }, el('td', { colspan: 8 }, 'No containers running.'))]));
}

function renderCalls(calls) {
  // Redrawn only when something changed, so a click never lands on a row being replaced.
  const tbody = $('#calls tbody');
  const key = JSON.stringify(calls);
  if (tbody.dataset.key === key) return;
  tbody.dataset.key = key;
  $('#call-count').textContent = calls.length ? `(${calls.length})` : '';
  const rows = calls.map((c) => el('tr', {
    'data-call-id': c.call_id, 'data-status': c.status, class: c.call_id === selected ? 'selected' : null,
    onclick: () => selectCall(c.call_id),
  },
  el('td', { class: 'mono' }, c.call_id),
  el('td', { class: 'mono' }, `${c.app}.${c.function}`),
  el('td', {}, statusBadge(c.status)),
  el('td', { title: fmtDate(c.created_at) }, fmtTime(c.created_at)),
  el('td', { class: 'num' }, fmtDuration(c.duration_s)),
  el('td', { class: 'error-message', title: c.error ? c.error.message : null }, c.error ? summarize(c.error.message) : '')));
  tbody.replaceChildren(...(rows.length ? rows
    : [el('tr', { class: 'empty' }, el('td', { colspan: 6 }, 'No calls yet.'))]));
}

// ---------- one call ----------

function selectCall(id) {
  if (id) location.hash = `call=${id}`;  // hashchange shows it; a reload keeps it
  else history.replaceState(null, '', location.pathname + location.search);
  showCall(id);
}

function showCall(id) {
  if (id === selected) return;
  selected = id;
  lastDetail = {};
  $('#call-detail').hidden = !id;
  for (const tr of document.querySelectorAll('#calls tbody tr')) tr.classList.toggle('selected', tr.dataset.callId === id);
  if (!id) return;
  $('#call-detail-id').textContent = id;
  $('#call-detail').dataset.callId = id;
  $('#call-fields').replaceChildren();
  $('#call-logs').replaceChildren();
  $('#call-graph').replaceChildren();
  refreshDetail(id).catch(() => {});
}

async function refreshDetail(id) {
  const [call, graph, logs] = await Promise.all([
    api(`/v1/calls/${encodeURIComponent(id)}`),
    api(`/v1/calls/${encodeURIComponent(id)}/graph`).catch(() => null),
    api(`/v1/calls/${encodeURIComponent(id)}/logs`).catch(() => null),
  ]).catch((e) => {
    if (e instanceof Unauthorized) throw e;
    if (id === selected) renderCallMissing(id, e);
    return [];
  });
  if (id !== selected || !call) return;
  if (changed('call', call)) renderCall(call);
  if (graph && changed('graph', graph)) renderGraph(graph, id);
  if (logs && changed('logs', logs)) renderLogs(logs.logs || []);
}

function changed(part, value) {
  const key = JSON.stringify(value);
  if (lastDetail[part] === key) return false;
  lastDetail[part] = key;
  return true;
}

function renderCallMissing(id, e) {
  $('#call-fields').replaceChildren(el('p', { class: 'empty' }, `Cannot show ${id}: ${e.message}`));
}

function renderCall(c) {
  $('#call-detail').dataset.status = c.status;
  $('#cancel-call').hidden = TERMINAL.has(c.status);
  const fields = [
    ['function', el('span', { class: 'mono' }, `${c.app}.${c.function}`)],
    ['status', statusBadge(c.status)],
    ['created', fmtDate(c.created_at)],
    ['ended', fmtDate(c.ended_at)],
    ['duration', fmtDuration(c.duration_s)],
    ['attempts', c.attempts],
    ['container', c.container_id ?? ''],
    ['parent', c.parent ? callLink(c.parent) : ''],
    ['arguments from', (c.arguments_from || []).length ? el('span', {}, c.arguments_from.map((a) => [callLink(a), ' '])) : ''],
    ['tail call', c.tail_call ? callLink(c.tail_call) : ''],
    ['result', 'result' in c ? el('code', { id: 'call-result' }, JSON.stringify(c.result)) : ''],
  ].filter(([, v]) => v !== '' && v !== undefined && v !== null);
  $('#call-fields').replaceChildren(...fields.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));

  const err = $('#call-error');
  err.hidden = !c.error;
  if (c.error) {
    // The exception's type when there is one, with the error's code beside it; the code alone otherwise.
    err.replaceChildren(el('strong', {}, c.error.type || c.error.code || 'error'),
      c.error.type && c.error.code ? el('span', { class: 'dim' }, ` (${c.error.code})`) : null,
      el('div', { class: 'error-text' }, c.error.message));
  }
  const p = c.progress;
  $('#call-progress').hidden = !p;
  if (p) {
    const pct = p.total > 0 ? Math.min(100, (100 * p.done) / p.total) : 0;
    $('#call-progress .progress-bar').style.width = `${pct}%`;
    $('#call-progress .progress-text').textContent = `${p.done}/${p.total}${p.message ? ` · ${p.message}` : ''}`;
  }
}

function renderLogs(logs) {
  const pre = $('#call-logs');
  const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  pre.replaceChildren(...(logs.length ? logs.map((l) => el('div', { class: `log log-${l.stream}`, 'data-seq': l.seq },
    el('span', { class: 'log-time' }, fmtTime(l.time)), ' ', l.text)) : [el('span', { class: 'dim' }, 'No output.')]));
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}

// The graph of futures, layered: a node's column is its longest path from the root (so a call that
// takes another's result sits to its right); a column's nodes are ordered by, and placed as near as they
// can to, the mean row of the nodes that point at them, which keeps most edges short and uncrossed.
function renderGraph(graph, currentId) {
  const svg = $('#call-graph');
  const nodes = graph.nodes || [];
  const edges = (graph.edges || []).filter((e) => nodes.some((n) => n.call_id === e.from) && nodes.some((n) => n.call_id === e.to));
  const depth = new Map(nodes.map((n) => [n.call_id, 0]));
  for (let pass = 0; pass < nodes.length; ++pass) {
    let moved = false;
    for (const e of edges) {
      if (depth.get(e.to) < depth.get(e.from) + 1 && depth.get(e.from) + 1 < nodes.length) {
        depth.set(e.to, depth.get(e.from) + 1);
        moved = true;
      }
    }
    if (!moved) break;
  }
  const W = 156, H = 46, GX = 60, GY = 18, PAD = 16;
  const columns = [];
  for (const n of nodes) (columns[depth.get(n.call_id)] ||= []).push(n);
  const row = new Map();
  columns.forEach((col = [], x) => {
    const mean = (n) => {
      const rows = edges.filter((e) => e.to === n.call_id && row.has(e.from)).map((e) => row.get(e.from));
      return rows.length ? rows.reduce((a, b) => a + b, 0) / rows.length : Infinity;
    };
    if (x > 0) col.sort((a, b) => mean(a) - mean(b));  // stable: ties keep the server's order
    let next = 0;  // rows in that order, at least one apart
    for (const n of col) {
      const m = x > 0 ? mean(n) : 0;
      row.set(n.call_id, Number.isFinite(m) ? Math.max(next, m) : next);
      next = row.get(n.call_id) + 1;
    }
  });
  // Edges that skip columns arc over the top, through a margin kept for them.
  const skips = (e) => depth.get(e.to) > depth.get(e.from) + 1;
  const TOP = PAD + (edges.some(skips) ? 36 : 0);
  const pos = new Map(nodes.map((n) => [n.call_id, { x: PAD + depth.get(n.call_id) * (W + GX), y: TOP + row.get(n.call_id) * (H + GY) }]));
  const incoming = (id) => edges.filter((e) => e.to === id).length;
  const width = PAD * 2 + Math.max(1, columns.length) * (W + GX) - GX;
  const height = TOP + PAD + (Math.max(0, ...row.values()) + 1) * (H + GY) - GY;
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('width', width);
  svg.setAttribute('height', height);
  svg.style.minWidth = `${Math.round(width * 0.75)}px`;  // shrinks to fit its panel down to 3/4, then scrolls

  const defs = el('svg:defs', {}, ['child', 'argument', 'tail'].map((kind) => el('svg:marker', {
    id: `arrow-${kind}`, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse',
  }, el('svg:path', { d: 'M0,0 L10,5 L0,10 z', class: `arrow arrow-${kind}` }))));

  const edgeEls = edges.map((e) => {
    const a = pos.get(e.from), b = pos.get(e.to);
    // A cubic curve: left to right between the facing sides (over the top when it skips columns), or
    // (same column, backwards) an arc out to the right. Its label sits near whichever end the edge
    // shares with fewer others: by the target for a fan-out, by the source for a fan-in.
    const x1 = a.x + W, y1 = a.y + H / 2, y2 = b.y + H / 2;
    const forward = b.x > a.x, x2 = forward ? b.x : b.x + W;
    let c1 = [(x1 + x2) / 2, y1], c2 = [(x1 + x2) / 2, y2];
    if (skips(e)) { c1 = [x1 + 50, PAD - 20]; c2 = [x2 - 50, PAD - 20]; }
    if (!forward) c1 = c2 = [x1 + 40 + Math.abs(y2 - y1) / 4, (y1 + y2) / 2];
    const d = `M${x1},${y1} C${c1} ${c2} ${x2},${y2}`;
    const t = !forward || skips(e) ? 0.5 : incoming(e.to) > 1 ? 0.3 : 0.75, u = 1 - t;
    const bez = (p0, p1, p2, p3) => u * u * u * p0 + 3 * u * u * t * p1 + 3 * u * t * t * p2 + t * t * t * p3;
    const anchor = t < 0.5 ? 'start' : t > 0.5 ? 'end' : 'middle';  // the label reaches away from the node it is by
    const lx = bez(x1, c1[0], c2[0], x2) + (t < 0.5 ? 4 : t > 0.5 ? -4 : 0), ly = bez(y1, c1[1], c2[1], y2) - 4;
    return el('svg:g', { class: `edge edge-${e.kind}`, 'data-kind': e.kind, 'data-from': e.from, 'data-to': e.to },
      el('svg:path', { d, 'marker-end': `url(#arrow-${e.kind})` }),
      el('svg:text', { x: lx, y: ly, 'text-anchor': anchor }, e.kind));
  });

  const nodeEls = nodes.map((n) => {
    const p = pos.get(n.call_id);
    const g = el('svg:g', {
      class: `node status-${n.status}${n.call_id === currentId ? ' current' : ''}${n.call_id === graph.root ? ' root' : ''}`,
      'data-call-id': n.call_id, 'data-status': n.status, transform: `translate(${p.x},${p.y})`,
      onclick: () => selectCall(n.call_id),
    },
    el('svg:title', {}, `${n.app}.${n.function} ${n.call_id} · ${n.status}${n.error ? ` · ${n.error.message}` : ''}`),
    el('svg:rect', { width: W, height: H, rx: 6 }),
    el('svg:rect', { class: 'status-strip', width: 6, height: H, rx: 3 }),
    el('svg:text', { x: 14, y: 19, class: 'node-fn' }, n.function.length > 22 ? `${n.function.slice(0, 21)}…` : n.function),
    el('svg:text', { x: 14, y: 36, class: 'node-meta' }, `${shortId(n.call_id)} · ${n.status}`));
    return g;
  });
  svg.replaceChildren(defs, ...edgeEls, ...nodeEls);
}

// ---------- start ----------

function start() {
  $('#server-address').textContent = location.host;
  const call = readHash();
  token = token || localStorage.getItem('ferry.token') || '';
  $('#token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    token = $('#token-input').value.trim();
    localStorage.setItem('ferry.token', token);
    $('#token-form').hidden = true;
    $('#forget-token').hidden = false;
    $('#token-input').value = '';
    poll();
  });
  $('#forget-token').addEventListener('click', () => {
    localStorage.removeItem('ferry.token');
    token = '';
    clearTimeout(pollTimer);
    askForToken('no token');
  });
  $('#close-call').addEventListener('click', () => selectCall(null));
  $('#cancel-call').addEventListener('click', () => {
    if (selected) api(`/v1/calls/${encodeURIComponent(selected)}/cancel`, { method: 'POST' }).catch((e) => alert(e.message));
  });
  window.addEventListener('hashchange', () => {
    const hadToken = token;
    const id = readHash();
    showCall(id);
    if (token !== hadToken) { $('#token-form').hidden = true; $('#forget-token').hidden = false; poll(); }
  });
  if (call) showCall(call);
  if (!token) return askForToken('no token');
  poll();
}

start();
