// brownout live dashboard. Self-contained: its one library, uPlot, is served by
// the admin server too, and nothing is fetched from elsewhere. Every value from
// the API is written with textContent (uPlot's legends too) or drawn on a canvas,
// never parsed as HTML, so a rule or phase name cannot inject markup.
'use strict';

(function () {
  const WINDOW_S = 300; // how much history the charts show
  const POLL_MS = 1000;

  // State the page exposes for tests and for anyone poking at it in devtools.
  const state = {
    polls: 0,        // completed poll rounds
    samples: 0,      // live points received that saw traffic
    draws: 0,        // chart redraws
    errors: 0,       // failed poll rounds
    points: [],      // live series, oldest first
    status: null,
    summary: null,
    lastT: null,     // newest live point's unix second
    phaseMarks: [],  // {t, name}: phase changes this page saw, for the charts
  };
  window.__brownout = state;

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------- API

  async function api(method, path, body) {
    const opts = { method, headers: {}, credentials: 'same-origin', cache: 'no-store' };
    if (body !== undefined) {
      opts.headers['content-type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    const r = await fetch(path, opts);
    if (r.status === 401) {
      const err = new Error('the admin token is missing or wrong: reload the page to sign in');
      err.auth = true;
      throw err;
    }
    const text = await r.text();
    let v = null;
    try { v = text ? JSON.parse(text) : null; } catch (_) { v = null; }
    if (!r.ok) {
      throw new Error((v && v.error) || (method + ' ' + path + ' → ' + r.status));
    }
    return v;
  }

  // ---------------------------------------------------------------- formatting

  function fmtMs(v) {
    if (v === null || v === undefined || !isFinite(v)) return '–';
    if (v >= 10000) return (v / 1000).toFixed(1) + ' s';
    if (v >= 100) return Math.round(v) + ' ms';
    if (v >= 10) return v.toFixed(1) + ' ms';
    return v.toFixed(2) + ' ms';
  }
  function fmtPct(v) {
    if (v === null || v === undefined || !isFinite(v)) return '–';
    return (v * 100).toFixed(v < 0.1 ? 2 : 1) + ' %';
  }
  function fmtNum(v, digits) {
    if (v === null || v === undefined || !isFinite(v)) return '–';
    return v.toFixed(digits === undefined ? 1 : digits);
  }
  function fmtDur(s) {
    if (s === null || s === undefined) return '–';
    if (s < 60) return s.toFixed(0) + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm' + String(Math.floor(s % 60)).padStart(2, '0') + 's';
    return Math.floor(s / 3600) + 'h' + String(Math.floor((s % 3600) / 60)).padStart(2, '0') + 'm';
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function fillTable(table, headers, rows, numeric) {
    table.replaceChildren();
    const thead = el('thead');
    const hr = el('tr');
    headers.forEach((h, i) => hr.appendChild(el('th', numeric && numeric[i] ? 'num' : '', h)));
    thead.appendChild(hr);
    const tbody = el('tbody');
    rows.forEach((row) => {
      const tr = el('tr', row.cls || '');
      row.cells.forEach((c, i) => {
        const td = el('td', numeric && numeric[i] ? 'num' : '');
        if (c instanceof Node) td.appendChild(c); else td.textContent = c === null || c === undefined ? '–' : String(c);
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    });
    if (rows.length === 0) {
      const tr = el('tr');
      const td = el('td', 'muted', 'nothing yet');
      td.colSpan = headers.length;
      tr.appendChild(td);
      tbody.appendChild(tr);
    }
    table.append(thead, tbody);
  }

  // ---------------------------------------------------------------- charts

  // Strip charts drawn by uPlot (served by the admin server as /uplot.js, the
  // same vendored copy the drill report inlines): time on x (the last WINDOW_S
  // seconds), one or more series on y from zero, a gap wherever a value is
  // missing, and a dashed line wherever the profile changed phase.
  const charts = {};

  const fmtAxisMs = (v) => (v >= 1000 ? (v / 1000).toFixed(v >= 10000 ? 0 : 1) + ' s' : Math.round(v) + ' ms');
  const fmtAxisNum = (v) => v.toFixed(v < 10 ? 1 : 0);
  // Clock time, one line: uPlot's default two-row date labels crowd a strip chart.
  const fmtClock = (t) => {
    const d = new Date(t * 1000);
    const two = (n) => String(n).padStart(2, '0');
    return d.getHours() + ':' + two(d.getMinutes()) + ':' + two(d.getSeconds());
  };
  const fmtAxisPct = (v) => (v === 0 ? '0' : v.toFixed(v < 1 ? 2 : v < 10 ? 1 : 0)) + '%';

  function cssVar(name, fallback) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
  }

  // Phase changes seen by this page, as vertical lines with the new phase's name.
  function phasePlugin() {
    return {
      hooks: {
        draw: [(u) => {
          const ctx = u.ctx;
          const b = u.bbox;
          const dpr = window.devicePixelRatio || 1;
          ctx.save();
          ctx.font = (11 * dpr) + 'px system-ui, sans-serif';
          ctx.textAlign = 'left';
          ctx.textBaseline = 'top';
          state.phaseMarks.forEach((m) => {
            const x = Math.round(u.valToPos(m.t, 'x', true)) + 0.5;
            if (x < b.left || x > b.left + b.width) return;
            ctx.strokeStyle = cssVar('--accent', '#e0a040');
            ctx.lineWidth = dpr;
            ctx.setLineDash([4 * dpr, 3 * dpr]);
            ctx.beginPath();
            ctx.moveTo(x, b.top);
            ctx.lineTo(x, b.top + b.height);
            ctx.stroke();
            ctx.setLineDash([]);
            ctx.fillStyle = cssVar('--accent', '#e0a040');
            ctx.fillText(m.name, x + 4 * dpr, b.top + 2 * dpr);
          });
          ctx.restore();
        }],
      },
    };
  }

  function makeChart(el, defs, fmt, minMax) {
    const muted = cssVar('--muted', '#8b93a5');
    const line = cssVar('--line', '#2a2f3a');
    const axis = (extra) => Object.assign({
      stroke: muted,
      grid: { stroke: line, width: 1 },
      ticks: { stroke: line, width: 1 },
    }, extra);
    const opts = {
      width: Math.max(200, el.clientWidth),
      height: 190,
      scales: {
        x: { time: true, range: () => { const now = chartNow(); return [now - WINDOW_S, now]; } },
        y: { range: (u, min, max) => [0, niceStep((Math.max(minMax, isFinite(max) ? max : 0) * 1.05) / 4) * 4] },
      },
      axes: [
        axis({ space: 70, values: (u, splits) => splits.map(fmtClock) }),
        axis({ size: 58, values: (u, splits) => splits.map(fmt) }),
      ],
      series: [{ label: 'time' }].concat(defs.map((d) => ({
        label: d.name,
        stroke: d.color,
        width: 1.8,
        points: { show: false },
        value: (u, v) => (v === null || v === undefined ? '–' : fmt(v)),
      }))),
      legend: { live: true },
      cursor: { sync: { key: 'live' }, drag: { x: false, y: false } },
      plugins: [phasePlugin()],
    };
    return new uPlot(opts, [[]].concat(defs.map(() => [])), el);
  }

  function niceStep(v) {
    if (v <= 0) return 1;
    const e = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * e >= v) return m * e;
    return 10 * e;
  }

  function chartNow() {
    return state.lastT !== null ? state.lastT + 1 : Math.floor(Date.now() / 1000);
  }

  const CHARTS = [
    ['latency', () => [
      { name: 'p50', color: cssVar('--p50', '#5b9cf5'), f: (p) => p.e2e_ms.p50 },
      { name: 'p95', color: cssVar('--p95', '#e0a040'), f: (p) => p.e2e_ms.p95 },
      { name: 'p99', color: cssVar('--p99', '#e5484d'), f: (p) => p.e2e_ms.p99 },
    ], fmtAxisMs, 10],
    ['ttft', () => [
      { name: 'p50', color: cssVar('--p50', '#5b9cf5'), f: (p) => p.ttft_ms.p50 },
      { name: 'p95', color: cssVar('--p95', '#e0a040'), f: (p) => p.ttft_ms.p95 },
    ], fmtAxisMs, 10],
    // Scaled to the data: a 0.2% error rate must not be a flat line on 0-100%.
    ['errors', () => [
      { name: 'errors', color: cssVar('--bad', '#e5484d'), f: (p) => (p.error_rate === null ? null : p.error_rate * 100) },
    ], fmtAxisPct, 0.5],
    ['rps', () => [
      { name: 'requests/s', color: cssVar('--ok', '#3fb68b'), f: (p) => p.rps },
      { name: 'faults/s', color: cssVar('--accent', '#e0a040'), f: (p) => p.faults_per_s },
    ], fmtAxisNum, 1],
  ];

  function drawCharts() {
    if (typeof uPlot !== 'function') return;
    const pts = state.points;
    CHARTS.forEach(([id, defsOf, fmt, minMax]) => {
      const el = $('chart-' + id);
      let c = charts[id];
      if (!c) {
        const defs = defsOf();
        c = charts[id] = { defs, u: makeChart(el, defs, fmt, minMax) };
      }
      const data = [pts.map((p) => p.t)].concat(c.defs.map((d) => pts.map((p) => {
        const v = d.f(p);
        return v === undefined ? null : v;
      })));
      c.u.setData(data);
    });
    state.draws++;
  }

  function resizeCharts() {
    Object.keys(charts).forEach((id) => {
      const el = $('chart-' + id);
      charts[id].u.setSize({ width: Math.max(200, el.clientWidth), height: 190 });
    });
  }

  // ---------------------------------------------------------------- rendering

  function renderStatus(s) {
    $('profile-name').textContent = s.profile || 'no profile';
    const bits = ['source: ' + (s.source || '–'), 'seed ' + s.seed, 'up ' + fmtDur(s.uptime_s)];
    if (s.records) bits.push(s.records.submitted + ' records' + (s.records.dropped ? ', ' + s.records.dropped + ' dropped' : ''));
    $('profile-meta').textContent = bits.join(' · ');

    const kill = $('kill');
    kill.disabled = false;
    kill.classList.toggle('off', !s.faults_enabled);
    $('kill-label').textContent = s.faults_enabled ? 'KILL SWITCH' : 'FAULTS OFF';
    $('kill-hint').textContent = s.faults_enabled ? 'turn every fault off now' : 'click to turn faults back on';
    const banner = $('banner');
    const msgs = [];
    if (!s.faults_enabled) msgs.push('Faults are off (kill switch): traffic passes through unharmed until faults are turned on.');
    if (s.last_reload_error) msgs.push('Last profile reload failed; the previous profile stays in force: ' + s.last_reload_error);
    banner.hidden = msgs.length === 0;
    banner.className = 'banner' + (!s.faults_enabled && !s.last_reload_error ? ' off' : '');
    banner.textContent = msgs.join(' ');

    renderTimeline(s);
    const rules = (s.active_rules || []).map((r) => {
      const tags = el('span');
      r.faults.forEach((f) => tags.appendChild(el('span', 'tag', f)));
      return { cells: [r.name, tags, r.active] };
    });
    fillTable($('rules'), ['rule', 'faults', 'in flight'], rules, [false, false, true]);
  }

  function renderTimeline(s) {
    const tl = $('timeline');
    tl.replaceChildren();
    const phases = s.phases || [];
    if (phases.length === 0) {
      tl.appendChild(el('div', 'empty', 'This profile has no phases: its rules apply all the time.'));
      $('phase-label').textContent = '';
      $('next-phase').hidden = true;
      return;
    }
    $('next-phase').hidden = false;
    const total = phases.reduce((a, p) => a + p.duration_s, 0) || 1;
    let before = 0;
    let pos = null;
    phases.forEach((p, i) => {
      const band = el('div', 'band' + (p.name === s.phase ? ' current' : ''), p.name);
      band.style.flexGrow = String(Math.max(p.duration_s, total * 0.03));
      band.style.flexBasis = '0';
      band.title = p.name + ' · ' + fmtDur(p.duration_s) + ' · click to jump here';
      band.dataset.phase = p.name;
      band.addEventListener('click', () => act(() => api('POST', '/api/v1/phase', { name: p.name })));
      tl.appendChild(band);
      if (p.name === s.phase && pos === null) {
        pos = { index: i, before, dur: p.duration_s };
      }
      before += p.duration_s;
    });
    if (pos !== null) {
      const inPhase = s.time_in_phase_s || 0;
      const frac = pos.dur > 0 ? Math.min(1, inPhase / pos.dur) : 1;
      // Place the cursor inside the current band (bands have minimum widths, so
      // compute from the rendered band rather than from the durations).
      const band = tl.children[pos.index];
      const x = band.offsetLeft + frac * band.offsetWidth;
      const elapsed = el('div', 'elapsed');
      elapsed.style.width = x + 'px';
      const cursor = el('div', 'cursor');
      cursor.style.left = (x - 1) + 'px';
      tl.append(elapsed, cursor);
      const over = pos.index === phases.length - 1 && inPhase > pos.dur ? ' (last phase: stays)' : '';
      $('phase-label').textContent = s.phase + ': ' + fmtDur(inPhase) + ' of ' + fmtDur(pos.dur) + over;
    } else {
      $('phase-label').textContent = 'waiting for start_at';
    }
  }

  function renderSummary(v) {
    $('since').textContent = 'profile ' + v.profile + ', since ' + new Date(v.since).toLocaleTimeString() + ' (' + fmtDur(v.elapsed_s) + ')';
    const cur = state.status ? state.status.phase : null;
    const rows = (v.phases || []).map((p) => {
      const e = p.e2e_ms || {};
      const t = p.ttft_ms || {};
      return {
        cls: p.phase !== null && p.phase === cur ? 'current' : '',
        cells: [p.phase === null ? '(no phase)' : p.phase, p.requests, fmtPct(p.error_rate), fmtMs(e.p50), fmtMs(e.p95), fmtMs(e.p99), fmtMs(t.p50), fmtMs(t.p95), p.faults_injected],
      };
    });
    fillTable($('summary'), ['phase', 'requests', 'errors', 'p50', 'p95', 'p99', 'TTFT p50', 'TTFT p95', 'faults'], rows,
      [false, true, true, true, true, true, true, true, true]);
    const faults = (v.faults || []).slice().sort((a, b) => b.count - a.count).map((f) => ({ cells: [f.rule, f.fault, f.count] }));
    fillTable($('faults'), ['rule', 'fault', 'count'], faults, [false, false, true]);
  }

  function renderLive(v) {
    (v.points || []).forEach((p) => {
      if (state.lastT !== null && p.t <= state.lastT) return;
      state.points.push(p);
      state.lastT = p.t;
      if (p.rps > 0) state.samples++;
    });
    const cutoff = (state.lastT || 0) - WINDOW_S;
    while (state.points.length && state.points[0].t < cutoff) state.points.shift();
    const last = state.points[state.points.length - 1];
    if (last) {
      $('t-rps').textContent = fmtNum(last.rps);
      $('t-err').textContent = fmtPct(last.error_rate);
      $('t-err').className = 'v' + (last.error_rate > 0 ? ' bad' : '');
      $('t-p95').textContent = fmtMs(last.e2e_ms.p95);
      $('t-ttft').textContent = fmtMs(last.ttft_ms.p95);
      $('t-faults').textContent = fmtNum(last.faults_per_s);
    }
    $('t-active').textContent = String(v.active_requests);
    const gpu = v.gpu || [];
    $('gpu-panel').hidden = gpu.length === 0;
    const box = $('gpu');
    box.replaceChildren();
    gpu.forEach((g) => {
      state.gpuMax = Math.max(state.gpuMax || 1, g.batch_size, g.queue_depth);
      [['batch', g.batch_size], ['queue', g.queue_depth]].forEach(([k, n]) => {
        const d = el('div', 'gauge');
        d.appendChild(el('div', '', g.rule + ' · ' + k + ' ' + n));
        const bar = el('div', 'bar');
        const fill = el('div', 'fill');
        fill.style.width = Math.min(100, (100 * n) / state.gpuMax) + '%';
        bar.appendChild(fill);
        d.appendChild(bar);
        box.appendChild(d);
      });
      box.appendChild(el('div', 'muted', g.rule + ' · preemptions ' + g.preemptions));
    });
    drawCharts();
  }

  function renderRecent(recs) {
    const rows = (recs || []).slice().reverse().map((r) => ({
      cls: r.outcome === 'ok' ? '' : 'bad',
      cells: [
        (r.ts || '').slice(11, 19),
        r.method,
        r.path,
        r.status,
        r.outcome,
        fmtMs(r.e2e_ms),
        fmtMs(r.ttft_ms),
        (r.faults || []).map((f) => f.rule + '/' + f.fault).join(', ') || '–',
      ],
    }));
    fillTable($('recent'), ['time', 'method', 'path', 'status', 'outcome', 'e2e', 'TTFT', 'faults'], rows,
      [false, false, false, true, false, true, true, false]);
  }

  // ---------------------------------------------------------------- actions

  // Actions run one after another, in click order: a second click while the
  // first is on its way is queued, never dropped.
  let chain = Promise.resolve();
  function act(f) {
    chain = chain.then(f).then(poll).catch(showError);
    return chain;
  }

  function showError(e) {
    const banner = $('banner');
    banner.hidden = false;
    banner.className = 'banner';
    banner.textContent = String(e.message || e);
  }

  function onKill() {
    return act(async () => {
      // Decided when the action runs, so two quick clicks mean off, then on.
      const on = state.status ? state.status.faults_enabled : true;
      const v = await api('POST', on ? '/api/v1/faults/off' : '/api/v1/faults/on');
      if (state.status) state.status.faults_enabled = v && v.faults === 'on';
      if (state.status) renderStatus(state.status);
    });
  }

  // ---------------------------------------------------------------- polling

  let polling = false;
  async function poll() {
    if (polling) return;
    polling = true;
    const conn = $('conn');
    try {
      const since = state.lastT === null ? '' : '&since=' + state.lastT;
      const [status, summary, live, recent] = await Promise.all([
        api('GET', '/api/v1/status'),
        api('GET', '/api/v1/summary'),
        api('GET', '/api/v1/live?window=5' + since),
        api('GET', '/api/v1/records?limit=12'),
      ]);
      const before = state.status ? state.status.phase : undefined;
      if (before !== undefined && status.phase && status.phase !== before) {
        state.phaseMarks.push({ t: Date.now() / 1000, name: status.phase });
        state.phaseMarks = state.phaseMarks.filter((m) => m.t >= Date.now() / 1000 - WINDOW_S);
      }
      state.status = status;
      state.summary = summary;
      renderStatus(status);
      renderSummary(summary);
      renderLive(live);
      renderRecent(recent);
      state.polls++;
      conn.textContent = 'live';
      conn.className = 'pill live';
    } catch (e) {
      state.errors++;
      conn.textContent = e.auth ? 'signed out' : 'disconnected';
      conn.className = 'pill down';
      if (e.auth) showError(e);
    } finally {
      polling = false;
    }
  }

  function start() {
    $('kill').addEventListener('click', onKill);
    $('next-phase').addEventListener('click', () => act(() => api('POST', '/api/v1/phase', { next: true })));
    window.addEventListener('resize', resizeCharts);
    poll();
    setInterval(poll, POLL_MS);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
