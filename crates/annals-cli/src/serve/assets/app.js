// annals serve: the page. Everything that comes from the store is put into the document as
// text (text nodes, textContent, attribute values this script chose); the only markup is what
// this script builds itself. Live updates arrive as server-sent events: the page never polls.
'use strict';

const SVG_NS = 'http://www.w3.org/2000/svg';
const PAGE = 50;            // sessions per page
const ROWS = 500;           // entries per load
const JSON_SHOWN = 512 * 1024; // characters of an entry's indented JSON shown in the page
const CONTEXT = 25;         // entries shown before a linked entry

// ---------------------------------------------------------------------------------------------
// Building the document.

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false || child === '') continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

function show(...children) {
  const main = document.getElementById('main');
  main.replaceChildren(...children);
  return main;
}

function banner(text, kind, ...extra) {
  const el = h('div', { class: 'banner ' + (kind || '') }, h('span', {}, text), ...extra);
  el.append(h('button', { class: 'close', title: 'dismiss', type: 'button', onclick: () => el.remove() }, '\u00d7'));
  document.getElementById('banners').append(el);
  return el;
}

// ---------------------------------------------------------------------------------------------
// Formatting.

function bytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u += 1; }
  return `${v.toFixed(1)} ${units[u]}`;
}

function time(ms) {
  if (ms === null || ms === undefined) return '';
  return new Date(ms).toISOString().replace('T', ' ').replace('Z', 'Z');
}

function short(id) {
  return id ? '\u2026' + id.slice(-8) : '';
}

function plural(n, one, many) {
  return `${n.toLocaleString('en')} ${n === 1 ? one : many || one + 's'}`;
}

// ---------------------------------------------------------------------------------------------
// Talking to the server.

async function getJSON(url) {
  const r = await fetch(url, { headers: { accept: 'application/json' } });
  const body = await r.json().catch(() => null);
  if (!r.ok) throw new Error(body && body.error ? body.error : `${r.status} ${r.statusText}`);
  return body;
}

async function failure(r) {
  const body = await r.json().catch(() => null);
  return new Error(body && body.error ? body.error : `${r.status} ${r.statusText}`);
}

// The items of a stream of JSON lines, as they arrive.
async function* jsonLines(url, signal) {
  const r = await fetch(url, { signal });
  if (!r.ok) throw await failure(r);
  const reader = r.body.getReader();
  const decoder = new TextDecoder();
  let buffered = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffered += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (line) yield JSON.parse(line);
    }
  }
  buffered += decoder.decode();
  if (buffered.trim()) yield JSON.parse(buffered);
}

// At most `max` characters of a text answer; the rest is not downloaded.
async function readText(url, max) {
  const r = await fetch(url);
  if (!r.ok) throw await failure(r);
  const reader = r.body.getReader();
  const decoder = new TextDecoder();
  let text = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
    if (text.length >= max) {
      reader.cancel();
      return { text: text.slice(0, max), cut: true };
    }
  }
  return { text: text + decoder.decode(), cut: false };
}

const api = {
  session: (s) => `/api/sessions/${s}`,
  segment: (s, g) => `/api/sessions/${s}/segments/${g}`,
};

const pages = {
  session: (s) => `/s/${s}`,
  segment: (s, g) => `/s/${s}/${g}`,
  entry: (s, g, seq) => `/s/${s}/${g}/${seq}`,
};

// ---------------------------------------------------------------------------------------------
// Routing: every page has its own URL, to paste into a bug report.

function route() {
  const parts = location.pathname.split('/').filter(Boolean).map(decodeURIComponent);
  const q = new URLSearchParams(location.search);
  if (parts.length === 0) return sessionsPage(q);
  if (parts[0] === 'search' && parts.length === 1) return searchPage(q);
  if (parts[0] === 's' && parts.length >= 2 && parts.length <= 4) {
    const seq = parts.length === 4 ? Number(parts[3]) : null;
    return sessionPage(parts[1], parts[2] || null, seq, q);
  }
  show(h('p', { class: 'error' }, 'There is no page here.'), h('a', { href: '/' }, 'All sessions'));
  return undefined;
}

async function storeInfo() {
  try {
    const info = await getJSON('/api/info');
    const el = document.getElementById('store');
    el.textContent = info.store;
    el.title = `annals ${info.version}, read-only` + (info.token_required ? ', token required' : '');
  } catch (e) {
    banner(`The server does not answer: ${e.message}`, 'bad');
  }
}

// ---------------------------------------------------------------------------------------------
// Sessions.

