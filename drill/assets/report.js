// brownout drill report: draws the charts from the JSON block with uPlot (inlined
// above). Names from the scenario reach the page only as text (uPlot writes
// legends with textContent, axes on a canvas), never as markup. The outcome is
// left on <body>: data-rendered="ok" and data-charts=N, or data-rendered="error"
// with data-error, so a headless browser can tell a drawn report from a broken one.
'use strict';

(function () {
  var body = document.body;
  var failed = false;

  function fail(e) {
    failed = true;
    var msg = String((e && (e.message || e)) || 'unknown error');
    body.dataset.rendered = 'error';
    body.dataset.error = msg;
    var box = document.getElementById('render-error');
    if (box) {
      box.hidden = false;
      box.textContent = 'The charts could not be drawn (' + msg + '); the tables are complete.';
    }
  }
  window.addEventListener('error', function (ev) { fail(ev.error || ev.message); });

  // ------------------------------------------------------------ formatting

  function fmtMs(v) {
    if (v === null || v === undefined || !isFinite(v)) return '–';
    var a = Math.abs(v);
    if (a >= 1000) return +(v / 1000).toFixed(a >= 10000 ? 1 : 2) + ' s';
    if (a >= 10) return Math.round(v) + ' ms';
    if (a >= 1) return +v.toFixed(1) + ' ms';
    if (a === 0) return '0 ms';
    return Math.round(v * 1000) + ' µs';
  }
  function fmtPct(v) {
    if (v === null || v === undefined || !isFinite(v)) return '–';
    return +v.toFixed(v !== 0 && Math.abs(v) < 1 ? 2 : 1) + '%';
  }
  function fmtRate(v) {
    if (v === null || v === undefined || !isFinite(v)) return '–';
    return +v.toFixed(v < 10 ? 2 : 0) + '/s';
  }
  function fmtS(v) {
    if (v === null || v === undefined || !isFinite(v)) return '–';
    return +v.toFixed(1) + ' s';
  }
  var FMT = { ms: fmtMs, '%': fmtPct, '/s': fmtRate };

  // ------------------------------------------------------------ phases

  // Phase bands under the series, boundaries and names over them: a phase change
  // is visible on every chart, at the same time on each.
  function phasePlugin(phases, baseline) {
    function px(u, t) { return u.valToPos(t, 'x', true); }
    return {
      hooks: {
        drawClear: [function (u) {
          var ctx = u.ctx;
          var b = u.bbox;
          ctx.save();
          phases.forEach(function (p, i) {
            var x0 = Math.max(px(u, p.start_s), b.left);
            var x1 = Math.min(px(u, p.end_s), b.left + b.width);
            if (!(x1 > x0)) return;
            ctx.fillStyle = p.name === baseline ? 'rgba(26,127,55,0.07)'
              : (i % 2 ? 'rgba(60,70,90,0.07)' : 'rgba(60,70,90,0.025)');
            ctx.fillRect(x0, b.top, x1 - x0, b.height);
          });
          ctx.restore();
        }],
        draw: [function (u) {
          var ctx = u.ctx;
          var b = u.bbox;
          var dpr = window.devicePixelRatio || 1;
          ctx.save();
          ctx.font = (11 * dpr) + 'px system-ui, sans-serif';
          // uPlot leaves its last axis's alignment on the context.
          ctx.textAlign = 'left';
          ctx.textBaseline = 'top';
          phases.forEach(function (p, i) {
            var x0 = px(u, p.start_s);
            var x1 = Math.min(px(u, p.end_s), b.left + b.width);
            if (x0 < b.left - 1 || x0 > b.left + b.width) return;
            if (i > 0) {
              ctx.strokeStyle = 'rgba(40,48,64,0.55)';
              ctx.lineWidth = dpr;
              ctx.setLineDash([4 * dpr, 3 * dpr]);
              ctx.beginPath();
              ctx.moveTo(Math.round(x0) + 0.5, b.top);
              ctx.lineTo(Math.round(x0) + 0.5, b.top + b.height);
              ctx.stroke();
              ctx.setLineDash([]);
            }
            var label = p.name + (p.name === baseline && p.name.indexOf('baseline') < 0 ? ' (baseline)' : '');
            var w = ctx.measureText(label).width;
            if (w + 8 * dpr > x1 - x0) {
              label = p.name;
              w = ctx.measureText(label).width;
              if (w + 8 * dpr > x1 - x0) return;
            }
            ctx.fillStyle = 'rgba(255,255,255,0.8)';
            ctx.fillRect(x0 + 3 * dpr, b.top + 2 * dpr, w + 4 * dpr, 14 * dpr);
            ctx.fillStyle = '#3b4252';
            ctx.fillText(label, x0 + 5 * dpr, b.top + 3 * dpr);
          });
          ctx.restore();
        }],
      },
    };
  }

  // ------------------------------------------------------------ charts

  function seriesOpts(s, fmt) {
    var o = {
      label: s.label,
      stroke: s.color,
      value: function (u, v) { return v === null || v === undefined ? '–' : fmt(v); },
    };
    if (s.style === 'points') {
      o.paths = function () { return null; };
      o.width = 0;
      o.points = { show: true, space: 0, size: s.label.indexOf('error') >= 0 ? 6 : 4, width: 1, stroke: s.color, fill: s.color };
    } else if (s.style === 'step') {
      o.paths = uPlot.paths.stepped({ align: 1 });
      o.width = 1.5;
      o.fill = s.fill || undefined;
      o.points = { show: false };
    } else {
      // Thin enough that the requests it passes through stay visible.
      o.width = 1.5;
      o.points = { show: false };
    }
    if (s.dash) o.dash = [6, 4];
    return o;
  }

  function makeChart(data, spec, el) {
    var fmt = FMT[spec.unit] || String;
    var tables = spec.series.map(function (s) { return [s.x, s.y]; });
    // One time axis for every series: a time only another series has is "no
    // value here" (skipped over), and a null (a phase boundary) widens to the
    // values on either side (NULL_EXPAND, 2), or the line would cross it.
    var aligned = tables.length
      ? uPlot.join(tables, spec.series.map(function () { return [0, 2]; }))
      : [[], []];
    var series = [{ label: 'time', value: function (u, v) { return fmtS(v); } }];
    spec.series.forEach(function (s) { series.push(seriesOpts(s, fmt)); });
    var yScale = spec.log ? { distr: 3, log: 10 } : {
      range: spec.y_range ? function () { return spec.y_range.slice(); }
        : function (u, min, max) { return [0, max > 0 && isFinite(max) ? max * 1.08 : 1]; },
    };
    var opts = {
      width: Math.max(300, el.clientWidth || 600),
      height: spec.kind === 'faults' ? 220 : 250,
      scales: {
        x: { time: false, range: function () { return [0, data.x_max]; } },
        y: yScale,
      },
      axes: [
        {
          label: 'time since the drill started (s)',
          labelSize: 20,
          values: function (u, splits) { return splits.map(function (v) { return +v.toFixed(1) + ' s'; }); },
          grid: { stroke: 'rgba(0,0,0,0.06)' },
        },
        {
          label: spec.y_label,
          labelSize: 20,
          size: 64,
          values: function (u, splits) { return splits.map(fmt); },
          grid: { stroke: 'rgba(0,0,0,0.06)' },
        },
      ],
      series: series,
      cursor: { sync: { key: 'drill' }, drag: { x: true, y: false } },
      legend: { live: true },
      plugins: [phasePlugin(data.phases, data.baseline)],
    };
    return new uPlot(opts, aligned, el);
  }

  function render() {
    var node = document.getElementById('report-data');
    if (!node) throw new Error('no report data');
    if (typeof uPlot !== 'function') throw new Error('uPlot did not load');
    var data = JSON.parse(node.textContent);
    var plots = [];
    data.charts.forEach(function (spec) {
      var el = document.getElementById('chart-' + spec.id);
      if (!el) throw new Error('no place for chart ' + spec.id);
      plots.push({ el: el, u: makeChart(data, spec, el) });
    });
    var pending = null;
    window.addEventListener('resize', function () {
      if (pending) return;
      pending = window.requestAnimationFrame(function () {
        pending = null;
        plots.forEach(function (p) {
          p.u.setSize({ width: Math.max(300, p.el.clientWidth), height: p.u.height });
        });
      });
    });
    window.__brownoutReport = { plots: plots, data: data };
    if (!failed) {
      body.dataset.charts = String(plots.length);
      body.dataset.rendered = 'ok';
    }
  }

  function start() {
    try { render(); } catch (e) { fail(e); }
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
