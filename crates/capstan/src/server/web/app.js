// capstan's web page: an overview of every service and a view of one, kept live by
// polling the JSON API (only what is visible, once a second). No framework, no build
// step: the daemon embeds this file as is. See docs/web.md.
'use strict';

(() => {
  const TOKEN_KEY = 'capstan.token';
  const POLL_MS = 1000;
  const WINDOWS = { '1h': 3600, '6h': 21600, '24h': 86400 };
  const SVG = 'http://www.w3.org/2000/svg';
  // How many ticks an endpoint that answered 404 is left alone before it is asked again.
  const RETRY_MISSING = 15;

  const $ = (id) => document.getElementById(id);

  // ---- small DOM helpers ------------------------------------------------------------

  function setText(el, text) {
    const t = text == null ? '' : String(text);
    if (el.textContent !== t) el.textContent = t;
  }

  function setAttr(el, name, value) {
    const v = value == null ? null : String(value);
    if (v === null) {
      if (el.hasAttribute(name)) el.removeAttribute(name);
    } else if (el.getAttribute(name) !== v) {
      el.setAttribute(name, v);
    }
  }

  function show(el, visible) {
    if (el.hidden === visible) el.hidden = !visible;
  }

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'text') el.textContent = v;
      else if (k === 'class') el.className = v;
      else el.setAttribute(k, v);
    }
    for (const c of children) el.append(c);
    return el;
  }

  function s(tag, attrs) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    return el;
  }

  // Keeps `container`'s children in the order of `items`, one per key, reusing the
  // element of a key seen before: a tick costs O(items) and only changed text is written.
  function syncChildren(container, items, key, create, update) {
    const old = new Map();
    for (const child of Array.from(container.children)) old.set(child.dataset.key, child);
    let prev = null;
    for (const item of items) {
      const k = String(key(item));
      let el = old.get(k);
      if (el) old.delete(k);
      else {
        el = create(item);
        el.dataset.key = k;
      }
      update(el, item);
      const want = prev ? prev.nextElementSibling : container.firstElementChild;
      if (el !== want) container.insertBefore(el, want);
      prev = el;
    }
    for (const el of old.values()) el.remove();
  }

  function row(n) {
    const tr = document.createElement('tr');
    for (let i = 0; i < n; i++) tr.append(document.createElement('td'));
    return tr;
  }

  // ---- formatting -------------------------------------------------------------------

  const num = (v) => (v == null ? '–' : String(v));

  function ago(iso) {
    if (!iso) return '';
    const t = Date.parse(iso);
    if (Number.isNaN(t)) return iso;
    const s = Math.max(0, Math.round((Date.now() - t) / 1000));
    if (s < 60) return s + ' s ago';
    if (s < 3600) return Math.floor(s / 60) + ' min ago';
    if (s < 86400) return Math.floor(s / 3600) + ' h ago';
    return Math.floor(s / 86400) + ' d ago';
  }

  function clock(iso) {
    const t = Date.parse(iso);
    if (Number.isNaN(t)) return iso || '';
    return new Date(t).toLocaleTimeString([], { hour12: false });
  }

  function fmtValue(v) {
    if (v == null || Number.isNaN(v)) return '–';
    const a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toFixed(1) + 'M';
    if (a >= 1e4) return (v / 1e3).toFixed(1) + 'k';
    if (Number.isInteger(v)) return String(v);
    return v.toFixed(a >= 100 ? 0 : a >= 10 ? 1 : 2);
  }

  // The kind of an action: `{"action": "scale_out", ...}` or `"scale_out"`.
  function actionKind(a) {
    return (a && typeof a === 'object' ? a.action : a) || 'hold';
  }

  // A decision's action as text: an arrow (not colour alone) and from → to.
  function actionText(a, from, to) {
    const kind = actionKind(a);
    const o = a && typeof a === 'object' ? a : {};
    const f = from != null ? from : o.from;
    const t = to != null ? to : o.to;
    if (kind === 'scale_out') return '▲ scale out ' + f + ' → ' + t;
    if (kind === 'scale_in') return '▼ scale in ' + f + ' → ' + t;
    const at = o.at != null ? o.at : t;
    return '■ hold' + (at != null ? ' at ' + at : '');
  }

  function pausedText(p) {
    if (!p) return '–';
    if (p.in && p.out) return '‖ scale-in and scale-out paused';
    if (p.in) return '‖ scale-in paused';
    if (p.out) return '‖ scale-out paused';
    return 'no';
  }

  // ---- the API ----------------------------------------------------------------------

  class AuthNeeded extends Error {}

  const state = {
    authNeeded: false,
    route: { view: 'overview' },
    // Per service view; reset when the route changes.
    svc: null,
  };

  function newServiceState(name) {
    return {
      name,
      window: '1h',
      pages: [null], // the `before` cursor of each page shown; the last is the current one
      next: null,
      missing: {}, // endpoint → ticks to wait before asking again after a 404
      chartKey: '',
      hover: false,
      openJournals: new Set(),
      cluster: null,
      busy: false,
    };
  }

  async function api(path, options) {
    const opts = options || {};
    const headers = { Accept: 'application/json' };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = 'Bearer ' + token;
    let body;
    if (opts.body !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(opts.body);
    }
    const r = await fetch(path, { method: opts.method || 'GET', headers, body, cache: 'no-store' });
    if (r.status === 401) {
      needAuth(token ? 'The token was refused: enter the API token again.' : '');
      throw new AuthNeeded();
    }
    let data = null;
    try {
      data = await r.json();
    } catch (_) {
      data = null;
    }
    return { status: r.status, ok: r.ok, data };
  }

  // An optional endpoint: null when it answers 404 (not available), asked again only
  // every RETRY_MISSING ticks after that.
  async function optional(svc, key, path) {
    const wait = svc.missing[key];
    if (wait > 0) {
      svc.missing[key] = wait - 1;
      return { missing: true };
    }
    const r = await api(path);
    if (r.status === 404) {
      svc.missing[key] = RETRY_MISSING;
      return { missing: true, data: r.data };
    }
    delete svc.missing[key];
    return r;
  }

  function errorOf(r) {
    return (r.data && r.data.error) || 'HTTP ' + r.status;
  }

  // ---- auth -------------------------------------------------------------------------

  function needAuth(message) {
    const first = !state.authNeeded;
    state.authNeeded = true;
    if (message) sessionStorage.removeItem(TOKEN_KEY);
    // No data without the token: every view is emptied and hidden.
    clearData();
    show($('overview'), false);
    show($('service'), false);
    show($('forget'), false);
    show($('auth'), true);
    setText($('auth-error'), message);
    setText($('updated'), '');
    if (first) $('token').focus();
  }

  function clearData() {
    $('services').tBodies[0].replaceChildren();
    for (const id of ['decisions', 'tasks', 'hosts']) $(id).tBodies[0].replaceChildren();
    $('workflows').replaceChildren();
    $('rotations').replaceChildren();
    $('chart').replaceChildren();
    delete $('chart').dataset.window;
    if (state.svc) state.svc.chartKey = '';
  }

  $('auth-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const token = $('token').value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $('token').value = '';
    state.authNeeded = false;
    show($('auth'), false);
    setText($('auth-error'), '');
    routeChanged(true);
  });

  $('forget').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    needAuth('');
  });

  // ---- routing ----------------------------------------------------------------------

  function parseRoute() {
    const m = /^#\/services\/([^/]+)\/?$/.exec(location.hash);
    if (m) {
      let name = m[1];
      try {
        name = decodeURIComponent(name);
      } catch (_) {
        /* keep it as written */
      }
      return { view: 'service', name };
    }
    return { view: 'overview' };
  }

  function routeChanged(focus) {
    state.route = parseRoute();
    if (state.route.view === 'service') {
      if (!state.svc || state.svc.name !== state.route.name) {
        state.svc = newServiceState(state.route.name);
        clearData();
        setText($('svc-title'), state.route.name);
        document.title = state.route.name + ' · capstan';
      }
    } else {
      state.svc = null;
      document.title = 'capstan';
    }
    if (state.authNeeded) return;
    show($('overview'), state.route.view === 'overview');
    show($('service'), state.route.view === 'service');
    if (focus) {
      const title = state.route.view === 'service' ? $('svc-title') : $('overview-title');
      title.focus({ preventScroll: true });
    }
    tickNow();
  }

  window.addEventListener('hashchange', () => routeChanged(true));

  // ---- the poll loop ----------------------------------------------------------------

  let timer = null;
  let running = false;
  let again = false;

  function tickNow() {
    if (running) {
      again = true;
      return;
    }
    clearTimeout(timer);
    tick();
  }

  async function tick() {
    running = true;
    try {
      if (!state.authNeeded && !document.hidden) {
        if (state.route.view === 'service') await refreshService();
        else await refreshOverview();
        if (!state.authNeeded) {
          show($('forget'), sessionStorage.getItem(TOKEN_KEY) !== null);
          setText($('updated'), 'updated ' + new Date().toLocaleTimeString([], { hour12: false }));
          setText($('conn'), '');
        }
      }
    } catch (e) {
      if (!(e instanceof AuthNeeded)) {
        setText($('conn'), '⚠ cannot reach capstan, retrying: ' + (e && e.message ? e.message : e));
      }
    } finally {
      running = false;
      const now = again;
      again = false;
      timer = setTimeout(tick, now ? 0 : POLL_MS);
    }
  }

  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) tickNow();
  });

  // ---- overview ---------------------------------------------------------------------

  function lastDecisionText(d) {
    if (!d) return '–';
    const parts = [actionText(d.action)];
    if (d.winner) parts.push(d.winner);
    parts.push(ago(d.at));
    return parts.join(' · ') + (d.dry_run ? ' (dry run)' : '');
  }

  // The sources a service's policies read that are not fresh, as text.
  function sourceTrouble(s) {
    return (s.sources || [])
      .filter((src) => src.status && src.status !== 'fresh')
      .map((src) => {
        if (src.status === 'failing') {
          const f = src.failure || {};
          return 'source ' + src.name + ' failing' + (f.streak ? ' (' + f.streak + ' reads)' : '') +
            (f.reason ? ': ' + f.reason : '');
        }
        if (src.status === 'stale') return 'source ' + src.name + ' stale (' + Math.round(src.age_s || 0) + ' s old)';
        return 'source ' + src.name + ' has no data yet';
      });
  }

  function healthCell(td, s) {
    const trouble = sourceTrouble(s);
    if (s.last_error) {
      setText(td, '⚠ failing: ' + s.last_error);
      setAttr(td, 'class', 'bad');
    } else if (trouble.length) {
      setText(td, '⚠ ' + trouble.join('; '));
      setAttr(td, 'class', 'bad');
    } else if (!s.last_tick) {
      setText(td, '… no evaluation yet');
      setAttr(td, 'class', 'muted');
    } else {
      setText(td, '✓ ok');
      setAttr(td, 'class', 'good');
    }
  }

  async function refreshOverview() {
    const r = await api('/api/v1/services');
    if (state.route.view !== 'overview') return;
    if (!r.ok) {
      setText($('conn'), '⚠ ' + errorOf(r));
      return;
    }
    const list = (r.data && r.data.services) || [];
    show($('overview-empty'), list.length === 0);
    syncChildren(
      $('services').tBodies[0],
      list,
      (s) => s.name,
      (s) => {
        const tr = row(8);
        const fields = ['name', 'min', 'desired', 'running', 'max', 'paused', 'decision', 'health'];
        fields.forEach((f, i) => (tr.cells[i].dataset.field = f));
        for (const i of [1, 2, 3, 4]) tr.cells[i].className = 'num';
        const a = h('a', { href: '#/services/' + encodeURIComponent(s.name) });
        tr.cells[0].append(a);
        tr.dataset.service = s.name;
        return tr;
      },
      (tr, s) => {
        const c = tr.cells;
        setText(c[0].firstChild, s.name);
        const eff = s.effective || {};
        const conf = s.configured || {};
        setText(c[1], num(eff.min));
        setAttr(c[1], 'title', eff.min !== conf.min ? 'configured ' + conf.min : null);
        setText(c[2], num(s.desired));
        setText(c[3], num(s.running) + (s.pending ? ' (+' + s.pending + ' pending)' : ''));
        setText(c[4], num(eff.max));
        setAttr(c[4], 'title', eff.max !== conf.max ? 'configured ' + conf.max : null);
        setText(c[5], pausedText(s.paused) + (s.dry_run ? ' · dry run' : ''));
        setAttr(c[5], 'class', s.paused && (s.paused.in || s.paused.out) ? 'warn' : null);
        // Why it last scaled (the last change), and what it decided since if that
        // was a hold.
        const shown = s.last_change || s.last_decision;
        let text = lastDecisionText(shown);
        if (s.last_change && s.last_decision && actionKind(s.last_decision.action) === 'hold') {
          text += ' · now ' + actionText(s.last_decision.action);
        }
        setText(c[6], text);
        setAttr(c[6], 'title', shown ? shown.sentence : null);
        healthCell(c[7], s);
      },
    );
  }

  // ---- service view -----------------------------------------------------------------

  async function refreshService() {
    const svc = state.svc;
    const name = encodeURIComponent(svc.name);
    const base = '/api/v1/services/' + name;
    const before = svc.pages[svc.pages.length - 1];
    const decPath =
      base + '/decisions?limit=20' + (before != null ? '&before=' + encodeURIComponent(before) : '');
    const windowS = WINDOWS[svc.window];
    const [detail, decisions, history, tasks, workflows, hosts] = await Promise.all([
      api(base),
      api(decPath),
      svc.hover ? null : optional(svc, 'history', base + '/history?window=' + svc.window + '&points=240'),
      optional(svc, 'tasks', base + '/tasks'),
      optional(svc, 'workflows', '/api/v1/workflows?service=' + name + '&limit=20'),
      optional(svc, 'hosts', base + '/hosts'),
    ]);
    if (state.svc !== svc) return; // the route changed meanwhile
    if (detail.status === 404) {
      show($('svc-body'), false);
      show($('svc-missing'), true);
      setText($('svc-missing'), 'No service is named ' + svc.name + '.');
      return;
    }
    show($('svc-missing'), false);
    show($('svc-body'), true);
    if (!detail.ok) {
      setText($('conn'), '⚠ ' + errorOf(detail));
      return;
    }
    renderDetail(detail.data);
    if (decisions.ok) renderDecisions(decisions.data);
    if (history && !svc.hover) await renderHistory(svc, history, detail.data, windowS);
    renderTasks(tasks);
    await renderWorkflows(svc, workflows);
    await renderCluster(svc, hosts);
  }

  function renderDetail(d) {
    const counts = $('svc-counts');
    const field = (f) => counts.querySelector('[data-field="' + f + '"]');
    const eff = d.effective || {};
    const conf = d.configured || {};
    setText(field('min'), num(eff.min) + (eff.min !== conf.min ? ' (configured ' + conf.min + ')' : ''));
    setText(field('max'), num(eff.max) + (eff.max !== conf.max ? ' (configured ' + conf.max + ')' : ''));
    setText(field('desired'), num(d.desired));
    setText(field('running'), num(d.running));
    setText(field('pending'), num(d.pending));
    setText(field('paused'), pausedText(d.paused) + (d.dry_run ? ' · dry run' : ''));
    setAttr(field('paused'), 'class', d.paused && (d.paused.in || d.paused.out) ? 'warn' : null);
    healthCell(field('health'), d);
    const o = d.override;
    show($('svc-override'), !!(o && o.active));
    if (o && o.active) {
      setText(
        $('svc-override'),
        'Operator override: min ' + num(o.min) + ', max ' + num(o.max) + ' until ' + clock(o.until),
      );
    }
    const p = d.paused || {};
    const both = !!(p.in && p.out);
    for (const [id, on, what] of [
      ['toggle-in', !!p.in, 'scale-in'],
      ['toggle-out', !!p.out, 'scale-out'],
      ['toggle-both', both, 'both'],
    ]) {
      const b = $(id);
      setText(b, (on ? '▶ Resume ' : '‖ Pause ') + what);
      setAttr(b, 'aria-pressed', on);
      b.dataset.paused = on ? '1' : '0';
    }
  }

  async function control(e) {
    const b = e.currentTarget;
    const svc = state.svc;
    if (!svc) return;
    const verb = b.dataset.paused === '1' ? 'resume' : 'pause';
    b.disabled = true;
    try {
      const r = await api('/api/v1/services/' + encodeURIComponent(svc.name) + '/' + verb, {
        method: 'POST',
        body: { direction: b.dataset.dir },
      });
      setText($('controls-msg'), r.ok ? (verb === 'pause' ? 'Paused: ' : 'Resumed: ') + pausedText(r.data.paused) : '⚠ ' + errorOf(r));
    } catch (err) {
      if (!(err instanceof AuthNeeded)) setText($('controls-msg'), '⚠ ' + err.message);
    } finally {
      b.disabled = false;
      tickNow();
    }
  }
  for (const id of ['toggle-in', 'toggle-out', 'toggle-both']) $(id).addEventListener('click', control);

  // -- decisions, a page at a time

  function renderDecisions(data) {
    const svc = state.svc;
    svc.next = data.next;
    const list = data.decisions || [];
    syncChildren(
      $('decisions').tBodies[0],
      list,
      (d) => d.id,
      () => {
        const tr = row(4);
        tr.cells[1].className = 'nowrap';
        return tr;
      },
      (tr, d) => {
        const kind = actionKind(d.action);
        setText(tr.cells[0], clock(d.at));
        setAttr(tr.cells[0], 'title', d.at);
        setText(tr.cells[1], actionText(d.action) + (d.dry_run ? ' (dry run)' : ''));
        setAttr(tr.cells[1], 'class', 'nowrap act-' + kind);
        setText(tr.cells[2], (d.winner || '–') + (d.rule ? ' · ' + ruleText(d.rule) : ''));
        setText(tr.cells[3], d.sentence || '');
      },
    );
    const page = svc.pages.length;
    setText($('dec-page'), page === 1 ? 'Newest decisions, live.' : 'Page ' + page + ' (older decisions; not live).');
    $('dec-older').disabled = data.next == null;
    $('dec-newer').disabled = page === 1;
    $('dec-newest').disabled = page === 1;
  }

  function ruleText(rule) {
    if (typeof rule === 'string') return rule.replace(/_/g, ' ');
    if (rule && typeof rule === 'object') return String(rule.rule || rule.kind || Object.keys(rule)[0] || '').replace(/_/g, ' ');
    return '';
  }

  $('dec-older').addEventListener('click', () => {
    const svc = state.svc;
    if (svc && svc.next != null) {
      svc.pages.push(svc.next);
      tickNow();
    }
  });
  $('dec-newer').addEventListener('click', () => {
    const svc = state.svc;
    if (svc && svc.pages.length > 1) {
      svc.pages.pop();
      tickNow();
    }
  });
  $('dec-newest').addEventListener('click', () => {
    const svc = state.svc;
    if (svc) {
      svc.pages = [null];
      tickNow();
    }
  });

  // -- the chart

  for (const b of document.querySelectorAll('[data-window]')) {
    b.addEventListener('click', () => {
      const svc = state.svc;
      if (!svc) return;
      svc.window = b.dataset.window;
      svc.chartKey = '';
      for (const o of document.querySelectorAll('[data-window]')) setAttr(o, 'aria-pressed', o === b);
      tickNow();
    });
  }

  const chartEl = $('chart');
  chartEl.addEventListener('mouseenter', () => {
    if (state.svc) state.svc.hover = true;
  });
  chartEl.addEventListener('mouseleave', () => {
    if (state.svc) state.svc.hover = false;
  });

  // The series from `/history`, or else from the decision log (desired and running at
  // each decision, no policy metrics).
  async function renderHistory(svc, history, detail, windowS) {
    let data;
    let note;
    if (history.missing) {
      const r = await api(
        '/api/v1/services/' + encodeURIComponent(svc.name) + '/decisions?limit=500',
      );
      if (state.svc !== svc || !r.ok) return;
      data = fromDecisions(r.data.decisions || [], windowS);
      note =
        'History not available from this capstan: desired and running at each recorded decision shown, without the policies\' metrics.';
    } else if (!history.ok) {
      setText($('chart-note'), '⚠ history: ' + errorOf(history));
      return;
    } else {
      data = fromHistory(history.data, windowS);
      note = '';
    }
    const key = JSON.stringify([svc.window, data]);
    if (key === svc.chartKey) return;
    svc.chartKey = key;
    setText($('chart-note'), note + (note ? ' ' : '') + 'Hover or focus a marker for the decision\'s reason.');
    drawChart(data, detail);
    // The window drawn (tests and the web_load bench wait on it).
    chartEl.dataset.window = svc.window;
  }

  function fromHistory(hd, windowS) {
    const points = (hd.points || [])
      .map((p) => ({
        t: Date.parse(p.t),
        desired: p.desired,
        running: p.running,
        policies: p.policies || {},
      }))
      .filter((p) => !Number.isNaN(p.t));
    const decisions = (hd.decisions || []).map((d) => ({
      t: Date.parse(d.at),
      kind: actionKind(d.action),
      text: actionText(d.action, d.from, d.to),
      winner: d.winner,
      sentence: d.sentence || '',
    }));
    const end = points.length ? points[points.length - 1].t : Date.now();
    const span = (hd.window_s || windowS) * 1000;
    // Desired changes exactly at each decision: its from → to makes the step sharper
    // than the points' step.
    const desired = points.map((p) => ({ t: p.t, desired: p.desired }));
    for (const d of hd.decisions || []) {
      const t = Date.parse(d.at);
      if (Number.isNaN(t) || d.from == null || d.to == null) continue;
      desired.push({ t: t - 1, desired: d.from }, { t, desired: d.to });
    }
    desired.sort((a, b) => a.t - b.t);
    return { start: end - span, end, points, desired, decisions, policies: true };
  }

  function fromDecisions(list, windowS) {
    const end = Date.now();
    const start = end - windowS * 1000;
    const sorted = list
      .map((d) => ({ d, t: Date.parse(d.at) }))
      .filter((x) => !Number.isNaN(x.t) && x.t >= start)
      .sort((a, b) => a.t - b.t);
    const points = sorted.map(({ d, t }) => {
      const a = d.action || {};
      const desired = a.to != null ? a.to : a.at;
      return { t, desired, running: d.capacity ? d.capacity.running : null, policies: {} };
    });
    if (points.length) points.push({ ...points[points.length - 1], t: end });
    const decisions = sorted
      .filter(({ d }) => actionKind(d.action) !== 'hold')
      .map(({ d, t }) => ({
        t,
        kind: actionKind(d.action),
        text: actionText(d.action),
        winner: d.winner,
        sentence: d.sentence || '',
      }));
    return { start, end, points, desired: points, decisions, policies: false };
  }

  const W = 900;
  const PAD_L = 52;
  const PAD_R = 16;

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function panel(svg, top, height, title, yMax, data, integer) {
    const x0 = PAD_L;
    const x1 = W - PAD_R;
    const y = (v) => top + height - (v / yMax) * height;
    const x = (t) => x0 + ((t - data.start) / (data.end - data.start || 1)) * (x1 - x0);
    const g = s('g', { class: 'panel-g' });
    g.append(s('rect', { x: x0, y: top, width: x1 - x0, height, class: 'plot-bg' }));
    for (let i = 0; i <= 4; i++) {
      const v = (yMax * i) / 4;
      if (integer && !Number.isInteger(v)) continue;
      const yy = y(v);
      g.append(s('line', { x1: x0, x2: x1, y1: yy, y2: yy, class: 'gridline' }));
      const label = s('text', { x: x0 - 6, y: yy + 4, class: 'axis', 'text-anchor': 'end' });
      label.textContent = fmtValue(v);
      g.append(label);
    }
    const t = s('text', { x: x0, y: top - 6, class: 'panel-title' });
    t.textContent = title;
    g.append(t);
    svg.append(g);
    return { x, y, g };
  }

  // A path through the points with a value (gaps where there is none); `step`: hold
  // each value until the next point.
  function pathOf(points, get, x, y, step, end) {
    let d = '';
    let open = false;
    for (const p of points) {
      const v = get(p);
      if (v == null || Number.isNaN(v)) {
        open = false;
        continue;
      }
      const px = x(p.t).toFixed(1);
      const py = y(v).toFixed(1);
      if (!open) d += 'M' + px + ' ' + py;
      else if (step) d += 'H' + px + 'V' + py;
      else d += 'L' + px + ' ' + py;
      open = true;
    }
    if (step && open && end != null) d += 'H' + x(end).toFixed(1);
    return d || null;
  }

  function line(g, d, cls, name) {
    if (!d) return;
    g.append(s('path', { d, class: 'series ' + cls, 'data-series': name }));
  }

  function legend(svg, x, y, items) {
    let xx = x;
    for (const [cls, label] of items) {
      svg.append(s('line', { x1: xx, x2: xx + 22, y1: y, y2: y, class: 'series ' + cls }));
      const t = s('text', { x: xx + 27, y: y + 4, class: 'legend' });
      t.textContent = label;
      svg.append(t);
      xx += 34 + label.length * 7;
    }
  }

  // A window longer than the data (capstan started recently) is drawn from the first
  // datum on, at least 30 s wide.
  function zoom(data) {
    const first = data.desired.find((p) => p.desired != null) || data.points.find((p) => p.running != null);
    const firstDecision = data.decisions.length ? Math.min(...data.decisions.map((d) => d.t)) : Infinity;
    const from = Math.min(first ? first.t : Infinity, firstDecision);
    if (!Number.isFinite(from) || from <= data.start) return null;
    const start = Math.max(data.start, Math.min(from, data.end - 30000) - 3000);
    data.start = start;
    return start;
  }

  function drawChart(data, detail) {
    const zoomed = zoom(data);
    setText($('chart-zoom'), zoomed ? 'Data since ' + new Date(zoomed).toLocaleTimeString([], { hour12: false }) + ' only: the time axis starts there.' : '');
    const policyNames = new Set();
    for (const p of data.points) for (const k of Object.keys(p.policies || {})) policyNames.add(k);
    const policies = Array.from(policyNames).sort();
    const TASKS_H = 170;
    const POLICY_H = 90;
    const GAP = 46;
    let top = 40;
    const height = top + TASKS_H + GAP + policies.length * (POLICY_H + GAP) + 6;
    const svg = s('svg', {
      viewBox: '0 0 ' + W + ' ' + height,
      width: '100%',
      role: 'img',
      'aria-label': 'History of ' + (detail.name || 'the service') + ': desired and running tasks' + (policies.length ? ' and each policy\'s metric against its target' : '') + ', with ' + data.decisions.length + ' scaling decisions',
    });
    legend(svg, PAD_L, 14, [
      ['desired', 'desired'],
      ['running', 'running'],
      ['value', 'metric'],
      ['target', 'target'],
    ]);
    const eff = detail.effective || {};
    let maxTasks = eff.max || 1;
    for (const p of data.points) maxTasks = Math.max(maxTasks, p.desired || 0, p.running || 0);
    for (const p of data.desired) maxTasks = Math.max(maxTasks, p.desired || 0);
    const yMax = Math.max(4, Math.ceil(niceMax(maxTasks)));
    const tasks = panel(svg, top, TASKS_H, 'tasks', yMax, data, true);
    line(tasks.g, pathOf(data.points, (p) => p.running, tasks.x, tasks.y, true, data.end), 'running', 'running');
    line(tasks.g, pathOf(data.desired, (p) => p.desired, tasks.x, tasks.y, true, data.end), 'desired', 'desired');
    // Decision markers: ▲ scale-out, ▼ scale-in; hover for the reason (SVG title).
    const markers = s('g', { class: 'markers' });
    for (const d of data.decisions) {
      if (!(d.t >= data.start && d.t <= data.end)) continue;
      const mx = tasks.x(d.t);
      const out = d.kind === 'scale_out';
      const m = s('g', {
        class: 'marker ' + (out ? 'out' : d.kind === 'scale_in' ? 'in' : 'other'),
        tabindex: 0,
        role: 'img',
        'aria-label': clock(new Date(d.t).toISOString()) + ' ' + d.text + ': ' + d.sentence,
      });
      const title = s('title');
      title.textContent = clock(new Date(d.t).toISOString()) + ' · ' + d.sentence;
      m.append(title);
      m.append(s('line', { x1: mx, x2: mx, y1: top, y2: top + TASKS_H, class: 'marker-line' }));
      const ty = top + 2;
      const tri = out
        ? `M${mx - 6} ${ty + 10}L${mx + 6} ${ty + 10}L${mx} ${ty}Z`
        : `M${mx - 6} ${ty}L${mx + 6} ${ty}L${mx} ${ty + 10}Z`;
      m.append(s('path', { d: tri, class: 'marker-shape' }));
      // A wider invisible hit area, easier to hover.
      m.append(s('rect', { x: mx - 7, y: top, width: 14, height: TASKS_H, class: 'hit' }));
      const detailText = d.text + (d.winner ? ' · ' + d.winner : '') + ' — ' + d.sentence;
      m.addEventListener('mouseenter', () => setText($('marker-detail'), detailText));
      m.addEventListener('focus', () => setText($('marker-detail'), detailText));
      markers.append(m);
    }
    tasks.g.append(markers);
    top += TASKS_H + GAP;
    for (const name of policies) {
      let vmax = 0;
      for (const p of data.points) {
        const e = p.policies[name];
        if (e) vmax = Math.max(vmax, e.value || 0, e.target || 0);
      }
      const last = [...data.points].reverse().find((p) => p.policies[name] && p.policies[name].value != null);
      const lastE = last ? last.policies[name] : {};
      const label = 'policy ' + name + ': ' + fmtValue(lastE.value) + ' (target ' + fmtValue(lastE.target) + ')';
      const pan = panel(svg, top, POLICY_H, label, niceMax(vmax * 1.1), data, false);
      line(pan.g, pathOf(data.points, (p) => p.policies[name] && p.policies[name].target, pan.x, pan.y, true, data.end), 'target', 'target:' + name);
      line(pan.g, pathOf(data.points, (p) => p.policies[name] && p.policies[name].value, pan.x, pan.y, false), 'value', 'value:' + name);
      top += POLICY_H + GAP;
    }
    // Time axis under the last panel.
    const axisY = height - 10;
    for (const f of [0, 0.25, 0.5, 0.75, 1]) {
      const t = data.start + f * (data.end - data.start);
      const label = s('text', { x: tasks.x(t), y: axisY, class: 'axis', 'text-anchor': f === 0 ? 'start' : f === 1 ? 'end' : 'middle' });
      const short = data.end - data.start < 30 * 60000;
      label.textContent = new Date(t).toLocaleTimeString([], short ? { hour12: false } : { hour12: false, hour: '2-digit', minute: '2-digit' });
      svg.append(label);
    }
    if (!data.points.length) {
      const t = s('text', { x: W / 2, y: 40 + TASKS_H / 2, class: 'empty', 'text-anchor': 'middle' });
      t.textContent = 'No data in this window yet';
      svg.append(t);
    }
    chartEl.replaceChildren(svg);
  }

  // -- tasks

  function yesNo(v, yes, no) {
    if (v == null) return '–';
    return v ? yes : no;
  }

  function renderTasks(r) {
    const tbody = $('tasks').tBodies[0];
    if (r.missing) {
      setText($('tasks-note'), 'Tasks not available from this capstan.');
      tbody.replaceChildren();
      return;
    }
    if (!r.ok) {
      setText($('tasks-note'), '⚠ ' + errorOf(r));
      return;
    }
    const tasks = (r.data && r.data.tasks) || [];
    setText($('tasks-note'), tasks.length + ' task' + (tasks.length === 1 ? '' : 's'));
    syncChildren(
      tbody,
      tasks,
      (t) => t.id,
      () => {
        const tr = row(9);
        tr.cells[4].className = 'num';
        tr.cells[5].className = 'num';
        return tr;
      },
      (tr, t) => {
        const c = tr.cells;
        const short = String(t.id).split('/').pop();
        setText(c[0], short);
        setAttr(c[0], 'title', t.id);
        setText(c[1], t.state);
        setText(c[2], t.zone || '–');
        setText(c[3], t.started_at ? ago(t.started_at) : '–');
        setAttr(c[3], 'title', t.started_at);
        setText(c[4], num(t.sessions));
        setText(c[5], num(t.workloads));
        setText(c[6], yesNo(t.protected, '● protected', 'no'));
        setText(c[7], yesNo(t.draining, '⤓ draining', 'no'));
        setAttr(c[7], 'class', t.draining ? 'warn' : null);
        setText(c[8], yesNo(t.healthy, '✓ healthy', '✗ unhealthy'));
        setAttr(c[8], 'class', t.healthy === false ? 'bad' : t.healthy ? 'good' : null);
      },
    );
  }

  // -- workflows

  function statusText(st) {
    return (
      { running: '↻ running', failed: '✗ failed', done: '✓ done', cancelled: '⊘ cancelled' }[st] || st
    );
  }

  async function renderWorkflows(svc, r) {
    const box = $('workflows');
    if (r.missing) {
      setText($('wf-note'), 'Workflows not available.');
      box.replaceChildren();
      return;
    }
    if (!r.ok) {
      setText($('wf-note'), r.status === 503 ? 'This capstan runs no scale-in workflows.' : '⚠ ' + errorOf(r));
      box.replaceChildren();
      return;
    }
    const list = (r.data && r.data.workflows) || [];
    setText($('wf-note'), list.length ? '' : 'No scale-in workflow yet.');
    // The journals shown, fetched while open.
    const journals = new Map();
    await Promise.all(
      list
        .filter((w) => svc.openJournals.has(w.id))
        .map(async (w) => {
          const j = await api('/api/v1/workflows/' + encodeURIComponent(w.id));
          if (j.ok) journals.set(w.id, j.data.journal || []);
        }),
    );
    if (state.svc !== svc) return;
    syncChildren(
      box,
      list,
      (w) => w.id,
      (w) => {
        const el = h('article', { class: 'workflow', 'data-workflow': w.id });
        const head = h('div', { class: 'wf-head' });
        head.append(
          h('span', { class: 'wf-status' }),
          h('span', { class: 'wf-summary' }),
          h('span', { class: 'wf-when muted' }),
        );
        const err = h('p', { class: 'wf-error error' });
        const buttons = h('div', { class: 'wf-buttons' });
        const jb = h('button', { type: 'button', class: 'journal-toggle', 'aria-expanded': 'false', 'aria-controls': 'journal-' + w.id, text: 'Show journal' });
        const rb = h('button', { type: 'button', class: 'redrive', 'data-workflow': w.id, text: '↻ Redrive' });
        const msg = h('span', { class: 'wf-msg', role: 'status' });
        jb.addEventListener('click', () => {
          if (svc.openJournals.has(w.id)) svc.openJournals.delete(w.id);
          else svc.openJournals.add(w.id);
          tickNow();
        });
        rb.addEventListener('click', async () => {
          rb.disabled = true;
          setText(msg, 'redriving…');
          try {
            const x = await api('/api/v1/workflows/' + encodeURIComponent(w.id) + '/redrive', { method: 'POST' });
            setText(msg, x.ok ? 'redriven' : '⚠ ' + errorOf(x));
          } catch (e) {
            if (!(e instanceof AuthNeeded)) setText(msg, '⚠ ' + e.message);
          } finally {
            rb.disabled = false;
            tickNow();
          }
        });
        buttons.append(jb, rb, msg);
        const journal = h('ol', { class: 'journal', id: 'journal-' + w.id });
        journal.hidden = true;
        el.append(head, err, buttons, journal);
        return el;
      },
      (el, w) => {
        const [status, summary, when] = el.querySelector('.wf-head').children;
        setText(status, statusText(w.status));
        setAttr(status, 'class', 'wf-status st-' + w.status);
        const victims = (w.victims || []).length;
        setText(
          summary,
          w.id + ' · ' + w.from + ' → ' + w.to + ' · step ' + w.step + ' · ' + victims + ' victim' + (victims === 1 ? '' : 's') + (w.attempts ? ' · attempt ' + w.attempts : ''),
        );
        setText(when, 'started ' + ago(w.created_at) + ', updated ' + ago(w.updated_at));
        const err = el.querySelector('.wf-error');
        setText(err, w.error ? '⚠ ' + w.error : '');
        show(err, !!w.error);
        const rb = el.querySelector('.redrive');
        show(rb, w.status === 'failed');
        setAttr(rb, 'aria-label', 'Redrive workflow ' + w.id + ' from step ' + w.step);
        const open = svc.openJournals.has(w.id);
        const jb = el.querySelector('.journal-toggle');
        setText(jb, open ? 'Hide journal' : 'Show journal');
        setAttr(jb, 'aria-expanded', open);
        const ol = el.querySelector('.journal');
        show(ol, open);
        const entries = journals.get(w.id);
        if (open && entries) {
          syncChildren(
            ol,
            entries,
            (e) => e.seq,
            () => h('li'),
            (li, e) => setText(li, clock(e.at) + ' · ' + e.step + ' · ' + e.event + (e.detail ? ' — ' + (typeof e.detail === 'string' ? e.detail : JSON.stringify(e.detail)) : '')),
          );
        }
      },
    );
  }

  // -- the cluster (ec2_cluster services)

  function bar(td, used, total, label) {
    let meter = td.firstChild;
    if (!meter) {
      meter = h('div', { class: 'bar', role: 'meter', 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-label': label });
      meter.append(h('span', { class: 'fill' }), h('span', { class: 'bar-text' }));
      td.append(meter);
    }
    const pct = total > 0 ? Math.round((used / total) * 100) : 0;
    setAttr(meter, 'aria-valuenow', pct);
    meter.firstChild.style.width = Math.min(100, pct) + '%';
    setAttr(meter.firstChild, 'class', 'fill' + (pct >= 90 ? ' high' : ''));
    setText(meter.lastChild, pct + ' % (' + fmtValue(used) + ' / ' + fmtValue(total) + ')');
  }

  async function renderCluster(svc, r) {
    const section = $('cluster');
    if (r.missing || !r.ok) {
      show(section, false);
      return;
    }
    show(section, true);
    const d = r.data || {};
    const hosts = d.hosts || [];
    setText($('cluster-note'), 'Cluster ' + (d.cluster || '?') + ': ' + hosts.length + ' host' + (hosts.length === 1 ? '' : 's'));
    const rem = d.removal;
    show($('removal'), !!rem);
    if (rem) {
      setText($('removal'), '⤓ Removing hosts ' + (rem.hosts || []).join(', ') + ' (workflow ' + rem.workflow + ', step ' + rem.step + ')');
    }
    syncChildren(
      $('hosts').tBodies[0],
      hosts,
      (x) => x.id,
      () => {
        const tr = row(6);
        tr.cells[5].className = 'num';
        return tr;
      },
      (tr, x) => {
        const c = tr.cells;
        setText(c[0], x.id);
        const draining = String(x.state || '').toUpperCase() === 'DRAINING';
        setText(c[1], (draining ? '⤓ ' : '') + x.state);
        setAttr(c[1], 'class', draining ? 'warn' : null);
        setText(c[2], x.zone || '–');
        bar(c[3], (x.cpu || {}).reserved || 0, (x.cpu || {}).registered || 0, 'CPU reserved on ' + x.id);
        bar(c[4], (x.memory || {}).reserved || 0, (x.memory || {}).registered || 0, 'Memory reserved on ' + x.id);
        setText(c[5], num(x.tasks));
      },
    );
    // Rotations of this cluster, every few ticks.
    svc.rotTick = (svc.rotTick || 0) - 1;
    if (svc.rotTick > 0) return;
    svc.rotTick = 3;
    const rot = await api('/api/v1/rotations?limit=10');
    if (state.svc !== svc) return;
    const list = rot.ok ? (rot.data.rotations || []).filter((x) => !d.cluster || x.cluster === d.cluster) : [];
    syncChildren(
      $('rotations'),
      list,
      (x) => x.id,
      () => h('li'),
      (li, x) => {
        const p = x.progress || {};
        setText(
          li,
          statusText(x.status) + ' · ' + x.from + ' → ' + x.to + ' · ' + x.phase + ' · ' + (p.removed || 0) + ' removed, ' + (p.skipped || 0) + ' skipped of ' + (p.total || 0) + ' (' + Math.round((p.fraction || 0) * 100) + ' %)' + (x.waiting ? ' · waiting: ' + x.waiting : '') + (x.error ? ' · ⚠ ' + x.error : ''),
        );
      },
    );
    if (!list.length && !$('rotations').children.length) $('rotations').append(h('li', { class: 'muted', 'data-key': '', text: 'No rotation.' }));
  }

  // ---- start ------------------------------------------------------------------------

  routeChanged(false);
})();