async function sessionsPage(q) {
  const offset = Math.max(0, Number(q.get('offset')) || 0);
  const id = (q.get('id') || '').trim();
  const filter = h('input', { type: 'text', name: 'id', value: id, placeholder: 'part of an id', 'aria-label': 'filter by id' });
  const text = h('input', { type: 'text', name: 'q', placeholder: 'text in an entry', 'aria-label': 'filter by text' });
  const main = show(
    h('h1', {}, 'Sessions'),
    h('div', { class: 'toolbar' },
      h('form', { method: 'get', action: '/', class: 'toolbar' },
        h('label', {}, 'id ', filter), h('button', { type: 'submit' }, 'Filter')),
      h('form', { method: 'get', action: '/search', class: 'toolbar', id: 'text-filter' },
        h('label', {}, 'text ', text), h('input', { type: 'hidden', name: 'sessions', value: '1' }),
        h('button', { type: 'submit' }, 'Find sessions'))),
  );
  let page;
  try {
    const idPart = id ? `&id=${encodeURIComponent(id)}` : '';
    page = await getJSON(`/api/sessions?offset=${offset}&limit=${PAGE}${idPart}`);
  } catch (e) {
    main.append(h('p', { class: 'error' }, e.message));
    return;
  }
  if (page.total === 0) {
    main.append(h('p', { class: 'empty' }, id ? 'No session id contains that.' : 'This store has no sessions yet.'));
    return;
  }
  const health = [];
  const body = h('tbody');
  for (const s of page.sessions) {
    const cell = h('td', { class: 'health', 'data-session': s.session }, s.error ? 'unreadable' : '\u2026');
    if (s.error) { cell.classList.add('bad'); cell.title = s.error; } else health.push([s.session, cell]);
    if (s.damaged_segments > 0) { cell.textContent = `${s.damaged_segments} damaged`; cell.classList.add('bad'); }
    const last = s.last_ms ? h('span', { title: s.last_is_entry_time ? 'append time of the last entry' : 'last change of the files (this format keeps no append times)' },
      time(s.last_ms), s.last_is_entry_time ? '' : ' *') : '';
    body.append(h('tr', { 'data-session': s.session },
      h('td', {}, h('a', { class: 'id', href: pages.session(s.session), title: s.session }, s.session)),
      h('td', { class: 'mono' }, last),
      h('td', { class: 'num' }, s.error ? '' : s.entries.toLocaleString('en')),
      h('td', { class: 'num' }, s.error ? '' : String(s.segments)),
      h('td', { class: 'num' }, s.error ? '' : bytes(s.bytes)),
      cell));
  }
  main.append(h('table', { class: 'sessions' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Session (newest first)'), h('th', {}, 'Last entry (UTC)'),
      h('th', {}, 'Entries'), h('th', {}, 'Segments'), h('th', {}, 'Size'), h('th', {}, 'Health (verify)'))),
    body));
  const link = (o) => `/?offset=${o}` + (id ? `&id=${encodeURIComponent(id)}` : '');
  const end = Math.min(page.total, offset + page.sessions.length);
  main.append(h('div', { class: 'pager' },
    offset > 0 ? h('a', { href: link(Math.max(0, offset - PAGE)), rel: 'prev' }, '\u2190 newer') : '',
    h('span', { class: 'dim', id: 'page-range' }, `${(offset + 1).toLocaleString('en')}\u2013${end.toLocaleString('en')} of ${plural(page.total, 'session')}`),
    end < page.total ? h('a', { href: link(offset + PAGE), rel: 'next' }, 'older \u2192') : ''));
  checkHealth(health);
}

// Verify's verdict for each listed session, one at a time (every line of every file is read).
async function checkHealth(cells) {
  for (const [session, cell] of cells) {
    if (!cell.isConnected) return;
    try {
      const v = await getJSON(`${api.session(session)}/verify`);
      const s = verdict(v);
      cell.textContent = s.text;
      cell.className = 'health ' + s.kind;
      cell.title = s.detail;
    } catch (e) {
      cell.textContent = 'unreadable';
      cell.className = 'health bad';
      cell.title = e.message;
    }
  }
}

