// The yggsim page: hosts, the live message stream, and forms that drive
// hosts through the sim's API. Plain JavaScript, no build step.
//
// Everything shown here comes from hosts (facts, dispatchers, payloads,
// even host ids), which are not trusted. It is put into the page only as
// text: through el(), which appends strings as text nodes, or through
// textContent. Nothing here parses HTML, and the Content-Security-Policy
// the sim serves refuses inline script in case that ever changes.
'use strict';

const CC = '/api/cloud-connector';
const SIM = '/api/sim';
const MAX_HOST_ROWS = 1000;
const MAX_STREAM_ROWS = 500;
const HISTORY = 200; // messages of history the stream starts with
const NACK_KEY = 'yggdrasil-error';

const $ = (id) => document.getElementById(id);

// el creates an element of class cls holding children; strings become text
// nodes, never markup.
function el(tag, cls, ...children) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  for (const c of children) {
    if (c !== null && c !== undefined) e.append(typeof c === 'string' ? c : c instanceof Node ? c : String(c));
  }
  return e;
}

function show(node, ...children) { node.replaceChildren(...children); }

// api calls the sim and returns the decoded answer, or throws an Error
// whose message is the answer's detail.
async function api(method, path, body) {
  const opts = { method, headers: {} };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const key = $('psk-key').value;
  if (path.startsWith(CC + '/') && key !== '') {
    opts.headers['x-rh-cloud-connector-client-id'] = $('psk-client-id').value;
    opts.headers['x-rh-cloud-connector-psk'] = key;
  }
  const resp = await fetch(path, opts);
  const text = await resp.text();
  let data = text;
  try { data = text === '' ? null : JSON.parse(text); } catch (e) { /* not JSON: keep the text */ }
  if (!resp.ok) throw new Error(`${resp.status}: ${errorDetail(data)}`);
  return data;
}

function errorDetail(data) {
  if (data && typeof data === 'object') {
    if (typeof data.detail === 'string') return data.detail;
    if (Array.isArray(data.errors) && data.errors.length > 0) return data.errors.map((e) => e.detail || e.title || JSON.stringify(e)).join('; ');
    return JSON.stringify(data);
  }
  return String(data);
}

// list accepts a bare array or a page of one ({"data": [...]}).
function list(body) {
  if (Array.isArray(body)) return body;
  if (body && Array.isArray(body.data)) return body.data;
  return [];
}

const hostPath = (id) => `${SIM}/hosts/${encodeURIComponent(id)}`;

function clock(t) {
  const d = new Date(t);
  return isNaN(d) ? '' : d.toISOString().slice(11, 23);
}

