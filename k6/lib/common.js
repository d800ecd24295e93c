// Shared helpers of the k6 scenarios (k6/*.js): the gateway address, client
// addresses, request bodies, header lookup and the end-of-test summary.
//
// No remote jslib import: the scripts must run where the network is closed.

export const BASE_URL = (__ENV.BASE_URL || 'http://localhost:8080').replace(/\/+$/, '');

export const JSON_HEADERS = { 'Content-Type': 'application/json' };

// Trend statistics every summary reports (k6's default lacks p(99)).
export const TREND_STATS = ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'];

const WORDS = [
  'gateway', 'token', 'bucket', 'cache', 'replica', 'stream', 'latency',
  'prompt', 'nginx', 'upstream', 'worker', 'shared', 'memory', 'redis',
  'inference', 'model', 'budget', 'client', 'header', 'limit',
];

// A client address in 10.0.0.0/8 (nginx trusts X-Forwarded-For from private
// networks, so the per-client limit sees one client per address).
// `space` separates scenarios that must not share a bucket.
export function clientAddress(vu, space) {
  const s = (space || 0) & 255;
  return `10.${s}.${(vu >> 8) & 255}.${vu & 255}`;
}

// Deterministic pseudo-random words for prompt `n`.
export function prompt(n, words) {
  const count = words || 8;
  let x = (n * 2654435761) >>> 0;
  const out = [];
  for (let i = 0; i < count; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out.push(WORDS[(x >>> 16) % WORDS.length]);
  }
  return `${out.join(' ')} #${n}`;
}

export function inferBody(text, maxTokens) {
  return JSON.stringify({ prompt: text, max_tokens: maxTokens || 16 });
}

export function chatBody(text, maxTokens, stream) {
  return JSON.stringify({
    model: 'sim-small',
    stream: !!stream,
    max_tokens: maxTokens || 16,
    messages: [{ role: 'user', content: text }],
  });
}

// Response header by name, case-insensitively (k6 hands headers over in Go's
// canonical form: "RateLimit-Scope" arrives as "Ratelimit-Scope").
export function header(res, name) {
  const want = name.toLowerCase();
  for (const k in res.headers) {
    if (k.toLowerCase() === want) {
      return res.headers[k];
    }
  }
  return undefined;
}

export function parseJson(res) {
  try {
    return JSON.parse(res.body);
  } catch (e) {
    return null;
  }
}

// ---- end-of-test summary ------------------------------------------------

function fmt(v, contains) {
  if (typeof v !== 'number' || !isFinite(v)) {
    return String(v);
  }
  if (contains === 'time') {
    return v >= 1000 ? `${(v / 1000).toFixed(2)}s` : `${v.toFixed(2)}ms`;
  }
  if (contains === 'data') {
    return v >= 1048576 ? `${(v / 1048576).toFixed(1)}MB` : `${(v / 1024).toFixed(1)}kB`;
  }
  return Number.isInteger(v) ? String(v) : v.toFixed(4);
}

function metricLine(name, m) {
  const v = m.values || {};
  let parts;
  switch (m.type) {
    case 'trend':
      parts = Object.keys(v).map((k) => `${k}=${fmt(v[k], m.contains)}`);
      break;
    case 'rate':
      parts = [`${(100 * (v.rate || 0)).toFixed(2)}%`, `${v.passes || 0} of ${(v.passes || 0) + (v.fails || 0)}`];
      break;
    case 'counter':
      parts = [fmt(v.count, m.contains), `${fmt(v.rate, m.contains)}/s`];
      break;
    default:
      parts = Object.keys(v).map((k) => `${k}=${fmt(v[k], m.contains)}`);
  }
  return `  ${name.padEnd(40, '.')} ${parts.join(' ')}`;
}

function collectChecks(group, out) {
  if (!group) {
    return out;
  }
  for (const c of group.checks || []) {
    out.push(c);
  }
  for (const g of group.groups || []) {
    collectChecks(g, out);
  }
  return out;
}

// A plain-text summary of handleSummary's `data`: checks, every metric,
// every threshold with its verdict.
export function textSummary(name, data) {
  const lines = [`\n== ${name}`];
  const metrics = data.metrics || {};
  const checks = collectChecks(data.root_group, []);

  if (checks.length) {
    lines.push('checks:');
    for (const c of checks) {
      const total = c.passes + c.fails;
      lines.push(`  ${c.fails === 0 ? 'ok  ' : 'FAIL'} ${c.name} (${c.passes}/${total})`);
    }
  }

  lines.push('metrics:');
  for (const n of Object.keys(metrics).sort()) {
    lines.push(metricLine(n, metrics[n]));
  }

  const verdicts = [];
  for (const n of Object.keys(metrics).sort()) {
    const th = metrics[n].thresholds || {};
    for (const expr of Object.keys(th)) {
      verdicts.push(`  ${th[expr].ok ? 'ok  ' : 'FAIL'} ${n}: ${expr}`);
    }
  }
  if (verdicts.length) {
    lines.push('thresholds:');
    lines.push(...verdicts);
  }
  if (data.state && typeof data.state.testRunDurationMs === 'number') {
    lines.push(`duration: ${(data.state.testRunDurationMs / 1000).toFixed(1)}s`);
  }
  return `${lines.join('\n')}\n`;
}

// What every scenario's handleSummary returns: the text summary on stdout
// and the whole `data` as JSON in $SUMMARY_DIR/<name>-summary.json (input of
// scripts/k6-report.py).
export function summaryOutputs(name, data) {
  const dir = (__ENV.SUMMARY_DIR || '/out').replace(/\/+$/, '');
  const out = { stdout: textSummary(name, data) };
  out[`${dir}/${name}-summary.json`] = JSON.stringify(data, null, 2);
  return out;
}