function verdict(v) {
  let problems = 0;
  let torn = 0;
  let unreadable = 0;
  const details = [];
  for (const seg of v.segments) {
    for (const [what, r] of [['log', seg.log], ['trace', seg.trace]]) {
      if (r.error) { unreadable += 1; details.push(`${short(seg.segment)} ${what}: ${r.error}`); continue; }
      problems += r.problem_count;
      if (r.torn_tail) torn += 1;
      for (const p of r.problems.slice(0, 3)) details.push(`${r.path}:${p.line}:${p.offset}: ${p.reason}`);
    }
  }
  if (problems > 0) return { kind: 'bad', text: plural(problems, 'problem'), detail: details.join('\n') };
  if (unreadable > 0) return { kind: 'bad', text: 'unreadable', detail: details.join('\n') };
  if (torn > 0) return { kind: 'note', text: 'ok, torn tail', detail: 'an interrupted append left an unfinished last line; readers ignore it' };
  return { kind: 'ok', text: '\u2713 ok', detail: 'every line checked' };
}

// ---------------------------------------------------------------------------------------------
// The fork tree, drawn: one bar per segment along the entry axis, from its fork point to its
// end, joined to the segment it forked from at the entry where it did.

// `segments` come in the fork tree's reading order (the server's, the same as `annals tree`):
// parents before their forks, each with its parent and depth.
function forkTree(session, segments, current) {
  const order = segments.map((s) => ({ s }));
  const newestNode = segments.find((s) => s.newest);
  const newest = newestNode ? newestNode.segment : null;
  const max = Math.max(1, ...segments.map((s) => s.entries));
  const W = 960; const labels = 360; const left = 14; const right = W - labels; const rowH = 26; const top = 16;
  const x = (n) => left + ((right - left) * Math.min(n, max)) / max;
  const y = new Map(order.map((o, i) => [o.s.segment, top + i * rowH]));
  const picture = svg('svg', { id: 'forktree', viewBox: `0 0 ${W} ${top + rowH * order.length}`, role: 'img', 'aria-label': 'fork tree of the session' });
  for (const { s } of order) {
    const at = s.fork ? s.fork.at : 0;
    const yy = y.get(s.segment);
    const classes = [s.segment === current ? 'current' : '', s.damage ? 'damaged' : ''].filter(Boolean).join(' ');
    const link = svg('a', {
      href: pages.segment(session, s.segment), class: classes || null, 'data-segment': s.segment,
      'data-parent': s.fork ? s.fork.segment : null, 'data-at': s.fork ? at : null,
    });
    const tip = [`segment ${s.segment}`, plural(s.entries, 'entry', 'entries')];
    if (s.fork) tip.push(`forked from ${s.fork.segment} at entry ${at}`);
    if (s.damage) tip.push(`damaged: ${s.damage}`);
    link.append(svg('title', {}, tip.join('\n')));
    const parentY = s.parent ? y.get(s.parent) : undefined;
    if (parentY !== undefined) {
      link.append(svg('path', { class: 'link', d: `M${x(at)} ${parentY} V${yy}` }));
      link.append(svg('circle', { class: 'node', cx: x(at), cy: parentY, r: 3 }));
    }
    link.append(svg('line', { class: 'bar', x1: x(at), y1: yy, x2: Math.max(x(s.entries), x(at) + 1), y2: yy }));
    link.append(svg('circle', { class: 'node', cx: x(s.entries), cy: yy, r: 5 }));
    let label = `${short(s.segment)} \u00b7 ${s.entries.toLocaleString('en')} ${s.entries === 1 ? 'entry' : 'entries'}`;
    if (s.fork) label += parentY === undefined ? ` \u00b7 forked from missing ${short(s.fork.segment)}` : ` \u00b7 forked at ${at}`;
    if (s.segment === newest) label += ' \u00b7 newest \u2605';
    if (s.damage) label += ' \u00b7 damaged';
    link.append(svg('text', { x: right + 14, y: yy + 4, class: s.segment === newest ? 'newest' : null }, label));
    picture.append(link);
  }
  return picture;
}

// ---------------------------------------------------------------------------------------------
// A session: its fork tree, attachments, health, and one segment as a transcript.

async function sessionPage(session, segment, seq, q) {
  const main = show(h('h1', {}, 'Session ', h('span', { class: 'id' }, session)));
  let info;
  try {
    info = await getJSON(api.session(session));
  } catch (e) {
    main.append(h('p', { class: 'error' }, e.message), h('a', { href: '/' }, 'All sessions'));
    return;
  }
  if (!info.segments.length) {
    main.append(h('p', { class: 'empty' }, 'This session has no segments.'));
    return;
  }
  const shown = segment || info.newest_segment;
  if (!info.segments.some((s) => s.segment === shown)) {
    main.append(h('p', { class: 'error' }, `This session has no segment ${segment}.`));
    return;
  }
  scopeSearch(session);
  const view = new SegmentView(session, info, shown, !segment, seq, q);
  view.mount(main);
}