function ago(t) {
  const d = new Date(t);
  if (isNaN(d) || d.getFullYear() < 2000) return '';
  const s = Math.max(0, Math.round((Date.now() - d) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

function pretty(v) {
  try { return JSON.stringify(v, null, 2); } catch (e) { return String(v); }
}

// payloadOf returns a message's payload as a value (JSON) or a string.
function payloadOf(m) {
  if (m.payload !== undefined) return m.payload;
  if (m.payload_text !== undefined) return m.payload_text;
  if (m.payload_base64 !== undefined) return `(binary, base64) ${m.payload_base64}`;
  return '';
}

// nackOf returns {code, message} when m is a negative acknowledgement: a
// data message whose metadata carries yggdrasil-error.
function nackOf(m) {
  const p = m && m.payload;
  if (!p || typeof p !== 'object' || !p.metadata || typeof p.metadata !== 'object') return null;
  if (!Object.prototype.hasOwnProperty.call(p.metadata, NACK_KEY)) return null;
  const c = p.content && typeof p.content === 'object' ? p.content : {};
  return { code: String(p.metadata[NACK_KEY] || c.error || ''), message: typeof c.message === 'string' ? c.message : '' };
}

// details is a collapsed <details> whose summary is a one-line preview.
function details(summary, full) {
  const d = el('details', null, el('summary', null, summary), el('pre', null, full));
  return d;
}

function preview(v, n = 120) {
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  return s.length > n ? s.slice(0, n) + '…' : s;
}

// ---- info ----

async function loadInfo() {
  const i = await api('GET', `${SIM}/info`);
  const parts = [`mqtt ${i.mqtt}`];
  if (i.mqtts) parts.push(`mqtts ${i.mqtts}`);
  parts.push(`broker ${i.broker_running ? 'running' : 'stopped'}`);
  if (i.network && i.network.mode) parts.push(`network ${i.network.mode}`);
  show($('info'), parts.join(' · '));
  return i;
}

// ---- hosts ----

const openFacts = new Set(); // hosts whose facts the user opened
let hostsTimer = null;
let hostsLoading = false;
let hostsAgain = false;

// refreshHosts reloads the host table, at most one request at a time.
async function refreshHosts() {
  if (hostsLoading) { hostsAgain = true; return; }
  hostsLoading = true;
  hostsLoaded = Date.now();
  try {
    const hosts = list(await api('GET', `${SIM}/hosts`));
    renderHosts(hosts);
    $('hosts-error').hidden = true;
  } catch (e) {
    show($('hosts-error'), `hosts: ${e.message}`);
    $('hosts-error').hidden = false;
  } finally {
    hostsLoading = false;
    if (hostsAgain) { hostsAgain = false; scheduleHosts(); }
  }
}

// scheduleHosts refreshes the hosts soon after a change, but at most once
// a second, however busy the stream.
let hostsLoaded = 0;
function scheduleHosts() {
  if (hostsTimer !== null) return;
  const wait = Math.max(100, 1000 - (Date.now() - hostsLoaded));
  hostsTimer = setTimeout(() => { hostsTimer = null; refreshHosts(); }, wait);
}

function renderHosts(hosts) {
  const online = hosts.filter((h) => h.state === 'online').length;
  show($('host-count'), `${online} online of ${hosts.length}` + (hosts.length > MAX_HOST_ROWS ? `, showing the first ${MAX_HOST_ROWS}` : ''));
  $('hosts-empty').hidden = hosts.length > 0;
  const rows = hosts.slice(0, MAX_HOST_ROWS).map(hostRow);
  show($('host-rows'), ...rows);
  show($('host-ids'), ...hosts.slice(0, MAX_HOST_ROWS).map((h) => {
    const o = document.createElement('option');
    o.value = h.client_id;
    return o;
  }));
}

function hostRow(h) {
  const tr = el('tr', h.nacks && h.nacks.length > 0 ? 'host has-nacks' : 'host');
  tr.dataset.host = h.client_id;
  const state = h.state || 'unknown';
  const client = [h.client_name, h.client_version].filter(Boolean).join(' ');

  const facts = h.canonical_facts && typeof h.canonical_facts === 'object' ? h.canonical_facts : {};
  const factsCell = details(`${Object.keys(facts).length} facts`, pretty(facts));
  factsCell.open = openFacts.has(h.client_id);
  factsCell.addEventListener('toggle', () => {
    if (factsCell.open) openFacts.add(h.client_id); else openFacts.delete(h.client_id);
  });

  const disp = h.dispatchers && typeof h.dispatchers === 'object' ? h.dispatchers : {};
  const dispList = el('ul', 'dispatchers', ...Object.keys(disp).sort().map((name) => {
    const feats = disp[name];
    const li = el('li', null, el('span', 'directive', name));
    if (feats && typeof feats === 'object' && Object.keys(feats).length > 0) li.title = preview(feats, 400);
    return li;
  }));

  const nacks = Array.isArray(h.nacks) ? h.nacks : [];
  const nackCell = el('td', nacks.length > 0 ? 'nacks nack' : 'nacks', String(nacks.length));
  if (nacks.length > 0) {
    const last = nacks[nacks.length - 1];
    nackCell.append(el('div', 'last-nack', `latest: ${last.code}${last.message ? ' — ' + last.message : ''}`));
  }

  const use = el('button', 'use', 'Use');
  use.type = 'button';
  use.title = 'Use this host in the forms';
  use.addEventListener('click', () => useHost(h.client_id));

  tr.append(
    el('td', 'id', el('code', null, h.client_id)),
    el('td', 'state', el('span', `badge ${state}`, state)),
    el('td', 'client', client),
    el('td', 'facts', factsCell),
    el('td', 'dispatchers-cell', dispList),
    nackCell,
    el('td', 'seen', ago(h.last_seen)),
    el('td', 'actions', use),
  );
  return tr;
}

function useHost(id) {
  $('send-host').value = id;
  $('control-host').value = id;
  $('stream-filter').value = id;
  applyFilter();
}

// ---- forms ----

function resultLine(cls, ...children) { return el('div', cls, ...children); }

// parseContent reads the content box: JSON as it is, anything else as a
// JSON string.
function parseContent(text) {
  if (text.trim() === '') return null;
  try { return JSON.parse(text); } catch (e) { return text; }
}

function parseMetadata(text) {
  if (text.trim() === '') return undefined;
  const m = JSON.parse(text);
  if (!m || typeof m !== 'object' || Array.isArray(m) || Object.values(m).some((v) => typeof v !== 'string')) {
    throw new Error('metadata must be a JSON object of strings');
  }
  return m;
}

async function onSend(ev) {
  ev.preventDefault();
  const out = $('send-result');
  const host = $('send-host').value.trim();
  let metadata;
  try {
    metadata = parseMetadata($('send-metadata').value);
  } catch (e) {
    show(out, resultLine('error', `metadata: ${e.message}`));
    return;
  }
  const body = { directive: $('send-directive').value.trim(), payload: parseContent($('send-content').value) };
  if (metadata) body.metadata = metadata;
  $('send-button').disabled = true;
  show(out, resultLine('waiting', `sending to ${host}…`));
  try {
    const sent = await api('POST', `${CC}/v2/connections/${encodeURIComponent(host)}/message`, body);
    const id = sent && sent.id;
    show(out, resultLine('sent', 'sent ', el('code', 'message-id', String(id)), ` to ${host}`));
    if (!$('send-wait').checked || !id) return;
    out.append(resultLine('waiting', 'waiting for the answer…'));
    const answer = await api('GET', `${SIM}/answers/${encodeURIComponent(id)}?timeout=30s`);
    out.querySelector('.waiting').remove();
    out.append(answerView(answer));
  } catch (e) {
    const w = out.querySelector('.waiting');
    if (w) w.remove();
    out.append(resultLine('error', e.message));
  } finally {
    $('send-button').disabled = false;
  }
}

function answerView(m) {
  const nack = nackOf(m);
  const box = el('div', nack ? 'answer nack' : 'answer');
  box.append(el('div', 'answer-head', nack ? 'negative acknowledgement ' : 'answer ', el('code', null, m.message_id || ''),
    ` (seq ${m.seq}, ${clock(m.time)})`));
  if (nack) box.append(el('div', 'nack-reason', `${nack.code}${nack.message ? ': ' + nack.message : ''}`));
  box.append(el('pre', 'answer-payload', pretty(payloadOf(m))));
  return box;
}

async function onControl(ev) {
  ev.preventDefault();
  const action = ev.submitter ? ev.submitter.value : 'ping';
  const host = $('control-host').value.trim();
  const out = $('control-result');
  const buttons = $('control-form').querySelectorAll('button');
  buttons.forEach((b) => { b.disabled = true; });
  show(out, resultLine('waiting', `${action} ${host}…`));
  try {
    let line;
    if (action === 'ping') {
      const r = await api('POST', `${hostPath(host)}/ping?timeout=10s`);
      line = resultLine('pong', `pong from ${host} in ${Number(r.rtt_ms).toFixed(2)} ms`);
    } else {
      const account = await accountOf(host);
      const body = { node_id: host };
      if (account) body.account = account;
      if (action === 'reconnect') body.delay = Math.max(1, parseInt($('control-delay').value, 10) || 1); // cloud-connector refuses 0
      else if ($('control-message').value !== '') body.message = $('control-message').value;
      const r = await api('POST', `${CC}/v1/connection/${action}`, body);
      line = resultLine('sent', `${action} sent to ${host}`, r && r.id ? el('code', 'message-id', ` ${r.id}`) : null);
    }
    show(out, line);
  } catch (e) {
    show(out, resultLine('error', `${action} ${host}: ${e.message}`));
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

// accountOf asks cloud-connector's v2 status for the host's account, which
// v1 requests carry; "" when it cannot be had.
async function accountOf(host) {
  try {
    const st = await api('GET', `${CC}/v2/connections/${encodeURIComponent(host)}/status`);
    return st && typeof st.account === 'string' ? st.account : '';
  } catch (e) {
    return '';
  }
}

// ---- stream ----

let lastSeq = 0;
let pending = [];
let flushTimer = null;

function startStream(since) {
  const src = new EventSource(`${SIM}/events?since=${since}`);
  src.onopen = () => show($('stream-status'), 'stream: live');
  src.onerror = () => show($('stream-status'), 'stream: reconnecting…');
  // A since beyond the sim's latest message (the sim restarted, and the
  // EventSource reconnected with its old Last-Event-ID) is answered from
  // the oldest message held: count from there again.
  src.addEventListener('reset', (ev) => {
    try { lastSeq = Math.max(0, JSON.parse(ev.data).oldest_seq - 1); } catch (e) { lastSeq = 0; }
  });
  src.onmessage = (ev) => {
    let m;
    try { m = JSON.parse(ev.data); } catch (e) { return; }
    if (typeof m.seq === 'number') {
      if (m.seq <= lastSeq) return; // replayed after a reconnect
      lastSeq = m.seq;
    }
    pending.push(m);
    if (pending.length > MAX_STREAM_ROWS) pending = pending.slice(-MAX_STREAM_ROWS);
    if (m.host && (m.kind === 'control' || nackOf(m))) scheduleHosts();
    if (flushTimer === null) flushTimer = setTimeout(flush, 100);
  };
}

function flush() {
  flushTimer = null;
  const tbody = $('stream-rows');
  const rows = pending.map(messageRow).reverse(); // newest first
  pending = [];
  tbody.prepend(...rows);
  while (tbody.childElementCount > MAX_STREAM_ROWS) tbody.lastElementChild.remove();
}

// summaryOf is a one-line preview of a payload: the part of the envelope
// that differs from message to message.
function summaryOf(p) {
  if (!p || typeof p !== 'object' || Array.isArray(p)) return preview(p);
  const c = p.content;
  switch (p.type) {
    case 'data': {
      const md = p.metadata && typeof p.metadata === 'object' && Object.keys(p.metadata).length > 0 ? ` metadata ${preview(p.metadata, 60)}` : '';
      return `${preview(c === undefined ? null : c)}${md}`;
    }
    case 'connection-status':
      if (c && typeof c === 'object') {
        const d = c.dispatchers && typeof c.dispatchers === 'object' ? Object.keys(c.dispatchers) : [];
        return preview(`${c.state}` + (d.length > 0 ? `, dispatchers ${d.join(' ')}` : ''));
      }
      break;
    case 'command':
      if (c && typeof c === 'object') return preview(`${c.command}` + (c.arguments ? ` ${JSON.stringify(c.arguments)}` : ''));
      break;
    case 'event':
      return preview(c === undefined ? null : c);
  }
  return preview(p);
}

function messageRow(m) {
  const nack = nackOf(m);
  const tr = el('tr', nack ? 'message nack' : 'message');
  tr.dataset.host = m.host || '';
  if (m.message_id) tr.dataset.messageId = m.message_id;
  if (m.dir) tr.classList.add(m.dir === 'out' ? 'from-host' : 'to-host');
  const p = payloadOf(m);
  const directive = p && typeof p === 'object' && typeof p.directive === 'string' ? p.directive : '';
  const payload = el('td', 'payload', details(summaryOf(p), pretty(p)));
  if (nack) payload.prepend(el('div', 'nack-reason', `NACK ${nack.code}${nack.message ? ': ' + nack.message : ''}`));
  tr.append(
    el('td', 'seq', String(m.seq)),
    el('td', 'time', clock(m.time)),
    el('td', 'host', m.host || m.topic),
    dirCell(m.dir),
    el('td', 'kind', m.kind || ''),
    el('td', 'type', m.type || ''),
    el('td', 'mid', el('code', null, m.message_id || '')),
    el('td', 'rto', el('code', null, m.response_to || '')),
    el('td', 'directive', directive),
    payload,
  );
  tr.hidden = !matchesFilter(tr);
  return tr;
}

function dirCell(dir) {
  const td = el('td', 'dir', dir === 'out' ? '↑' : dir === 'in' ? '↓' : '');
  if (dir === 'out') td.title = 'from the host';
  if (dir === 'in') td.title = 'to the host';
  return td;
}

function matchesFilter(tr) {
  const f = $('stream-filter').value.trim();
  return f === '' || tr.dataset.host === f;
}

function applyFilter() {
  for (const tr of $('stream-rows').children) tr.hidden = !matchesFilter(tr);
}

// ---- start ----

async function main() {
  $('send-form').addEventListener('submit', onSend);
  $('control-form').addEventListener('submit', onControl);
  $('stream-filter').addEventListener('input', applyFilter);
  $('stream-clear').addEventListener('click', () => show($('stream-rows')));
  let since = 0;
  try {
    const info = await loadInfo();
    since = Math.max(0, (info.last_seq || 0) - HISTORY);
  } catch (e) {
    show($('info'), `info: ${e.message}`);
  }
  lastSeq = since;
  startStream(since);
  refreshHosts();
  setInterval(refreshHosts, 5000);
  setInterval(() => loadInfo().catch(() => {}), 5000);
}

main();
