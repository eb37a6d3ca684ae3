// switchboard console: the page. Plain JavaScript, no build step, no CDN.
//
// Everything it shows comes from PostgreSQL through the console's JSON API
// (/api/conversations, /api/messages, /api/dead); the live stream
// (/api/events, Server-Sent Events) shows a new inbound message at once and
// makes the page read PostgreSQL again after each outcome. When the stream
// opens (first time or after a reconnect) or says "resync", the page reads
// everything again, so nothing is missed while it was away.
//
// Every text from outside is put in the page with textContent, never as
// HTML; links only for http(s) URLs. The page holds no secret: the token
// lives in an HttpOnly cookie.
'use strict';

const PAGE = 50;       // rows per page of the API

const state = {
  current: null,       // {provider, channel, address} of the open conversation
  messages: [],        // its messages from /api/messages, newest first
  oldest: 0,           // smallest id shown (paging)
  live: [],            // inbound events seen live, not yet read back from PostgreSQL
  codes: new Map(),    // event id -> code a rule captured, seen live (rule_matched outcomes)
};

const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function key(c) {
  return c.provider + '|' + c.channel + '|' + c.address;
}

function when(ms) {
  if (!ms) return '';
  const d = new Date(ms);
  return d.toLocaleString();
}

async function getJSON(url) {
  const r = await fetch(url, {credentials: 'same-origin', cache: 'no-store'});
  if (r.status === 401) {
    location.href = '/login';
    throw new Error('401');
  }
  if (!r.ok) throw new Error(url + ': ' + r.status);
  return r.json();
}

async function post(url, fields) {
  const r = await fetch(url, {
    method: 'POST', credentials: 'same-origin', body: new URLSearchParams(fields),
  });
  let body = {};
  try { body = await r.json(); } catch (e) { /* no JSON */ }
  return {status: r.status, body: body};
}

function safeLink(url, text) {
  if (typeof url === 'string' && /^https?:\/\//i.test(url)) {
    const a = el('a', null, text || url);
    a.href = url;
    a.rel = 'noopener noreferrer';
    a.target = '_blank';
    return a;
  }
  return el('span', null, text || url || '');
}

// A list the API serves newest first, page by page (?before=ID): first()
// reads the newest page again, more() the next older one. Where the API
// says where the next page starts (next; 0: nothing older), that wins:
// a page of conversations may be short and still have older ones.
function pager(url, idOf, moreButton, render) {
  const p = {items: [], after: 0};
  async function read(more) {
    const data = await getJSON(url + (more ? '?before=' + p.after : ''));
    p.items = more ? p.items.concat(data.items) : data.items;
    if (data.items.length) p.after = idOf(data.items[data.items.length - 1]);
    if (data.next !== undefined) {
      if (data.next > 0) p.after = data.next;
      $(moreButton).hidden = data.next === 0;
    } else {
      $(moreButton).hidden = data.items.length < PAGE;
    }
    render();
  }
  p.first = () => read(false);
  p.more = () => read(true);
  return p;
}

// ---- conversations -------------------------------------------------------

const conversations = pager('/api/conversations', (c) => c.last_id, 'more-conversations',
                            () => renderConversations());

function renderConversations() {
  const list = $('conversation-list');
  list.replaceChildren();
  // Conversations seen live but not yet stored come first.
  const shown = new Set(conversations.items.map(key));
  const liveOnly = [];
  for (const m of state.live) {
    const c = {provider: m.provider, channel: m.channel, address: m.from};
    if (!shown.has(key(c))) {
      shown.add(key(c));
      liveOnly.push(Object.assign(c, {body: m.text || '', profile_name: m.profile_name || '',
                                      at_ms: m.at_ms, direction: 'inbound', status: ''}));
    }
  }
  for (const c of liveOnly.reverse().concat(conversations.items)) {
    const li = el('li');
    li.dataset.key = key(c);
    if (state.current && key(state.current) === key(c)) li.classList.add('on');
    li.append(el('div', 'who', (c.profile_name ? c.profile_name + ' ' : '') + c.address));
    li.append(el('div', 'sub', c.provider + ' ' + c.channel + (c.opted_out ? ' · opted out' : '')));
    li.append(el('div', 'sub', (c.direction === 'outbound' ? '↪ ' : '') + (c.body || '')));
    li.addEventListener('click', () => openConversation(c));
    list.append(li);
  }
}

// ---- one conversation ----------------------------------------------------

async function openConversation(c) {
  state.current = {provider: c.provider, channel: c.channel, address: c.address};
  state.messages = [];
  state.oldest = 0;
  $('empty').hidden = true;
  $('thread').hidden = false;
  $('thread-title').textContent = c.address + ' · ' + c.provider + ' ' + c.channel;
  $('reply-result').textContent = '';
  $('reply-text').value = '';
  renderConversations();
  await loadMessages();
}