class SegmentView {
  constructor(session, info, segment, following, seq, q) {
    this.session = session;
    this.info = info;
    this.segment = segment;
    this.following = following; // the URL names the session only: follow its newest segment
    this.focus = seq;
    const from = q.get('from');
    const to = q.get('to');
    this.from = from !== null && from !== '' ? Math.max(0, Number(from)) : seq !== null ? Math.max(0, seq - CONTEXT) : 0;
    this.to = to !== null && to !== '' ? Number(to) : null;
    this.since = q.get('since') || '';
    this.until = q.get('until') || '';
    this.events = null;
  }

  mount(main) {
    this.treeBox = h('div', { class: 'panel-body' });
    this.health = h('div', { id: 'health' });
    this.title = h('div', { class: 'head' });
    this.rows = h('div', { id: 'transcript' });
    this.moreBox = h('div', { class: 'more' });
    this.traceRows = h('div', { id: 'trace', class: 'trace' });
    this.live = h('span', { class: 'live', id: 'live' }, '');
    const attachments = this.attachments();
    main.append(
      h('div', { class: 'panel' }, h('div', { class: 'head' }, h('strong', {}, 'Fork tree'),
        h('span', { class: 'dim' }, `${plural(this.info.segments.length, 'segment')}; click one to open it`)), this.treeBox),
      this.health,
      attachments,
      this.controls(),
      h('div', { class: 'layout' },
        h('section', { class: 'panel', 'aria-label': 'transcript' }, this.title, this.rows, this.moreBox),
        h('aside', { class: 'panel', 'aria-label': 'trace' }, h('div', { class: 'head' }, h('strong', {}, 'Trace'),
          h('span', { class: 'dim' }, 'debug events beside the log')), this.traceRows)),
    );
    this.drawTree(this.info.segments);
    this.checkHealth();
    this.start();
  }

  get api() { return api.segment(this.session, this.segment); }

  attachments() {
    const list = this.info.attachments || [];
    if (!list.length && !this.info.attachments_error) return '';
    const items = list.map((a) => h('li', {},
      h('a', { href: `${api.session(this.session)}/attachments/${a.id}`, download: '' }, a.label || a.id.slice(0, 12)),
      h('span', { class: 'dim' }, ` ${a.type}, ${bytes(a.len)}, ${time(a.created_ms)}`)));
    return h('div', {}, h('h2', {}, 'Attachments'),
      this.info.attachments_error ? h('p', { class: 'error' }, this.info.attachments_error) : '',
      h('ul', { class: 'attachments' }, items));
  }

  controls() {
    const seqBox = h('input', { type: 'number', min: 0, name: 'seq', 'aria-label': 'entry number', placeholder: 'seq' });
    const fromBox = h('input', { type: 'number', min: 0, name: 'from', placeholder: 'from seq', value: this.from || null });
    const toBox = h('input', { type: 'number', min: 0, name: 'to', placeholder: 'to seq', value: this.to });
    const jump = h('form', { class: 'toolbar', id: 'jump', onsubmit: (ev) => {
      ev.preventDefault();
      if (seqBox.value !== '') location.assign(pages.entry(this.session, this.segment, Number(seqBox.value)));
    } }, h('label', {}, 'jump to entry ', seqBox), h('button', { type: 'submit' }, 'Go'));
    const time = (name, value, hint) => h('input', { type: 'text', name, value: value || null, placeholder: hint, size: 16, title: 'an age such as 10m or 2h, or a UTC time such as 2026-12-01T10:00, as annals cat --since/--until' });
    const range = h('form', { class: 'toolbar', id: 'range', method: 'get', action: pages.segment(this.session, this.segment) },
      h('label', {}, 'entries ', fromBox), h('label', {}, ' to ', toBox),
      h('label', {}, ' appended since ', time('since', this.since, '10m, 2026-12-01T10:00')),
      h('label', {}, ' until ', time('until', this.until, 'time')),
      h('button', { type: 'submit' }, 'Show'),
      h('a', { href: pages.segment(this.session, this.segment) }, 'all'));
    return h('div', { class: 'toolbar' }, jump, range);
  }

  drawTree(segments) {
    this.treeBox.replaceChildren(forkTree(this.session, segments, this.segment));
  }

