// talon chat — the page. No framework, no build step. Every piece of text
// that comes from users is put into the page with textContent, never as
// HTML.
'use strict';

const $ = (id) => document.getElementById(id);
const ROOM_RE = /^[A-Za-z0-9_-]{1,32}$/;
const MAX_ITEMS = 500; // messages and events kept in the page

const ERRORS = {
  name: 'Names are 1–24 printable characters (letters, digits, punctuation, single spaces).',
  room: 'Room names are 1–32 letters, digits, “-” or “_”.',
};

let room = roomFromUrl();
let me = null;        // the signed-in name
let ws = null;        // the current socket
let retry = 0;        // reconnect attempts since the last open
let retryTimer = 0;
let maxBytes = 2048;  // the server's limit, from its welcome
let pending = '';     // the last text sent, given back if it was refused
let noticeTimer = 0;
// With several server workers, a message sent as this socket joined can
// come both in the welcome's history and live, and events sent on
// different workers at once can arrive out of order: ids (one sequence
// for messages, joins and leaves) sort it out.
let shown = new Set(); // ids of the messages on the page
let membersId = 0;     // id of the event the member count is from
// Across processes (Redis) a socket subscribes before it reads the
// history, so live messages may come before the welcome: kept here and
// shown after the history.
let early = null;      // [] until the current socket's welcome

function roomFromUrl() {
  const r = new URLSearchParams(location.search).get('room') || '';
  return ROOM_RE.test(r) ? r : 'lobby';
}

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

// A notice above the messages. Sticky ones stay until `ms` passed or the
// next one; the others go away when the connection is back.
function notify(text, { sticky = false, ms = 0 } = {}) {
  const n = $('notice');
  clearTimeout(noticeTimer);
  n.textContent = text || '';
  n.hidden = !text;
  n.dataset.sticky = sticky ? '1' : '';
  if (text && ms) noticeTimer = setTimeout(() => notify(''), ms);
}

function setStatus(state, text) {
  const s = $('status');
  s.dataset.state = state;
  s.textContent = text;
}

function setMembers(n) {
  const m = $('members');
  m.dataset.count = String(n);
  m.textContent = `${n} online`;
}

function setComposer(on) {
  $('text').disabled = !on;
  $('send').disabled = !on;
  if (on && !matchMedia('(pointer: coarse)').matches) $('text').focus();
}

function show(view) {
  $('login').hidden = view !== 'login';
  $('chat').hidden = view !== 'chat';
  $('session').hidden = view !== 'chat';
}

function showLogin(message) {
  stopSocket();
  me = null;
  show('login');
  $('login-room').value = room;
  const n = $('login-notice');
  n.textContent = message || '';
  n.hidden = !message;
  document.title = 'talon chat';
  $('name').focus();
}

// null when not signed in ({"name":null}); throws when the server cannot
// be reached or fails. The body is read whatever the status: a response
// whose body nobody reads stays open in the browser, as a pending request.
async function whoAmI() {
  const r = await fetch('/api/me', { cache: 'no-store' });
  const body = await r.json().catch(() => null);
  if (r.status === 401) return null;
  if (!r.ok || !body) throw new Error(`GET /api/me: ${r.status}`);
  return body.name ?? null;
}

async function start() {
  let name;
  try {
    name = await whoAmI();
  } catch {
    setTimeout(start, 2000); // the server is down: try again
    return;
  }
  if (!name) {
    const err = new URLSearchParams(location.search).get('error');
    showLogin(ERRORS[err] || '');
    return;
  }
  me = name;
  enterRoom(room);
}

function enterRoom(r) {
  room = r;
  $('me').textContent = me;
  $('room-label').textContent = `#${room}`;
  $('room-input').value = '';
  document.title = `#${room} · talon chat`;
  show('chat');
  $('log').replaceChildren();
  $('members').textContent = '';
  notify('');
  retry = 0;
  connect();
}

function stopSocket() {
  clearTimeout(retryTimer);
  if (ws) {
    const s = ws;
    ws = null;
    s.onclose = s.onmessage = s.onopen = null;
    s.close(1000);
  }
}

function connect() {
  stopSocket();
  setStatus('connecting', 'connecting…');
  setComposer(false);
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const sock = new WebSocket(`${proto}//${location.host}/chat/${encodeURIComponent(room)}`);
  let opened = false;
  ws = sock;
  early = [];
  sock.onopen = () => {
    opened = true;
    retry = 0;
    setStatus('online', 'online');
    setComposer(true);
    if ($('notice').dataset.sticky !== '1') notify('');
  };
  sock.onmessage = (e) => onData(e.data);
  sock.onclose = (e) => {
    if (ws !== sock) return;
    ws = null;
    onClosed(e, opened);
  };
}