function messagesURL(before) {
  const q = new URLSearchParams(state.current);
  if (before) q.set('before', before);
  return '/api/messages?' + q.toString();
}

async function loadMessages() {
  if (!state.current) return;
  const want = key(state.current);
  const data = await getJSON(messagesURL(0));
  if (!state.current || key(state.current) !== want) return;
  // Keep older pages already loaded.
  const newest = new Map(data.items.map((m) => [m.id, m]));
  const older = state.messages.filter((m) => !newest.has(m.id) &&
    (!data.items.length || m.id < data.items[data.items.length - 1].id));
  state.messages = data.items.concat(older);
  state.oldest = state.messages.length ? state.messages[state.messages.length - 1].id : 0;
  $('older').hidden = data.items.length < PAGE && older.length === 0;
  forgetStoredLive();
  renderMessages();
}

async function olderMessages() {
  const data = await getJSON(messagesURL(state.oldest));
  state.messages = state.messages.concat(data.items);
  if (data.items.length) state.oldest = data.items[data.items.length - 1].id;
  $('older').hidden = data.items.length < PAGE;
  renderMessages();
}

// A live event is dropped once PostgreSQL returned its message.
function forgetStoredLive() {
  const cur = state.current;
  const stored = new Set();
  for (const m of state.messages) if (m.provider_id) stored.add(m.provider_id);
  state.live = state.live.filter((e) => {
    if (!cur || e.provider !== cur.provider || e.channel !== cur.channel) return true;
    return !stored.has(e.provider_id) && Date.now() - e.seen < 60000;
  });
}

const TICKS = {
  queued: '🕓 queued', accepted: '🕓 queued', sending: '🕓 queued', scheduled: '🕓 queued',
  sent: '✓ sent', delivered: '✓✓ delivered', read: '✓✓ read', played: '✓✓ played',
  failed: '✗ failed', undelivered: '✗ undelivered', canceled: '✗ canceled',
};

function renderDetails(box, d) {
  if (!d) return;
  const div = el('div', 'details');
  for (const m of d.media || []) {
    div.append(safeLink(m.url, '📎 ' + (m.filename || m.content_type || 'media') +
                                 (m.caption ? ': ' + m.caption : '')));
  }
  if (d.location) {
    const l = d.location;
    const text = '📍 ' + [l.name, l.address, l.label].filter(Boolean).join(', ') +
                 ' (' + l.latitude + ', ' + l.longitude + ')';
    div.append(l.url ? safeLink(l.url, text) : el('span', 'location', text));
  }
  if (d.digits) div.append(el('span', 'digits', '🔢 digits: ' + d.digits));
  if (d.speech) div.append(el('span', 'speech', '🗣 ' + d.speech));
  if (d.interactive) div.append(el('span', null, '▸ ' + (d.interactive.title || d.interactive.id || '')));
  if (d.reaction) div.append(el('span', null, 'reacted ' + (d.reaction.emoji || '(removed)')));
  box.append(div);
}

function renderMessage(m, live) {
  const li = el('li', 'msg ' + m.direction + (live ? ' live' : ''));
  li.dataset.id = m.id || '';
  li.dataset.providerId = m.provider_id || '';
  li.dataset.status = m.status || '';
  li.append(el('div', 'text', m.body));
  renderDetails(li, m.details);
  // Stored with the message (captures), or seen live before it was read.
  const code = m.captured || (m.event_uid && state.codes.get(m.event_uid));
  if (code) li.append(el('span', 'code', 'code captured: ' + code));
  const meta = el('div', 'meta', when(m.at_ms));
  if (m.direction === 'outbound') {
    const s = (m.status || '').toLowerCase();
    const tick = el('span', 'tick ' + s, TICKS[s] || s);
    tick.classList.add('status');
    meta.append(tick);
    if (m.outbox_state === 'not_sent' || m.outbox_state === 'dead' || m.outbox_state === 'failed') {
      meta.append(el('span', 'tick failed', ' ' + m.outbox_state + ': ' + (m.reason || m.last_error)));
    }
    if (m.retries > 0) meta.append(retried(m));
  }
  li.append(meta);
  return li;
}

function renderMessages() {
  const list = $('messages');
  list.replaceChildren();
  const cur = state.current;
  const items = state.messages.slice().reverse();
  for (const m of items) list.append(renderMessage(m, false));
  for (const e of state.live) {
    if (e.provider === cur.provider && e.channel === cur.channel && e.from === cur.address) {
      list.append(renderMessage({id: 0, direction: 'inbound', body: e.text || '', status: '',
                                 provider_id: e.provider_id, at_ms: e.at_ms, details: e.details,
                                 event_uid: e.id}, true));
    }
  }
}