  async checkHealth() {
    let v;
    try {
      v = await getJSON(`${api.session(this.session)}/verify`);
    } catch (e) {
      this.health.replaceChildren(h('p', { class: 'error' }, `Could not verify: ${e.message}`));
      return;
    }
    const notes = [];
    for (const seg of v.segments) {
      for (const [what, r] of [['log', seg.log], ['trace', seg.trace]]) {
        const where = seg.segment === this.segment ? 'this segment' : `segment ${short(seg.segment)}`;
        const link = h('a', { href: pages.segment(this.session, seg.segment) }, where);
        if (r.error) notes.push(h('div', { class: 'problem' }, link, ` (${what}): unreadable: ${r.error}`));
        else if (r.problem_count > 0) {
          const first = r.problems[0];
          notes.push(h('div', { class: 'problem' }, link, ` (${what}): ${plural(r.problem_count, 'problem')}; first at ${r.path}:${first.line}:${first.offset}: ${first.reason}`));
        } else if (r.torn_tail) {
          notes.push(h('div', { class: 'problem note' }, link, ` (${what}): torn tail of ${bytes(r.torn_tail.len)} at byte ${r.torn_tail.offset} (an interrupted append; readers ignore it)`));
        }
      }
    }
    this.health.replaceChildren(...(notes.length ? [h('h2', {}, 'Verify found')] : []), ...notes);
  }

  setTitle() {
    const seg = this.info.segments.find((s) => s.segment === this.segment) || {};
    const lineage = seg.fork ? h('span', { class: 'dim' }, ` forked from `,
      h('a', { href: pages.segment(this.session, seg.fork.segment) }, short(seg.fork.segment)), ` at entry ${seg.fork.at}`) : '';
    const count = this.tip ? this.tip.count : seg.entries;
    this.title.replaceChildren(h('strong', {}, 'Segment '), h('span', { class: 'id', title: this.segment }, this.segment), lineage,
      h('span', { class: 'dim', id: 'count' }, ` \u00b7 ${plural(count || 0, 'entry', 'entries')}`),
      this.following ? h('span', { class: 'dim', title: 'this page follows the newest segment of the session' }, ' \u00b7 following the newest') : '',
      this.live);
  }

  reset() {
    if (this.events) { this.events.close(); this.events = null; }
    this.byseq = new Map();
    this.windowStart = this.from;
    this.next = this.from;
    this.traceNext = 0;
    this.generation = 0;
    this.tip = null;
    this.rows.replaceChildren();
    this.traceRows.replaceChildren();
    this.moreBox.replaceChildren();
    this.setTitle();
  }

  async start() {
    this.reset();
    const entries = this.load(this.from);
    const trace = this.loadTrace();
    const reachedEnd = await entries;
    await trace;
    if (this.focus !== null) this.focusOn(this.focus, true);
    if (reachedEnd && this.bounded() === false) this.listen();
  }

  // Whether the range shown has an end (then nothing live can join it).
  bounded() {
    return this.to !== null || this.until !== '';
  }

  // Loads a range of entries; true if it reached the end of the segment.
  async load(from) {
    let to = this.to !== null ? `&to=${this.to}` : '';
    if (this.since) to += `&since=${encodeURIComponent(this.since)}`;
    if (this.until) to += `&until=${encodeURIComponent(this.until)}`;
    let end = null;
    try {
      for await (const item of jsonLines(`${this.api}/entries?from=${from}&limit=${ROWS}${to}`)) {
        if (item.kind === 'entry') this.addRow(item, false);
        else if (item.kind === 'end') end = item;
        else if (item.kind === 'error') banner(`Reading stopped: ${item.message}`, 'bad');
      }
    } catch (e) {
      this.rows.append(h('p', { class: 'error' }, e.message));
      return false;
    }
    if (!end) return false;
    if (end.tip) { this.tip = end.tip; this.generation = end.tip.generation; }
    const last = this.lastSeq();
    this.next = end.next !== null ? end.next : Math.max(this.tip ? this.tip.count : 0, last + 1, from);
    this.placeProblems(end.report);
    if (end.untimed > 0) {
      this.rows.append(h('div', { class: 'problem note' }, `${plural(end.untimed, 'entry', 'entries')} left out: a time range was given and they have no append time (format version 1 kept none).`));
    }
    this.moreBox.replaceChildren();
    if (!this.byseq.size && !end.report.problem_count) this.rows.append(h('p', { class: 'empty', id: 'no-entries' }, 'No entries in this range.'));
    if (end.next !== null) {
      this.moreBox.append(h('button', { type: 'button', id: 'more', onclick: () => this.more() }, `Show the next ${ROWS}`));
      return false;
    }
    this.setTitle();
    return true;
  }

  async more() {
    const reachedEnd = await this.load(this.next);
    if (reachedEnd && this.bounded() === false) this.listen();
  }

