// Baseline: steady inference traffic through the gateway, as users send it.
//
// A constant arrival rate of POST /infer with varied prompts (mostly cache
// MISSes, some repeats), each virtual user a distinct client address so the
// per-client limit (20r/s) never applies; the total stays under the global
// limit (200r/s).  Pass/fail is in the thresholds.
//
//   k6 run k6/baseline.js                       (BASE_URL, RATE, DURATION)
//   docker compose --profile load run --rm k6

import http from 'k6/http';
import { check } from 'k6';
import { Counter } from 'k6/metrics';
import {
  BASE_URL, JSON_HEADERS, TREND_STATS, clientAddress, header, inferBody,
  parseJson, prompt, summaryOutputs,
} from './lib/common.js';

const RATE = parseInt(__ENV.RATE || '50', 10);
const DURATION = __ENV.DURATION || '30s';

const cacheStatus = new Counter('x_cache');

export const options = {
  scenarios: {
    infer: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: 20,
      maxVUs: 100,
    },
  },
  thresholds: {
    http_req_duration: ['p(95)<1000', 'p(99)<2000'],
    http_req_failed: ['rate<0.01'],
    checks: ['rate>0.99'],
  },
  summaryTrendStats: TREND_STATS,
};

export default function () {
  // one prompt in ten is a repeat of a small popular set
  const n = Math.random() < 0.1 ? Math.floor(Math.random() * 10) : 1000 + __VU * 100000 + __ITER;
  const maxTokens = 8 + Math.floor(Math.random() * 24);

  const res = http.post(`${BASE_URL}/infer`, inferBody(prompt(n), maxTokens), {
    headers: Object.assign({ 'X-Forwarded-For': clientAddress(__VU, 1) }, JSON_HEADERS),
    tags: { name: 'POST /infer' },
  });

  const body = parseJson(res);
  const xc = header(res, 'X-Cache') || 'none';
  cacheStatus.add(1, { x_cache: xc });

  check(res, {
    'status 200': (r) => r.status === 200,
    'JSON answer with output and usage': () => !!body && typeof body.output === 'string' && !!body.usage,
    'X-Cache present': () => xc === 'HIT' || xc === 'MISS' || xc === 'BYPASS',
    'RateLimit headers present': (r) => header(r, 'RateLimit-Limit') !== undefined,
  });
}

export function handleSummary(data) {
  return summaryOutputs('baseline', data);
}
