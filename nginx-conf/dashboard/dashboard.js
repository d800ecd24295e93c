/*
 * ai-gateway dashboard: reads /cachez (SPEC 3.4, 7.1, 7.2, 8.2, 8.3) once
 * a second and draws it with uPlot.  No framework, no build step.
 *
 * /cachez counters are cumulative since nginx started (a reload keeps
 * them): the rate charts show what changed between two polls, per second,
 * and the hit ratio chart the hits among the lookups of the last ten
 * seconds.  A counter that went down means nginx was restarted; that
 * interval is left out (a gap), never drawn as a negative rate.  Gauges
 * (TTFT percentiles, what is in flight, the replicas' own reports) are
 * drawn as read.
 *
 * Any field may be absent (an older module, no Redis, no balancer that
 * collects reports): that part of the page then says so instead.  Names
 * in /cachez come from configs and from clients (model names): they are
 * only ever written as text, never as HTML.
 */
(function () {
  'use strict';

  const POLL_MS = 1000;     // SPEC 8.3: every second
  const WINDOW = 300;       // points kept per chart: five minutes of polls
  const CACHEZ = '/cachez';

  // Okabe and Ito's palette, told apart with any colour vision; black is
  // kept for "all caches"
  const COLORS = ['#0072b2', '#e69f00', '#009e73', '#d55e00', '#cc79a7',
                  '#56b4e9', '#8c6d1f', '#7f7f7f'];
  const BLACK = '#000000';
  const DASHED = [8, 4];
  const DOTTED = [2, 4];


  /* ---- reading /cachez: every field checked, none assumed ---------- */

  function isObj(v) {
    return v !== null && typeof v === 'object' && !Array.isArray(v);
  }

  function num(v) {
    return typeof v === 'number' && Number.isFinite(v) ? v : null;
  }

  function members(v) {     // [name, object] pairs, in /cachez's order
    return isObj(v) ? Object.entries(v).filter(([, x]) => isObj(x)) : [];
  }

  function delta(cur, old) {
    if (cur === null || old === null) {
      return null;
    }
    // a counter never goes down while nginx runs: below the last value, it
    // restarted from zero, and this interval has no rate to show
    return cur >= old ? cur - old : null;
  }

  function rate(cur, old, dt) {
    const d = delta(cur, old);
    return d === null || !(dt > 0) ? null : d / dt;
  }

  function ratio(hits, misses) {
    if (hits === null || misses === null || hits + misses === 0) {
      return null;
    }
    return hits / (hits + misses);
  }

  // every peer of every upstream: {key, label, up, balance, peer}
  function peers(doc) {
    const ups = members(doc.upstreams);
    const out = [];
    for (const [up, u] of ups) {
      for (const p of Array.isArray(u.peers) ? u.peers : []) {
        if (!isObj(p) || typeof p.addr !== 'string') {
          continue;
        }
        out.push({
          key: up + ' ' + p.addr, up: up, peer: p,
          label: ups.length > 1 ? p.addr + ' (' + up + ')' : p.addr,
          balance: typeof u.balance === 'string' ? u.balance : null
        });
      }
    }
    return out;
  }


  /* ---- formatting ---------------------------------------------------- */

  const intFmt = new Intl.NumberFormat('en-US', {maximumFractionDigits: 0});
  const decFmt = new Intl.NumberFormat('en-US', {maximumFractionDigits: 1});
  const NONE = '—';

  const fmt = {
    count: (v) => v === null ? NONE : intFmt.format(v),
    pct: (v) => v === null ? NONE : decFmt.format(v * 100) + ' %',
    ms: (v) => v === null ? NONE : decFmt.format(v) + ' ms',
    perSec: (v) => v === null ? NONE : decFmt.format(v) + '/s',
    text: (v) => v === null ? NONE : String(v),
    // micro-dollars, as a money zone counts them
    usd: (v) => v === null ? NONE : (v / 1e6).toFixed(6) + ' USD',
    bytes: function (v) {
      if (v === null) {
        return NONE;
      }
      const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
      let i = 0;
      while (v >= 1024 && i < units.length - 1) {
        v /= 1024;
        i++;
      }
      return decFmt.format(v) + ' ' + units[i];
    },
    duration: function (s) {
      if (s === null) {
        return NONE;
      }
      const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600);
      const m = Math.floor(s % 3600 / 60), sec = Math.floor(s % 60);
      return (d ? d + 'd ' : '') + (d || h ? h + 'h ' : '')
             + (d || h || m ? m + 'm ' : '') + sec + 's';
    }
  };

  const colors = new Map();     // one colour per cache, zone, model, peer

  function colorOf(name) {
    if (!colors.has(name)) {
      colors.set(name, COLORS[colors.size % COLORS.length]);
    }
    return colors.get(name);
  }


  /* ---- charts ------------------------------------------------------- */

  const times = [];             // seconds since the epoch, one per poll

  class Chart {
    constructor(name, unit, format, range) {
      this.fig = document.querySelector('figure[data-chart="' + name + '"]');
      this.box = this.fig.querySelector('.plot');
      this.note = this.fig.querySelector('.nodata');
      this.unit = unit;
      this.format = format;
      this.range = range;
      this.cols = new Map();    // label -> {values, color, dash, missing}
      this.plot = null;
      this.shape = '';
    }

    // one poll's points [{label, value, color, dash}], after times.push()
    push(points) {
      const seen = new Set();
      for (const p of points) {
        let col = this.cols.get(p.label);
        if (!col) {
          col = {values: new Array(times.length - 1).fill(null)};
          this.cols.set(p.label, col);
        }
        Object.assign(col, {color: p.color, dash: p.dash, missing: 0});
        col.values.push(p.value);
        seen.add(p.label);
      }
      for (const [label, col] of this.cols) {
        if (!seen.has(label)) {
          col.values.push(null);
          // gone from /cachez for a whole window: off the chart
          if (++col.missing >= WINDOW) {
            this.cols.delete(label);
          }
        }
      }
    }

    shift() {
      for (const col of this.cols.values()) {
        col.values.shift();
      }
    }

    data() {
      const labels = [...this.cols.keys()];
      return {labels: labels,
              values: labels.map((l) => this.cols.get(l).values.slice())};
    }

    draw(empty) {
      const {labels, values} = this.data();
      this.fig.dataset.series = JSON.stringify(labels);
      this.fig.dataset.last = JSON.stringify(
        values.map((v) => v.length ? v[v.length - 1] : null));

      if (!labels.length) {
        return this.hide(empty, 'nodata');
      }
      if (typeof window.uPlot !== 'function') {
        return this.hide('Charts unavailable: uPlot did not load (`make`'
                         + ' installs it); the tables below are live.',
                         'nochart');
      }
      this.note.hidden = true;
      this.box.hidden = false;
      this.fig.dataset.state = 'ok';

      const shape = JSON.stringify(labels.map((l) => {
        const c = this.cols.get(l);
        return [l, c.color, c.dash];
      }));
      const data = [times.slice()].concat(values);
      if (this.plot && shape === this.shape) {
        this.plot.setData(data);
        return;
      }
      // new series or styles: uPlot builds its series once, so anew
      if (this.plot) {
        this.plot.destroy();
      }
      this.plot = new window.uPlot(this.options(labels), data, this.box);
      this.shape = shape;
    }

    hide(message, state) {
      if (this.plot) {
        this.plot.destroy();
        this.plot = null;
        this.shape = '';
      }
      this.box.hidden = true;
      this.note.textContent = message;
      this.note.hidden = false;
      this.fig.dataset.state = state;
    }

    options(labels) {
      const format = this.format;
      return {
        width: this.width(),
        height: 220,
        cursor: {drag: {x: false, y: false}},
        // at least the last minute, so that a fresh page reads in seconds
        scales: {x: {time: true,
                     range: (u, min, max) => [Math.min(min, max - 60), max]},
                 y: {range: this.range}},
        axes: [
          {},
          {label: this.unit, size: 60,
           values: (u, ticks) => ticks.map((v) => decFmt.format(v))}
        ],
        // the legend reads the latest poll unless the pointer is on a time
        hooks: {setData: [latest], setLegend: [latest]},
        series: [{label: 'time'}].concat(labels.map((l) => {
          const c = this.cols.get(l);
          return {label: l, stroke: c.color, dash: c.dash, width: 2,
                  value: (u, v) => v === null || v === undefined
                                   ? NONE : format(v)};
        }))
      };
    }

    width() {
      return Math.max(280, this.box.clientWidth || this.fig.clientWidth);
    }

    resize() {
      if (this.plot) {
        this.plot.setSize({width: this.width(), height: 220});
      }
    }
  }

  function latest(u) {
    const n = u.data[0].length;
    if (n && (u.legend.idx === null || u.legend.idx === undefined
              || u.cursor.left < 0)) {
      u.setLegend({idx: n - 1}, false);
    }
  }

  // y from zero up to the data's top (or 1 with no data at all)
  const fromZero = (u, min, max) => [0, max > 0 ? max * 1.1 : 1];

  const charts = {
    hit_ratio: new Chart('hit_ratio', '%', (v) => decFmt.format(v) + ' %',
                         () => [0, 100]),
    tokens_saved: new Chart('tokens_saved', 'tokens/s', fmt.perSec,
                            fromZero),
    limit_passed: new Chart('limit_passed', 'req/s', fmt.perSec, fromZero),
    limit_rejected: new Chart('limit_rejected', '429/s', fmt.perSec,
                              fromZero),
    ttft_model: new Chart('ttft_model', 'ms', fmt.ms, fromZero),
    ttft_server: new Chart('ttft_server', 'ms', fmt.ms, fromZero),
    replica_requests: new Chart('replica_requests', 'requests', fmt.count,
                                fromZero),
    replica_tokens: new Chart('replica_tokens', 'tokens', fmt.count,
                              fromZero)
  };


  /* ---- text: the summary and the tables ------------------------------ */

  // data-value holds the raw figure ("" when absent), the text its reading
  function setCell(el, value, text) {
    const raw = value === null || value === undefined ? '' : String(value);
    if (el.dataset.value !== raw || el.textContent !== text) {
      el.dataset.value = raw;
      el.textContent = text;
    }
  }

  function setStat(name, value, text) {
    setCell(document.querySelector('[data-stat="' + name + '"]'), value,
            text);
  }

  // rows: [{key, name, attrs, cells: [[field, value, text], ...]}]; a
  // table without rows is hidden (the chart above it says why)
  function renderTable(name, rows) {
    const table = document.querySelector('table[data-table="' + name + '"]');
    const body = table.tBodies[0];
    table.hidden = rows.length === 0;

    const keys = rows.map((r) => r.key);
    const same = body.rows.length === rows.length
                 && [...body.rows].every((tr, i) => tr.dataset.key === keys[i]);
    if (!same) {
      body.replaceChildren(...rows.map((r) => {
        const tr = document.createElement('tr');
        tr.dataset.key = r.key;
        tr.dataset.name = r.name;
        Object.assign(tr.dataset, r.attrs || {});
        const th = document.createElement('th');
        th.scope = 'row';
        th.textContent = r.name;
        tr.append(th);
        for (const [field] of r.cells) {
          const td = document.createElement('td');
          td.dataset.field = field;
          tr.append(td);
        }
        return tr;
      }));
    }
    rows.forEach((r, i) => {
      const tds = body.rows[i].cells;
      r.cells.forEach(([, value, text], j) => setCell(tds[j + 1], value, text));
    });
  }

  function absent(doc, field, missing, empty) {
    return isObj(doc[field]) ? empty : missing;
  }


  /* ---- one poll ------------------------------------------------------ */

  const RATIO_POLLS = 10;       // the hit ratio: over the last 10 polls
  let recent = [];              // the last polls' {doc, mono}, oldest first
  let polls = 0;

  function update(doc, mono) {
    const prev = recent.length ? recent[recent.length - 1] : null;
    const up = num(doc.uptime_s);
    const oldUp = prev ? num(prev.doc.uptime_s) : null;
    if (up !== null && oldUp !== null && up < oldUp) {
      recent = [];              // restarted: no rate across the restart
    }
    const old = recent.length ? recent[recent.length - 1].doc : null;
    const dt = recent.length ? mono - recent[recent.length - 1].mono : 0;
    const first = recent.length ? recent[0].doc : null;
    recent.push({doc: doc, mono: mono});
    if (recent.length > RATIO_POLLS) {
      recent.shift();
    }

    const caches = members(doc.caches);
    const zones = members(doc.limits);
    const models = members(doc.models);
    const servers = members(doc.servers);
    const replicas = peers(doc);
    const was = (kind, name, from = old) =>
      from && isObj(from[kind]) && isObj(from[kind][name])
        ? from[kind][name] : {};

    times.push(Date.now() / 1000);

    // the hit ratio of the last ten seconds: a second holds few lookups
    // at a time, and would draw a dot here and there
    const windowed = (cur, from) => {
      const r = ratio(delta(num(cur.hits), num(from.hits)),
                      delta(num(cur.misses), num(from.misses)));
      return r === null ? null : r * 100;
    };
    const hr = [];
    if (num(doc.hits) !== null) {
      hr.push({label: 'all caches', color: BLACK,
               value: windowed(doc, first || {})});
    }
    for (const [name, c] of caches) {
      hr.push({label: name, color: colorOf(name),
               value: windowed(c, was('caches', name, first))});
    }
    charts.hit_ratio.push(hr);

    charts.tokens_saved.push(caches
      .filter(([, c]) => num(c.tokens_saved) !== null)
      .map(([name, c]) => ({
        label: name, color: colorOf(name),
        value: rate(num(c.tokens_saved),
                    num(was('caches', name).tokens_saved), dt)
      })));

    for (const field of ['passed', 'rejected']) {
      charts['limit_' + field].push(zones.map(([name, z]) => ({
        label: name, color: colorOf(name),
        value: rate(num(z[field]), num(was('limits', name)[field]), dt)
      })));
    }

    const ttft = (list) => {
      const points = [];
      for (const [name, m] of list) {
        const t = isObj(m.ttft_ms) ? m.ttft_ms : {};
        points.push({label: name + ' p50', color: colorOf(name),
                     value: num(t.p50)});
        points.push({label: name + ' p99', color: colorOf(name),
                     dash: DASHED, value: num(t.p99)});
      }
      return points;
    };
    charts.ttft_model.push(ttft(models));
    charts.ttft_server.push(ttft(servers));

    const load = [];
    for (const r of replicas) {
      const color = colorOf(r.peer.addr);
      load.push({label: r.label + ' in flight', color: color,
                 value: num(r.peer.inflight_requests)});
      if (isObj(r.peer.report)) {
        load.push({label: r.label + ' running', color: color, dash: DASHED,
                   value: num(r.peer.report.running)});
        load.push({label: r.label + ' waiting', color: color, dash: DOTTED,
                   value: num(r.peer.report.waiting)});
      }
    }
    charts.replica_requests.push(load);
    charts.replica_tokens.push(replicas.map((r) => ({
      label: r.label, color: colorOf(r.peer.addr),
      value: num(r.peer.inflight_tokens)
    })));

    if (times.length > WINDOW) {
      times.shift();
      Object.values(charts).forEach((c) => c.shift());
    }

    const noCaches = absent(doc, 'caches', '/cachez has no "caches".',
                            'No cache is configured.');
    const noZones = absent(doc, 'limits', '/cachez has no "limits".',
                           'No limit zone is configured.');
    const noModels = absent(doc, 'models',
        'No figures by model: this nginx\'s /cachez has no "models" yet.',
        'No request has named a model yet.');
    const noServers = absent(doc, 'servers',
        'No figures by replica: this nginx\'s /cachez has no "servers" yet.',
        'No replica has answered yet.');
    const noPeers = absent(doc, 'upstreams',
        'No replica load: /cachez has no "upstreams" (an upstream with'
        + ' ai_gateway_balance reports them).',
        'No upstream peers are reported.');

    charts.hit_ratio.draw(noCaches);
    charts.tokens_saved.draw(caches.length
        ? '/cachez has no "tokens_saved" for its caches.' : noCaches);
    charts.limit_passed.draw(noZones);
    charts.limit_rejected.draw(noZones);
    charts.ttft_model.draw(noModels);
    charts.ttft_server.draw(noServers);
    charts.replica_requests.draw(noPeers);
    charts.replica_tokens.draw(noPeers);

    // the summary: figures since start, as /cachez has them
    const saved = caches.map(([, c]) => num(c.tokens_saved))
                        .filter((v) => v !== null);
    const total = saved.length ? saved.reduce((a, b) => a + b, 0) : null;
    setStat('hit_ratio', num(doc.hit_ratio), fmt.pct(num(doc.hit_ratio)));
    for (const f of ['hits', 'misses', 'bypasses']) {
      setStat(f, num(doc[f]), fmt.count(num(doc[f])));
    }
    setStat('tokens_saved', total, fmt.count(total));
    setStat('uptime_s', up, fmt.duration(up));
    const redis = isObj(doc.redis) ? doc.redis : null;
    const state = !redis ? null : redis.configured === false ? 'off'
                  : redis.connected === true ? 'connected' : 'disconnected';
    const errs = redis ? (num(redis.errors) || 0) + (num(redis.timeouts) || 0)
                       : 0;
    setStat('redis', state, !redis ? NONE
            : {off: 'not configured', connected: 'connected',
               disconnected: 'not connected'}[state]
              + (errs ? ' (' + fmt.count(errs) + ' errors and timeouts)' : ''));

    renderTable('caches', caches.map(([name, c]) => {
      const used = num(c.bytes_used), cap = num(c.bytes_capacity);
      return {key: name, name: name, cells: [
        ['backend', c.backend, fmt.text(c.backend ?? null)],
        ['hits', num(c.hits), fmt.count(num(c.hits))],
        ['misses', num(c.misses), fmt.count(num(c.misses))],
        ['hit_ratio', ratio(num(c.hits), num(c.misses)),
         fmt.pct(ratio(num(c.hits), num(c.misses)))],
        ['tokens_saved', num(c.tokens_saved), fmt.count(num(c.tokens_saved))],
        ['entries', num(c.entries), fmt.count(num(c.entries))],
        ['bytes_used', used,
         fmt.bytes(used) + (cap ? ' of ' + fmt.bytes(cap) : '')]
      ]};
    }));

    renderTable('limits', zones.map(([name, z]) => {
      const unit = z.unit === 'tokens' || z.unit === 'usd' ? z.unit
                                                           : 'requests';
      const settled = unit === 'requests' ? null : num(z.settled);
      return {key: name, name: name, cells: [
        ['unit', unit, unit],
        ['backend', z.backend, fmt.text(z.backend ?? null)],
        ['passed', num(z.passed), fmt.count(num(z.passed))],
        ['rejected', num(z.rejected), fmt.count(num(z.rejected))],
        ['keys', num(z.keys), fmt.count(num(z.keys))],
        ['settled', settled,
         unit === 'usd' ? fmt.usd(settled) : fmt.count(settled)]
      ]};
    }));

    const percentiles = (m) => {
      const t = isObj(m.ttft_ms) ? m.ttft_ms : {};
      return ['p50', 'p90', 'p99'].map((p) => ['ttft_' + p, num(t[p]),
                                               fmt.ms(num(t[p]))]);
    };
    renderTable('models', models.map(([name, m]) => ({
      key: name, name: name, cells: [
        ['requests', num(m.requests), fmt.count(num(m.requests))],
        ['hits', num(m.hits), fmt.count(num(m.hits))],
        ['tokens_input', num(m.tokens_input), fmt.count(num(m.tokens_input))],
        ['tokens_output', num(m.tokens_output),
         fmt.count(num(m.tokens_output))]
      ].concat(percentiles(m))
    })));

    renderTable('servers', servers.map(([name, s]) => ({
      key: name, name: name, cells: [
        ['requests', num(s.requests), fmt.count(num(s.requests))]
      ].concat(percentiles(s))
    })));

    renderTable('peers', replicas.map((r) => {
      const p = r.peer, rep = isObj(p.report) ? p.report : {};
      const age = num(rep.age_ms);
      return {key: r.key, name: p.addr, attrs: {upstream: r.up}, cells: [
        ['upstream', r.up, r.up],
        ['balance', r.balance, fmt.text(r.balance)],
        ['picks', num(p.picks), fmt.count(num(p.picks))],
        ['inflight_requests', num(p.inflight_requests),
         fmt.count(num(p.inflight_requests))],
        ['inflight_tokens', num(p.inflight_tokens),
         fmt.count(num(p.inflight_tokens))],
        ['running', num(rep.running), fmt.count(num(rep.running))],
        ['waiting', num(rep.waiting), fmt.count(num(rep.waiting))],
        ['kv_cache_usage', num(rep.kv_cache_usage),
         fmt.pct(num(rep.kv_cache_usage))],
        ['age_ms', age, age === null ? 'no report'
                        : decFmt.format(age / 1000) + ' s ago']
      ]};
    }));
  }


  /* ---- the loop -------------------------------------------------------- */

  const status = document.getElementById('status');
  const polled = document.getElementById('polled');

  // the live region speaks on a change of state only, not every second
  function setStatus(state, text) {
    if (status.dataset.state !== state || status.textContent !== text) {
      status.dataset.state = state;
      status.textContent = text;
    }
  }

  async function poll() {
    const started = performance.now();
    try {
      let doc = null, problem = null;
      try {
        const r = await fetch(CACHEZ, {cache: 'no-store',
                                       headers: {Accept: 'application/json'}});
        if (!r.ok) {
          problem = CACHEZ + ' answered ' + r.status
                    + (r.status === 403 ? ' (it answers loopback only)' : '');
        } else {
          doc = await r.json();
          if (!isObj(doc)) {
            problem = CACHEZ + ' did not answer a JSON object';
            doc = null;
          }
        }
      } catch (e) {
        problem = 'Cannot read ' + CACHEZ + ': ' + e.message;
      }
      if (doc) {
        update(doc, performance.now() / 1000);
        polls++;
        polled.dataset.polls = String(polls);
        polled.textContent = 'Read ' + new Date().toLocaleTimeString()
                             + ', every second.';
        setStatus('ok', 'Live.');
      } else {
        setStatus('error', problem + '; trying again every second.');
      }
    } catch (e) {
      // a bug of this page: reported, and the page goes on polling
      console.error('dashboard:', e);
      setStatus('error', 'The page failed to draw /cachez: ' + e.message);
    }
    setTimeout(poll, Math.max(0, POLL_MS - (performance.now() - started)));
  }

  window.addEventListener('resize', () => {
    Object.values(charts).forEach((c) => c.resize());
  });

  // for the curious and for tests: the series each chart holds
  window.agwDashboard = {
    series: (name) => charts[name] ? charts[name].data() : null,
    times: () => times.slice()
  };

  poll();
}());