  async loadTrace() {
    try {
      for await (const item of jsonLines(`${this.api}/trace?from=0&limit=${ROWS}`)) {
        if (item.kind === 'trace') this.addTrace(item);
        else if (item.kind === 'end') {
          for (const p of item.report.problems) this.traceRows.append(h('div', { class: 'problem' }, `${item.report.path}:${p.line}:${p.offset}: ${p.reason}`));
        }
      }
    } catch (e) {
      this.traceRows.append(h('p', { class: 'error' }, e.message));
    }
    if (!this.traceRows.querySelector('.row')) this.traceRows.append(h('p', { class: 'empty' }, 'No trace events.'));
  }

  lastSeq() {
    let last = -1;
    for (const seq of this.byseq.keys()) last = Math.max(last, seq);
    return last;
  }

  // Damage where it is: a problem at line L sits before entry L - 2 (line 1 is the header).
  placeProblems(report) {
    for (const p of report.problems) {
      const el = h('div', { class: 'problem', id: `line-${p.line}`, 'data-line': p.line },
        `damaged line ${p.line} at byte ${p.offset} of ${report.path}: ${p.reason}`);
      const after = [...this.byseq.entries()].filter(([seq]) => seq >= p.line - 2).sort((a, b) => a[0] - b[0])[0];
      if (after) this.rows.insertBefore(el, after[1]);
      else this.rows.append(el);
    }
    if (report.problem_count > report.problems.length) {
      this.rows.append(h('div', { class: 'problem' }, `and ${plural(report.problem_count - report.problems.length, 'more problem')}`));
    }
    if (report.torn_tail) {
      this.rows.append(h('div', { class: 'problem note', id: 'torn-tail' },
        `torn tail: ${bytes(report.torn_tail.len)} at byte ${report.torn_tail.offset} (an interrupted append; readers ignore it)`));
    }
  }

  addRow(r, arrived) {
    const old = this.byseq.get(r.seq);
    const row = this.renderRow(r, 'entry');
    if (arrived) row.classList.add('new');
    if (old) old.replaceWith(row);
    else {
      const tail = this.rows.querySelector('#torn-tail');
      if (tail) this.rows.insertBefore(row, tail); else this.rows.append(row);
    }
    this.byseq.set(r.seq, row);
    const empty = this.rows.querySelector('#no-entries');
    if (empty) empty.remove();
  }

  addTrace(r) {
    const empty = this.traceRows.querySelector('.empty');
    if (empty) empty.remove();
    this.traceRows.append(this.renderRow(r, 'trace'));
    this.traceNext = Math.max(this.traceNext, r.seq + 1);
  }

  renderRow(r, kind) {
    const label = r.role || r.type || '';
    const family = /tool|function/i.test(`${r.type || ''} ${r.role || ''}`) ? 'tool'
      : /^(user|human)$/i.test(label) ? 'user'
        : /^(assistant|model|ai)$/i.test(label) ? 'assistant'
          : /^system$/i.test(label) ? 'system' : '';
    const entryApi = `${this.api}/entries/${r.seq}`;
    const body = h('div', { class: 'body' });
    const meta = h('div', { class: 'meta' },
      label ? h('span', { class: `badge ${family}` }, label) : '',
      r.role && r.type && r.type !== r.role ? h('span', { class: 'badge' }, r.type) : '',
      r.name ? h('code', { class: 'name' }, r.name) : '',
      h('span', { class: 'time', title: r.t === null ? 'no append time: this file\u2019s format (version 1) kept none' : 'append time (UTC)' }, r.t === null ? '\u2014' : time(r.t)),
      h('span', { class: 'size' }, bytes(r.len)),
      r.blob ? h('span', { class: 'badge blob', title: `kept as blob ${r.blob}` }, 'blob') : '');
    if (kind === 'entry') {
      meta.append(h('button', { type: 'button', class: 'linkish json-toggle', onclick: () => this.toggleJson(body, r) }, 'JSON'));
      if (r.cut || r.blob) meta.append(h('a', { href: entryApi, target: '_blank', rel: 'noopener', class: 'whole' }, `whole entry (${bytes(r.len)})`));
    }
    body.append(meta);
    if (r.text !== undefined && r.text !== null) {
      const text = h('div', { class: r.json_text ? 'text mono' : 'text' }, r.text + (r.cut ? ' \u2026' : ''));
      if (family === 'tool' && kind === 'entry') {
        const first = r.text.split('\n', 1)[0].slice(0, 120);
        body.append(h('details', { class: 'fold' }, h('summary', {}, first + (first.length < r.text.length ? ' \u2026' : '')), text));
      } else {
        body.append(text);
      }
    }
    const href = kind === 'entry' ? pages.entry(this.session, this.segment, r.seq) : null;
    return h('div', { class: `row ${kind}`, id: kind === 'entry' ? `e${r.seq}` : `t${r.seq}`, 'data-seq': r.seq },
      href ? h('a', { class: 'seq', href, title: 'link to this entry' }, String(r.seq)) : h('span', { class: 'seq' }, String(r.seq)),
      body);
  }