async function sendReply(ev) {
  ev.preventDefault();
  if (!state.current) return;
  const text = $('reply-text').value;
  const r = await post('/api/reply', Object.assign({text: text}, state.current));
  const out = $('reply-result');
  if (r.status === 200) {
    out.textContent = 'Queued.';
    $('reply-text').value = '';
  } else if (r.body && r.body.reason) {
    out.textContent = 'Not sent: ' + r.body.reason.replace(/_/g, ' ') + '.';
  } else {
    out.textContent = 'Failed: ' + ((r.body && r.body.error) || r.status);
  }
  scheduleRefresh();
}

// ---- dead letters --------------------------------------------------------

// A Retry from this console, as the outbox row keeps it (retries, retried_at).
function retried(r) {
  return el('span', 'retried', 'retried from the console at ' + when(r.retried_at_ms) +
                               (r.retries > 1 ? ' (' + r.retries + ' times)' : ''));
}

const dead = pager('/api/dead', (d) => d.id, 'more-dead', () => renderDead());

function renderDead() {
  const body = $('dead-list');
  body.replaceChildren();
  for (const d of dead.items) {
    const tr = el('tr');
    tr.dataset.outboxId = d.id;
    tr.dataset.state = d.state;
    const why = el('td', 'why', d.reason || d.last_error);
    if (d.retries > 0) why.append(el('br'), retried(d));
    tr.append(el('td', null, d.id), el('td', 'state', d.state), el('td', null, d.to),
              el('td', null, d.body), why, el('td', null, d.attempts));
    const td = el('td');
    if (d.state === 'failed' || d.state === 'dead') {
      const b = el('button', 'retry', 'Retry');
      b.type = 'button';
      b.addEventListener('click', async () => {
        b.disabled = true;
        const r = await post('/api/retry', {id: d.id});
        b.textContent = r.status === 200 ? 'Retrying' : 'Failed: ' + ((r.body && r.body.error) || r.status);
        scheduleRefresh();
      });
      td.append(b);
    }
    tr.append(td);
    body.append(tr);
  }
}

// ---- tabs, refresh and the live stream -----------------------------------

function showTab(dead) {
  $('tab-dead').classList.toggle('on', dead);
  $('tab-conversations').classList.toggle('on', !dead);
  $('dead').hidden = !dead;
  $('conversations').hidden = dead;
  $('conversation').hidden = dead;
  document.querySelector('main').classList.toggle('dead', dead);
}

async function refreshAll() {
  await Promise.all([conversations.first(), loadMessages(), dead.first()]);
}

let refreshTimer = null;
function scheduleRefresh() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => {
    refreshTimer = null;
    refreshAll().catch((e) => console.warn(e));
  }, 150);
}

function onEvent(e) {
  if (e.kind !== 'message' && e.kind !== 'gather') {
    scheduleRefresh();
    return;
  }
  if (state.live.some((x) => x.id === e.id)) return;
  e.seen = Date.now();
  state.live.push(e);
  if (state.live.length > 200) state.live.shift();
  renderConversations();
  if (state.current) renderMessages();
}

function connect() {
  const live = $('live');
  const source = new EventSource('/api/events');
  source.addEventListener('hello', () => {
    live.textContent = 'live';
    live.classList.remove('off');
    // Opened or reopened: read PostgreSQL again, so nothing was missed.
    refreshAll().catch((e) => console.warn(e));
  });
  source.addEventListener('resync', () => refreshAll().catch((e) => console.warn(e)));
  source.addEventListener('event', (m) => onEvent(JSON.parse(m.data)));
  source.addEventListener('outcome', (m) => {
    const o = JSON.parse(m.data);
    if (o.outcome === 'rule_matched' && o.event_id) {
      state.codes.set(o.event_id, o.captured || o.digits || o.text || '');
      if (state.current) renderMessages();
    }
    scheduleRefresh();
  });
  source.addEventListener('console', () => scheduleRefresh());
  source.onerror = () => {
    live.textContent = 'reconnecting';
    live.classList.add('off');
  };
}

$('tab-conversations').addEventListener('click', () => showTab(false));
$('tab-dead').addEventListener('click', () => showTab(true));
$('more-conversations').addEventListener('click', () => conversations.more());
$('more-dead').addEventListener('click', () => dead.more());
$('older').addEventListener('click', () => olderMessages());
$('reply').addEventListener('submit', sendReply);
connect();