async function onClosed(e, opened) {
  setComposer(false);
  setStatus('offline', 'offline');
  if (e.code === 4001) {
    // The session was ended (signed out in another window): the server
    // closed this socket and would refuse a new one.
    setStatus('refused', 'signed out');
    showLogin('You were signed out.');
    return;
  }
  if (e.code === 1009) {
    // The server closes a socket that sends more than max_payload.
    notify(`Message too long: the limit is ${maxBytes} bytes, it was not sent. Reconnecting…`,
           { sticky: true, ms: 15000 });
    if (pending && !$('text').value) $('text').value = pending;
    pending = '';
    retryTimer = setTimeout(connect, 300);
    return;
  }
  if (!opened) {
    // Refused before it opened; the browser does not tell why, so ask:
    // no name means the sign-in is gone (signed out, expired, or the
    // server restarted). Otherwise (e.g. 429: too many rooms open with
    // this sign-in) try again later.
    let name;
    try { name = await whoAmI(); } catch { name = undefined; }
    if (name === null) {
      setStatus('refused', 'not signed in');
      showLogin('Please sign in to chat (the server did not accept your sign-in).');
      return;
    }
  }
  const delay = Math.min(10000, 500 * 2 ** retry++);
  if ($('notice').dataset.sticky !== '1' || $('notice').hidden)
    notify(`Connection lost. Reconnecting in ${Math.max(1, Math.round(delay / 1000))} s…`);
  retryTimer = setTimeout(connect, delay);
}

function onData(raw) {
  let m;
  try { m = JSON.parse(raw); } catch { return; }
  if (early && m.type !== 'welcome' && m.type !== 'signed_out') {
    early.push(m);
    return;
  }
  switch (m.type) {
    case 'welcome':
      maxBytes = m.max_bytes || maxBytes;
      $('log').replaceChildren();
      shown = new Set();
      membersId = 0;
      if (m.history.length) {
        add(el('li', 'event history-mark',
               `Last ${m.history.length} message${m.history.length === 1 ? '' : 's'} in #${room}`));
        for (const h of m.history) addMessage(h);
      }
      if (early) {
        const later = early;
        early = null;
        for (const e of later) onData(JSON.stringify(e));
      }
      break;
    case 'signed_out':
      // Signed out through another server process: as the 4001 close
      // this server would have sent.
      stopSocket();
      onClosed({ code: 4001 }, true);
      break;
    case 'message':
      if (m.name === me && m.text === pending) pending = '';
      addMessage(m);
      break;
    case 'join':
      addEvent(m.name === me ? `You joined #${room}` : `${m.name} joined`, m.time);
      newerMembers(m);
      break;
    case 'leave':
      addEvent(`${m.name} left`, m.time);
      newerMembers(m);
      break;
    case 'error':
      notify(m.text, { sticky: true, ms: 6000 });
      break;
  }
}

function colorOf(name) {
  let h = 0;
  for (const c of name) h = (h * 31 + c.codePointAt(0)) >>> 0;
  return `c${h % 8}`;
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

function add(li) {
  const log = $('log');
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  log.append(li);
  while (log.children.length > MAX_ITEMS) log.firstElementChild.remove();
  if (atBottom) log.scrollTop = log.scrollHeight;
}

// A member count, unless one from a newer event is shown already.
function newerMembers(m) {
  if (m.id > membersId) {
    membersId = m.id;
    setMembers(m.members);
  }
}

function addMessage(m) {
  if (shown.has(m.id)) return;
  shown.add(m.id);
  if (shown.size > 4 * MAX_ITEMS) shown = new Set([...shown].slice(-MAX_ITEMS));
  const li = el('li', m.name === me ? 'msg mine' : 'msg');
  li.dataset.id = String(m.id);
  const meta = el('div', 'meta');
  meta.append(el('span', `author ${colorOf(m.name)}`, m.name));
  const t = el('time', 'time', clock(m.time));
  t.dateTime = new Date(m.time).toISOString();
  meta.append(t);
  li.append(meta, el('div', 'text', m.text));
  add(li);
}

function addEvent(text, time) {
  const li = el('li', 'event', text);
  if (time) li.title = clock(time);
  add(li);
}

$('send-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = $('text');
  const text = input.value;
  if (!text.trim() || !ws || ws.readyState !== WebSocket.OPEN) return;
  pending = text;
  ws.send(text);
  input.value = '';
  if ($('notice').dataset.sticky === '1') notify('');
});

$('room-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const r = $('room-input').value.trim();
  if (!ROOM_RE.test(r)) {
    notify(ERRORS.room, { sticky: true, ms: 6000 });
    return;
  }
  history.pushState(null, '', `/?room=${encodeURIComponent(r)}`);
  enterRoom(r);
});

window.addEventListener('popstate', () => {
  if (me) enterRoom(roomFromUrl());
});

start();