  async toggleJson(body, r) {
    let pre = body.querySelector('pre.json');
    if (pre) { pre.hidden = !pre.hidden; return; }
    pre = h('pre', { class: 'json' }, 'loading\u2026');
    body.append(pre);
    const whole = `${this.api}/entries/${r.seq}`;
    try {
      const { text, cut } = await readText(`${whole}?format=pretty`, JSON_SHOWN);
      pre.textContent = text;
      if (cut) {
        pre.after(h('div', { class: 'dim' }, `Shown: the first ${bytes(JSON_SHOWN)} of it. `,
          h('a', { href: whole, target: '_blank', rel: 'noopener' }, `The whole entry (${bytes(r.len)})`)));
      }
    } catch (e) {
      pre.textContent = e.message;
      pre.classList.add('error');
    }
  }

  focusOn(seq, openJson) {
    const row = this.byseq.get(seq);
    if (!row) {
      banner(`Entry ${seq} is not in this segment${this.tip ? ` (it has ${plural(this.tip.count, 'entry', 'entries')})` : ''}.`, '');
      return;
    }
    for (const r of this.rows.querySelectorAll('.row.focus')) r.classList.remove('focus');
    row.classList.add('focus');
    row.scrollIntoView({ block: 'center' });
    if (openJson) {
      const button = row.querySelector('.json-toggle');
      if (button) button.click();
    }
  }

  removeFrom(seq) {
    for (const [s, row] of [...this.byseq.entries()]) {
      if (s >= seq) { row.remove(); this.byseq.delete(s); }
    }
    for (const p of this.rows.querySelectorAll('.problem')) {
      if (!p.dataset.line || Number(p.dataset.line) - 2 >= seq) p.remove();
    }
  }

