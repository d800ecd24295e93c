// Cache: a small prompt set, so the cache warms and then answers.
//
// Scenario "warmup" sends every prompt of the set (MISS, then stored);
// scenario "measure" starts after it, tagged phase=measure, and sends the
// same prompts at a constant rate: nearly all of them must be HITs
// (custom Rate metric cache_hits, threshold on its phase=measure part), each
// HIT carrying Age, and faster than a trip to ai-sim.
//
//   k6 run k6/cache.js                          (BASE_URL, RATE, DURATION)
//   docker compose --profile load run --rm k6 run /scripts/cache.js

import http from 'k6/http';
import { check } from 'k6';
import { Rate, Trend } from 'k6/metrics';
import {
  BASE_URL, JSON_HEADERS, TREND_STATS, clientAddress, header, inferBody,
  prompt, summaryOutputs,
} from './lib/common.js';

const PROMPTS = 8;
const RATE = parseInt(__ENV.RATE || '100', 10);
const DURATION = __ENV.DURATION || '20s';

const cacheHits = new Rate('cache_hits');
const hitDuration = new Trend('cache_hit_duration', true);

export const options = {
  scenarios: {
    warmup: {
      executor: 'per-vu-iterations',
      vus: 1,
      iterations: PROMPTS,
      maxDuration: '10s',
      exec: 'warmup',
      tags: { phase: 'warmup' },
    },
    measure: {
      executor: 'constant-arrival-rate',
      startTime: '10s',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: 20,
      maxVUs: 100,
      tags: { phase: 'measure' },
    },
  },
  thresholds: {
    'cache_hits{phase:measure}': ['rate>0.8'],
    'http_req_duration{phase:measure}': ['p(95)<500'],
    'cache_hit_duration': ['p(95)<100'],
    http_req_failed: ['rate<0.01'],
    checks: ['rate>0.99'],
  },
  summaryTrendStats: TREND_STATS,
};

function ask(n) {
  const res = http.post(`${BASE_URL}/infer`, inferBody(prompt(n), 16), {
    headers: Object.assign({ 'X-Forwarded-For': clientAddress(__VU, 2) }, JSON_HEADERS),
    tags: { name: 'POST /infer' },
  });

  const xc = header(res, 'X-Cache');
  const hit = xc === 'HIT';
  cacheHits.add(hit);
  if (hit) {
    hitDuration.add(res.timings.duration);
  }

  check(res, {
    'status 200': (r) => r.status === 200,
    'X-Cache is HIT, MISS or BYPASS': () => xc === 'HIT' || xc === 'MISS' || xc === 'BYPASS',
    'a HIT carries Age': (r) => !hit || /^\d+$/.test(header(r, 'Age') || ''),
  });
}

// scenario "warmup": each prompt of the set once, in order
export function warmup() {
  ask(__ITER % PROMPTS);
}

// scenario "measure": any prompt of the set
export default function () {
  ask(Math.floor(Math.random() * PROMPTS));
}

export function handleSummary(data) {
  return summaryOutputs('cache', data);
}
