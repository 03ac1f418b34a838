// countmesh dashboard: plain JavaScript over the node's public API
// (docs/api.md). No library, no build step. Everything the API returns is
// put in the page as text (textContent), never as HTML.
'use strict';

(() => {
  const root = document.documentElement;
  // The API is on the page's own origin, under whatever prefix /ui/ is at.
  const base = location.pathname.replace(/\/ui(\/.*)?$/, '');
  const TOKEN_KEY = 'countmesh.token';
  const SVG = 'http://www.w3.org/2000/svg';
  const $ = (id) => document.getElementById(id);

  // ---- DOM helpers --------------------------------------------------------

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    setAttrs(e, attrs);
    for (const c of children) {
      if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVG, tag);
    setAttrs(e, attrs);
    for (const c of children) e.append(c instanceof Node ? c : String(c));
    return e;
  }

  function setAttrs(e, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.setAttribute('class', v);
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
  }

  function showError(id, err) {
    const p = $(id);
    if (!err) {
      p.hidden = true;
      p.textContent = '';
      return;
    }
    p.hidden = false;
    p.textContent = err.message || String(err);
  }

  const fmt = new Intl.NumberFormat('en-US');
  const fmtRate = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 });
  const num = (v) => fmt.format(v);
  const pad = (n) => String(n).padStart(2, '0');
  function clock(d) {
    return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  }
  function shortTime(d, stepMs) {
    if (stepMs >= 86400000) return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate());
    if (stepMs >= 60000) return pad(d.getHours()) + ':' + pad(d.getMinutes());
    return clock(d);
  }

  // Durations as the API writes them (1s, 10s, 1m, 5m, 1h, 1d) in ms.
  function durationMs(s) {
    const m = /^(\d+)(ms|s|m|h|d)$/.exec(s || '');
    if (!m) return 0;
    return Number(m[1]) * { ms: 1, s: 1000, m: 60000, h: 3600000, d: 86400000 }[m[2]];
  }

  // ---- API ----------------------------------------------------------------

  const token = () => sessionStorage.getItem(TOKEN_KEY) || '';

  function headers(extra) {
    const h = Object.assign({ Accept: 'application/json' }, extra);
    const t = token();
    if (t) h.Authorization = 'Bearer ' + t;
    return h;
  }

  class AuthError extends Error {}

  // errorOf returns the API's error message of a failed answer.
  async function errorOf(resp) {
    let msg = resp.status + ' ' + resp.statusText;
    try {
      const b = await resp.json();
      if (b && b.error && b.error.message) msg = b.error.message;
    } catch (_) { /* not JSON */ }
    return new Error(msg);
  }

  async function api(path, signal) {
    const resp = await fetch(base + path, { headers: headers(), cache: 'no-store', signal });
    if (resp.status === 401) {
      const err = await errorOf(resp);
      needToken('The node refused the token: ' + err.message);
      throw new AuthError(err.message);
    }
    if (!resp.ok) throw await errorOf(resp);
    return resp.json();
  }

  const esc = encodeURIComponent;

  // watch reads a Server-Sent Events stream with fetch (EventSource cannot
  // send a header) and calls onEvent(type, data) for each event; it
  // reconnects with Last-Event-ID and backs off while the node is away.
  // It returns the function that stops it.
  function watch(path, onEvent, onState) {
    const ctl = new AbortController();
    let lastId = '';
    let delay = 250;
    const loop = async () => {
      while (!ctl.signal.aborted) {
        try {
          const h = headers({ Accept: 'text/event-stream' });
          if (lastId) h['Last-Event-ID'] = lastId;
          const resp = await fetch(base + path, { headers: h, cache: 'no-store', signal: ctl.signal });
          if (resp.status === 401) {
            needToken('The node refused the token: ' + (await errorOf(resp)).message);
            return;
          }
          if (!resp.ok) {
            const err = await errorOf(resp);
            // A refusal (403, 404, 400) stays one: say it and stop; an
            // overloaded or unavailable node is retried.
            if (resp.status < 500 && resp.status !== 429) {
              onState(err);
              return;
            }
            throw err;
          }
          onState(null);
          delay = 250;
          await readEvents(resp.body, (ev) => {
            if (ev.id) lastId = ev.id;
            onEvent(ev.type, ev.data);
          });
          if (!ctl.signal.aborted) onState(new Error('the stream ended; reconnecting'));
        } catch (err) {
          if (ctl.signal.aborted) return;
          onState(err);
        }
        await sleep(delay, ctl.signal);
        delay = Math.min(delay * 2, 8000);
      }
    };
    loop();
    return () => ctl.abort();
  }

  // readEvents parses the text/event-stream body until it ends.
  async function readEvents(body, dispatch) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    let ev = { type: 'message', data: [], id: '' };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        let line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line.endsWith('\r')) line = line.slice(0, -1);
        if (line === '') {
          if (ev.data.length) dispatch({ type: ev.type, id: ev.id, data: ev.data.join('\n') });
          ev = { type: 'message', data: [], id: '' };
          continue;
        }
        if (line[0] === ':') continue; // a comment (heartbeat)
        const c = line.indexOf(':');
        const field = c < 0 ? line : line.slice(0, c);
        let v = c < 0 ? '' : line.slice(c + 1);
        if (v[0] === ' ') v = v.slice(1);
        if (field === 'data') ev.data.push(v);
        else if (field === 'event') ev.type = v;
        else if (field === 'id') ev.id = v;
      }
    }
  }

  function sleep(ms, signal) {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
    });
  }

  // ---- session: everything that runs while a token is accepted -------------

  let session = null;

  function newSession() {
    const s = { ctl: new AbortController(), nsStop: null, counterStop: null };
    s.signal = s.ctl.signal;
    // every runs fn now and then ms after each run ends, until the session
    // stops; fn's failures go to the section's error line.
    s.every = (ms, errorId, fn) => {
      const tick = async () => {
        if (s.signal.aborted) return;
        try {
          await fn();
          if (errorId) showError(errorId, null);
        } catch (err) {
          if (s.signal.aborted || err instanceof AuthError) return;
          if (errorId) showError(errorId, err);
        }
        if (!s.signal.aborted) setTimeout(tick, ms);
      };
      tick();
    };
    s.stop = () => {
      s.ctl.abort();
      if (s.nsStop) s.nsStop();
      if (s.counterStop) s.counterStop();
    };
    return s;
  }

  function setStatus(state, text) {
    const p = $('status');
    p.dataset.state = state;
    p.textContent = text;
  }

  function needToken(message) {
    if (session) session.stop();
    session = null;
    sessionStorage.removeItem(TOKEN_KEY);
    $('dash').hidden = true;
    $('login').hidden = false;
    $('signout').hidden = true;
    setStatus('token', 'token needed');
    showError('login-error', message ? new Error(message) : null);
    $('token').focus();
  }

  function start() {
    if (session) session.stop();
    if (root.dataset.auth === 'token' && !token()) {
      needToken('');
      return;
    }
    $('login').hidden = true;
    $('dash').hidden = false;
    $('signout').hidden = !token();
    setStatus('idle', 'connecting');
    session = newSession();
    session.every(2000, 'mesh-error', refreshMesh);
    session.every(10000, 'ns-error', refreshNamespaces);
    session.every(1000, null, renderRates);
  }

  // ---- selection (kept in the URL's fragment: never a token) --------------

  const sel = { ns: '', key: '', window: '', step: '' };

  function readHash() {
    const q = new URLSearchParams(location.hash.slice(1));
    sel.ns = q.get('ns') || '';
    sel.key = q.get('key') || '';
    sel.window = q.get('window') || '';
    sel.step = q.get('step') || '';
  }

  function writeHash() {
    const q = new URLSearchParams();
    for (const k of ['ns', 'key', 'window', 'step']) if (sel[k]) q.set(k, sel[k]);
    history.replaceState(null, '', '#' + q.toString());
  }

  // ---- mesh ---------------------------------------------------------------

  async function refreshMesh() {
    let st;
    try {
      st = await api('/v1/cluster', session.signal);
    } catch (err) {
      if (!(err instanceof AuthError)) setStatus('error', 'node unreachable');
      throw err;
    }
    setStatus('live', 'live');
    $('node').textContent = st.node.name + ' · ' + st.node.region + ' · ' + st.node.http_addr;
    const byRegion = new Map();
    for (const m of st.members) {
      if (!byRegion.has(m.region)) byRegion.set(m.region, []);
      byRegion.get(m.region).push(m);
    }
    const regions = [...byRegion.keys()].sort();
    $('regions').replaceChildren(...regions.map((r) => {
      const ms = byRegion.get(r).sort((a, b) => a.name.localeCompare(b.name));
      const alive = ms.filter((m) => m.state === 'alive').length;
      return el('div', { class: 'region', 'data-region': r },
        el('h4', null, r + ' · ' + alive + '/' + ms.length + ' alive'),
        ...ms.map((m) => el('div', { class: 'member', 'data-member': m.name, 'data-state': m.state },
          el('span', { class: 'dot', 'data-state': m.state, title: m.state }),
          el('span', { class: 'name' }, m.name),
          el('span', { class: 'addr' }, m.state + ' · ' + m.http_addr),
          m.name === st.node.name ? el('span', { class: 'self' }, 'this node') : null)));
    }));
    const lags = st.replication.slice().sort((a, b) => a.peer.localeCompare(b.peer));
    const worst = Math.max(1000, ...lags.map((l) => l.lag_ms));
    const rows = lags.map((l) => el('tr', { 'data-peer': l.peer },
      el('td', null, l.peer), el('td', null, l.region),
      el('td', { class: 'num' }, num(l.lag_ms) + ' ms'),
      el('td', null, lagBar(l.lag_ms, worst))));
    if (!rows.length) rows.push(el('tr', null, el('td', { colspan: 4, class: 'muted' }, 'no peers')));
    $('lag').tBodies[0].replaceChildren(...rows);
  }

  function lagBar(ms, worst) {
    const w = 160;
    const cls = ms >= 5000 ? 'lag bad' : ms >= 1000 ? 'lag warn' : 'lag';
    return svg('svg', { width: w, height: 10, viewBox: `0 0 ${w} 10` },
      svg('rect', { class: 'track', x: 0, y: 0, width: w, height: 10, rx: 2 }),
      svg('rect', { class: cls, x: 0, y: 0, width: Math.max(1, (w * ms) / worst), height: 10, rx: 2 }));
  }

  // ---- namespaces ---------------------------------------------------------

  let namespaces = [];

  async function refreshNamespaces() {
    const ans = await api('/v1/namespaces', session.signal);
    namespaces = ans.items;
    $('ns-empty').hidden = namespaces.length > 0;
    const picked = namespaces.find((n) => n.name === sel.ns);
    if (!picked) {
      if (namespaces.length) selectNamespace(namespaces[0].name, true);
    } else if (!session.ns || (session.ns.config && JSON.stringify(picked) !== JSON.stringify(session.ns.config))) {
      selectNamespace(sel.ns, false); // first pick, or its config changed
    }
    renderNamespaceTable();
  }

  function bounds(c) {
    if (c.min === null && c.max === null) return '–';
    return '[' + (c.min === null ? '−∞' : num(c.min)) + ', ' + (c.max === null ? '∞' : num(c.max)) + ']';
  }

  function renderNamespaceTable() {
    $('ns-table').tBodies[0].replaceChildren(...namespaces.map((n) => el('tr', {
      'data-ns': n.name, class: n.name === sel.ns ? 'selected' : null,
      onclick: () => selectNamespace(n.name, true),
    },
    el('td', null, n.name), el('td', null, n.type), el('td', null, n.durability),
    el('td', null, n.windows.length ? n.windows.join(' ') : '–'),
    el('td', null, Object.entries(n.retention).map(([w, r]) => w + ':' + r).join(' ') || '–'),
    el('td', null, n.ttl), el('td', null, bounds(n)))));
  }

  // selectNamespace switches the namespace sections to ns; a new choice of
  // namespace drops the chosen key.
  function selectNamespace(ns, userChoice) {
    if (!session) return;
    if (userChoice && ns !== sel.ns) {
      sel.key = '';
      sel.window = '';
      sel.step = '';
    }
    sel.ns = ns;
    writeHash();
    if (session.nsStop) session.nsStop();
    const ctl = new AbortController();
    session.nsStop = () => ctl.abort();
    session.ns = { name: ns, config: null, signal: ctl.signal };
    renderNamespaceTable();
    $('rate-ns').textContent = ns;
    $('top-ns').textContent = ns;
    resetRates();
    const cur = session.ns;
    const alive = () => session && session.ns === cur && !ctl.signal.aborted;
    api('/v1/namespaces/' + esc(ns), ctl.signal).then((cfg) => {
      if (!alive()) return;
      cur.config = cfg;
      renderDetail(cfg);
      renderWindowTabs();
      runNamespace(cur, ctl, alive);
      selectCounter(sel.key || '');
    }).catch((err) => {
      if (alive() && !(err instanceof AuthError)) showError('ns-error', err);
    });
  }

  function renderDetail(cfg) {
    const rows = [];
    for (const [k, v] of Object.entries(cfg)) {
      if (k === 'name') continue;
      rows.push(el('dt', null, k), el('dd', null, JSON.stringify(v)));
    }
    $('ns-detail').replaceChildren(el('h3', null, 'Config of ' + cfg.name + ' (GET /v1/namespaces/' + cfg.name + ')'), el('dl', null, ...rows));
  }

  function runNamespace(cur, ctl, alive) {
    const stop = watch('/v1/namespaces/' + esc(cur.name) + '/watch', (type, data) => {
      if (type === 'value') noteValue(JSON.parse(data));
    }, (err) => showError('rate-error', err));
    ctl.signal.addEventListener('abort', stop, { once: true });
    const tick = async () => {
      if (!alive()) return;
      try {
        await refreshTop(cur, ctl.signal);
        showError('top-error', null);
      } catch (err) {
        if (alive() && !(err instanceof AuthError)) showError('top-error', err);
      }
      if (alive()) setTimeout(tick, 3000);
    };
    tick();
  }

  // ---- live rates (from the namespace watch) ------------------------------

  const RATE_SECONDS = 60;
  let rates;

  function resetRates() {
    rates = { last: new Map(), secs: new Map(), recent: [], since: Date.now() };
    renderRates();
  }

  function noteValue(ev) {
    const prev = rates.last.get(ev.key);
    rates.last.set(ev.key, ev.value);
    if (rates.last.size > 100000) rates.last.clear(); // bound memory; baselines restart
    if (prev === undefined) return;
    const d = ev.value - prev;
    if (!d) return;
    const now = Date.now();
    const sec = Math.floor(now / 1000);
    const b = rates.secs.get(sec) || { up: 0, down: 0 };
    if (d > 0) b.up += d; else b.down -= d;
    rates.secs.set(sec, b);
    rates.recent.push({ t: now, key: ev.key, d });
  }

  function renderRates() {
    if (!rates) return;
    const now = Date.now();
    const sec = Math.floor(now / 1000);
    for (const s of rates.secs.keys()) if (s <= sec - RATE_SECONDS) rates.secs.delete(s);
    rates.recent = rates.recent.filter((e) => e.t > now - 10000).slice(-50000);
    // The last five whole seconds, or those since the stream opened.
    const span = Math.max(1, Math.min(5, sec - Math.floor(rates.since / 1000) - 1));
    let up = 0;
    let down = 0;
    for (let s = sec - span; s < sec; s++) {
      const b = rates.secs.get(s);
      if (b) { up += b.up; down += b.down; }
    }
    $('rate-net').textContent = fmtRate.format((up - down) / span);
    $('rate-up').textContent = fmtRate.format(up / span);
    $('rate-down').textContent = fmtRate.format(down / span);
    const vals = [];
    for (let s = sec - RATE_SECONDS + 1; s <= sec; s++) {
      const b = rates.secs.get(s);
      vals.push(b ? b.up - b.down : 0);
    }
    $('rate-chart').replaceChildren(barChart(vals.map((v, i) => ({
      t: new Date((sec - RATE_SECONDS + 1 + i) * 1000), v,
    })), 1000, 600, 150));
    const byKey = new Map();
    for (const e of rates.recent) byKey.set(e.key, (byKey.get(e.key) || 0) + e.d);
    const movers = [...byKey.entries()].sort((a, b) => Math.abs(b[1]) - Math.abs(a[1])).slice(0, 5);
    const rows = movers.map(([k, d]) => el('tr', { onclick: () => selectCounter(k) },
      el('td', { class: 'key', title: k }, k),
      el('td', { class: 'num' }, (d > 0 ? '+' : '') + num(d)),
      el('td', { class: 'num muted' }, fmtRate.format(d / 10) + '/s')));
    if (!rows.length) rows.push(el('tr', null, el('td', { class: 'muted' }, 'no changes seen in the last 10 s')));
    $('movers').tBodies[0].replaceChildren(...rows);
  }

  // ---- top-K with sparklines ----------------------------------------------

  function renderWindowTabs() {
    const cfg = session.ns.config;
    if (sel.window && !cfg.windows.includes(sel.window)) sel.window = '';
    const choices = ['', ...cfg.windows];
    $('top-windows').replaceChildren(...choices.map((w) => el('button', {
      type: 'button', 'aria-pressed': String(w === sel.window), 'data-window': w,
      onclick: () => {
        sel.window = w;
        writeHash();
        renderWindowTabs();
        refreshTop(session.ns, session.ns.signal).catch((err) => {
          if (!(err instanceof AuthError)) showError('top-error', err);
        });
      },
    }, w ? 'current ' + w : 'all time')));
  }

  async function refreshTop(cur, signal) {
    const cfg = cur.config;
    const w = sel.window;
    const ans = await api('/v1/namespaces/' + esc(cur.name) + '/top?k=10' + (w ? '&window=' + esc(w) : ''), signal);
    // Sparklines: each key's series at the chosen window (or the finest
    // kept one), 30 points.
    const step = w || cfg.windows[0] || '';
    const series = step
      ? await Promise.all(ans.items.map((it) => api('/v1/counters/' + esc(cur.name) + '/' + esc(it.key) +
          '/series?step=' + esc(step) + '&from=' + esc(new Date(Date.now() - 29 * durationMs(step)).toISOString()), signal)
        .then((s) => s.points.map((p) => p.delta), () => null)))
      : ans.items.map(() => null);
    if (signal.aborted) return;
    const rows = ans.items.map((it, i) => el('tr', {
      'data-key': it.key, class: it.key === sel.key ? 'selected' : null, onclick: () => selectCounter(it.key),
    },
    el('td', { class: 'muted' }, i + 1), el('td', { class: 'key', title: it.key }, it.key),
    el('td', { class: 'num' }, num(it.value)),
    el('td', null, series[i] ? sparkline(series[i]) : '')));
    if (!rows.length) rows.push(el('tr', null, el('td', { colspan: 4, class: 'muted' }, w ? 'no changes in the current ' + w + ' bucket' : 'no counters')));
    $('top-table').tBodies[0].replaceChildren(...rows);
    const notes = [];
    if (w && ans.bucket_start) notes.push('ranked by the change since ' + clock(new Date(ans.bucket_start)));
    if (!ans.exact) notes.push('approximate ranking');
    if (step) notes.push('sparklines: change per ' + step + ', last 30');
    else notes.push('this namespace keeps no windows: no series');
    $('top-note').textContent = notes.join(' · ');
  }

  function sparkline(vals) {
    const w = 120;
    const h = 24;
    const max = Math.max(1, ...vals);
    const min = Math.min(0, ...vals);
    const x = (i) => (vals.length < 2 ? w : (i * w) / (vals.length - 1));
    const y = (v) => h - 2 - ((v - min) * (h - 4)) / (max - min || 1);
    const pts = vals.map((v, i) => x(i).toFixed(1) + ',' + y(v).toFixed(1)).join(' ');
    const area = 'M0,' + y(min).toFixed(1) + ' L' + pts.replaceAll(' ', ' L') + ' L' + w + ',' + y(min).toFixed(1) + ' Z';
    const last = vals.length ? vals[vals.length - 1] : 0;
    return svg('svg', { class: 'sparkline', width: w, height: h, viewBox: `0 0 ${w} ${h}` },
      svg('path', { class: 'spark-area', d: area }),
      svg('polyline', { class: 'spark', points: pts }),
      svg('circle', { class: 'spark-dot', cx: x(vals.length - 1), cy: y(last), r: 2 }));
  }

  // barChart draws points [{t, v}] as bars with a zero line, the largest
  // value and the first and last times.
  function barChart(points, stepMs, w, h) {
    const padL = 48;
    const padB = 16;
    const max = Math.max(1, ...points.map((p) => p.v));
    const min = Math.min(0, ...points.map((p) => p.v));
    const plotH = h - padB - 6;
    const y = (v) => 6 + ((max - v) * plotH) / (max - min);
    const bw = (w - padL) / Math.max(1, points.length);
    const kids = [
      svg('line', { class: 'axis', x1: padL, x2: w, y1: y(0), y2: y(0) }),
      svg('text', { class: 'label', x: padL - 4, y: y(max) + 4, 'text-anchor': 'end' }, num(max)),
      svg('text', { class: 'label', x: padL - 4, y: y(0) + 4, 'text-anchor': 'end' }, '0'),
    ];
    if (min < 0) kids.push(svg('text', { class: 'label', x: padL - 4, y: y(min), 'text-anchor': 'end' }, num(min)));
    points.forEach((p, i) => {
      if (!p.v) return;
      const top = Math.min(y(p.v), y(0));
      kids.push(svg('rect', {
        class: p.v < 0 ? 'bar neg' : 'bar', x: (padL + i * bw + bw * 0.1).toFixed(1), y: top.toFixed(1),
        width: Math.max(1, bw * 0.8).toFixed(1), height: Math.max(1, Math.abs(y(p.v) - y(0))).toFixed(1),
      }, svg('title', null, shortTime(p.t, stepMs) + ': ' + num(p.v))));
    });
    if (points.length) {
      kids.push(svg('text', { class: 'label', x: padL, y: h - 3 }, shortTime(points[0].t, stepMs)));
      kids.push(svg('text', { class: 'label', x: w, y: h - 3, 'text-anchor': 'end' }, shortTime(points[points.length - 1].t, stepMs)));
    }
    return svg('svg', { viewBox: `0 0 ${w} ${h}`, role: 'img' }, ...kids);
  }

  // ---- one counter: its series, its value live ----------------------------

  function selectCounter(key) {
    if (!session || !session.ns || !session.ns.config) return;
    const cur = session.ns;
    if (session.counterStop) session.counterStop();
    const ctl = new AbortController();
    session.counterStop = () => ctl.abort();
    cur.signal.addEventListener('abort', session.counterStop, { once: true });
    sel.key = key;
    writeHash();
    $('counter-key').value = key;
    for (const tr of $('top-table').tBodies[0].rows) tr.classList.toggle('selected', tr.dataset.key === key);
    const value = $('counter-value');
    value.textContent = '–';
    value.dataset.value = '';
    $('counter-name').textContent = key ? cur.name + ' / ' + key : 'pick a key in Top-K or type one';
    $('counter-updated').textContent = '';
    $('counter-chart').replaceChildren();
    showError('counter-error', null);
    if (!key) {
      $('counter-steps').replaceChildren();
      return;
    }
    const windows = cur.config.windows;
    if (sel.step && !windows.includes(sel.step)) sel.step = '';
    const step = sel.step || windows[0] || '';
    $('counter-steps').replaceChildren(...windows.map((w) => el('button', {
      type: 'button', 'aria-pressed': String(w === step),
      onclick: () => { sel.step = w; selectCounter(key); },
    }, 'per ' + w)));
    const chart = { points: null, stepMs: durationMs(step) };
    let last;
    const path = '/v1/counters/' + esc(cur.name) + '/' + esc(key);
    const stop = watch(path + '/watch?interval=50ms', (type, data) => {
      if (type !== 'value') return;
      const ev = JSON.parse(data);
      value.textContent = num(ev.value);
      value.dataset.value = String(ev.value);
      $('counter-updated').textContent = ev.ts ? clock(new Date(ev.ts)) : '';
      if (last !== undefined && chart.points) addToChart(chart, ev.value - last);
      last = ev.value;
    }, (err) => showError('counter-error', err));
    ctl.signal.addEventListener('abort', stop, { once: true });
    if (!step) {
      $('counter-chart').replaceChildren(el('p', { class: 'muted' }, 'This namespace keeps no windows, so the counter has no series; its value above is live.'));
      return;
    }
    const refresh = async () => {
      if (ctl.signal.aborted) return;
      try {
        const s = await api(path + '/series?step=' + esc(step), ctl.signal);
        chart.points = s.points.map((p) => ({ t: new Date(p.t), v: p.delta }));
        drawCounter(chart, s);
      } catch (err) {
        if (!ctl.signal.aborted && !(err instanceof AuthError)) showError('counter-error', err);
      }
      if (!ctl.signal.aborted) setTimeout(refresh, 15000);
    };
    refresh();
  }

  // addToChart adds a live change to the bucket it falls in, opening new
  // buckets as time passes (the next refresh replaces them by the node's).
  function addToChart(chart, d) {
    const now = Date.now();
    const pts = chart.points;
    if (!pts.length) return;
    while (now >= pts[pts.length - 1].t.getTime() + chart.stepMs) {
      pts.push({ t: new Date(pts[pts.length - 1].t.getTime() + chart.stepMs), v: 0 });
      pts.shift();
    }
    pts[pts.length - 1].v += d;
    drawCounter(chart, null);
  }

  function drawCounter(chart, s) {
    if (s) chart.caption = 'change per ' + s.step + ' (from the ' + s.window + ' buckets), ' + s.points.length + ' points';
    const total = chart.points.reduce((a, p) => a + p.v, 0);
    $('counter-chart').dataset.total = String(total);
    $('counter-chart').replaceChildren(barChart(chart.points, chart.stepMs, 1200, 220),
      el('p', { class: 'muted small' }, chart.caption + ' · total ' + num(total)));
  }

  // ---- wiring -------------------------------------------------------------

  $('login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const t = $('token').value.trim();
    if (!t) return;
    sessionStorage.setItem(TOKEN_KEY, t);
    $('token').value = '';
    showError('login-error', null);
    start();
  });
  $('signout').addEventListener('click', () => needToken(''));
  $('counter-form').addEventListener('submit', (e) => {
    e.preventDefault();
    selectCounter($('counter-key').value.trim());
  });
  readHash();
  start();
})();