  // Live updates: the server watches the segment and tells; the page only listens.
  listen() {
    if (this.events) this.events.close();
    const known = this.info.segments.find((s) => s.newest) || this.info.segments[0];
    const url = `${this.api}/events?from=${this.windowStart}&next=${this.next}&generation=${this.generation}&trace=${this.traceNext}&newest=${known.segment}`;
    const events = new EventSource(url);
    this.events = events;
    const data = (ev) => JSON.parse(ev.data);
    events.onopen = () => { this.live.textContent = 'live'; this.live.className = 'live on'; };
    events.onerror = () => { this.live.textContent = events.readyState === EventSource.CLOSED ? 'not live' : 'reconnecting\u2026'; this.live.className = 'live'; };
    events.addEventListener('entries', (ev) => {
      const d = data(ev);
      for (const r of d.rows) this.addRow(r, true);
      this.tip = d.tip;
      this.next = Math.max(this.next, this.lastSeq() + 1);
      this.setTitle();
    });
    events.addEventListener('rewrite', (ev) => {
      const d = data(ev);
      banner(`Segment ${short(this.segment)} was rewritten (generation ${d.old_generation} \u2192 ${d.generation}, now ${plural(d.count, 'entry', 'entries')}): redrawn from entry ${d.first_changed}.`, '');
      this.removeFrom(d.first_changed);
      this.generation = d.generation;
      this.next = d.first_changed;
      this.tip = { count: d.count, generation: d.generation };
      this.setTitle();
    });
    events.addEventListener('trace', (ev) => {
      for (const r of data(ev).rows) this.addTrace(r);
    });
    events.addEventListener('fork', (ev) => {
      const d = data(ev);
      const from = d.from ? ` from ${short(d.from)} at entry ${d.at}` : '';
      banner(`The session forked: new segment ${short(d.segment)}${from}.`, 'info',
        this.following ? ' Following it.' : h('a', { href: pages.segment(this.session, d.segment) }, 'Open it'));
    });
    events.addEventListener('segments', (ev) => {
      const d = data(ev);
      this.info.segments = d.segments;
      if (this.following && d.newest_segment && d.newest_segment !== this.segment) {
        this.segment = d.newest_segment;
        this.from = 0;
        this.focus = null;
        this.drawTree(d.segments);
        this.start();
        return;
      }
      this.drawTree(d.segments);
    });
    events.addEventListener('damage', (ev) => banner(`Damage: ${data(ev).message}`, 'bad'));
    events.addEventListener('gone', () => {
      banner('This segment was deleted.', 'bad');
      events.close();
      this.live.textContent = 'not live';
      this.live.className = 'live';
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Search: the same search as `annals grep`.

async function searchPage(q) {
  const text = q.get('q') || '';
  document.getElementById('search-q').value = text;
  document.getElementById('search-regex').checked = q.get('regex') === '1';
  document.getElementById('search-case').checked = q.get('case') === 'sensitive';
  const sessionsOnly = q.get('sessions') === '1';
  const scope = q.getAll('session').filter(Boolean);
  const title = sessionsOnly ? 'Sessions whose entries contain' : 'Search';
  const main = show(h('h1', {}, text ? `${title}: ${text}` : title));
  if (scope.length) main.append(h('p', { class: 'dim' }, 'In ', ...scope.map((s) => h('a', { class: 'id', href: pages.session(s) }, s)), ' only. ', h('a', { href: `/search?q=${encodeURIComponent(text)}` }, 'Search every session')));
  if (!text && ![...q.keys()].some((k) => ['where', 'since', 'until'].includes(k))) {
    main.append(h('p', { class: 'dim' }, 'Type a word or a regular expression above: every entry of every session is searched, those kept as blobs included, as annals grep does.'));
    return;
  }
  const results = h('div', { id: 'results' });
  const status = h('p', { class: 'dim', id: 'search-status' }, 'Searching\u2026');
  main.append(status, results);
  let shown = 0;
  try {
    for await (const item of jsonLines(`/api/search?${new URLSearchParams(q)}`)) {
      if (item.kind === 'hit') {
        shown += 1;
        results.append(renderHit(item));
      } else if (item.kind === 'session') {
        shown += 1;
        results.append(h('div', { class: 'hit session-hit' }, h('a', { class: 'id', href: pages.session(item.session) }, item.session),
          h('span', { class: 'dim' }, ' first match: '), h('a', { href: pages.entry(item.session, item.segment, item.seq) }, `entry ${item.seq} of segment ${short(item.segment)}`)));
      } else if (item.kind === 'end') {
        const what = sessionsOnly ? plural(shown, 'session') : plural(shown, 'hit');
        let more = item.stopped ? ' \u2014 stopped at the limit: narrow the search.' : '.';
        if (item.untimed) more += ` ${plural(item.untimed, 'entry', 'entries')} have no append time and were left out by the time range.`;
        status.textContent = `${what} in ${plural(item.entries, 'entry', 'entries')} of ${plural(item.sessions, 'session')}${more}`;
        if (item.next_after) {
          const next = new URLSearchParams(q);
          next.set('after', item.next_after);
          results.append(h('p', {}, h('a', { href: `/search?${next}`, id: 'next-sessions' }, 'more sessions \u2192')));
        }
        for (const d of item.damaged) results.append(h('div', { class: 'problem' }, `${d.path}:${d.line}:${d.offset}: ${d.reason} (searched around it)`));
        for (const u of item.unreadable) results.append(h('div', { class: 'problem' }, `session ${u.session}: ${u.error}`));
      } else if (item.kind === 'error') {
        status.textContent = item.message;
        status.className = 'error';
      }
    }
  } catch (e) {
    status.textContent = e.message;
    status.className = 'error';
  }
}

function renderHit(hit) {
  const snippet = h('div', { class: 'snippet' });
  for (const [part, marked] of hit.parts) snippet.append(marked ? h('mark', {}, part) : document.createTextNode(part));
  return h('div', { class: 'hit', 'data-session': hit.session, 'data-seq': hit.seq },
    h('div', { class: 'where' }, h('a', { href: pages.entry(hit.session, hit.segment, hit.seq) },
      `session ${short(hit.session)} \u00b7 segment ${short(hit.segment)} \u00b7 entry ${hit.seq}`),
    hit.t !== null ? ` \u00b7 ${time(hit.t)}` : '', ` \u00b7 ${bytes(hit.len)}`, hit.from_blob ? ' \u00b7 blob' : ''),
    snippet);
}

// On a session's page the search box can search that session only.
function scopeSearch(session) {
  const form = document.getElementById('search-form');
  if (form.querySelector('input[name=session]')) return;
  form.insertBefore(h('label', { title: 'search this session only' },
    h('input', { type: 'checkbox', name: 'session', value: session, checked: true }), ' this session'), form.querySelector('button'));
}

document.addEventListener('DOMContentLoaded', () => {
  storeInfo();
  route();
});
