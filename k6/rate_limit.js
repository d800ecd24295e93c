// Rate limiting: polite clients pass, an abusive one gets well-formed 429s.
//
// Every request carries a unique prompt (a cache MISS, so it is charged,
// SPEC 3.1) and a client address in X-Forwarded-For (nginx trusts it from
// private networks):
//
//   polite   10 VUs, one address each (10.3.x.y), ~5 r/s each: under the
//            per-client 20r/s, never limited
//   abuser   one address (192.168.77.7) at 60 r/s: past its burst of 40,
//            about two requests in three are rejected
//
// 429 is declared an expected status, so http_req_failed counts only real
// failures; every 429 must carry Retry-After, retry-after-ms,
// RateLimit-Scope, RateLimit-Limit/Remaining/Reset and the JSON body
// {"error":"rate_limited","scope":..,"retry_after":..}.
//
//   k6 run k6/rate_limit.js                     (BASE_URL, DURATION)
//   docker compose --profile load run --rm k6 run /scripts/rate_limit.js

import http from 'k6/http';
import { check, sleep } from 'k6';
import { Rate } from 'k6/metrics';
import {
  BASE_URL, JSON_HEADERS, TREND_STATS, clientAddress, header, inferBody,
  parseJson, summaryOutputs,
} from './lib/common.js';

const DURATION = __ENV.DURATION || '20s';
const ABUSER = '192.168.77.7';

http.setResponseCallback(http.expectedStatuses({ min: 200, max: 299 }, 429));

const rateLimited = new Rate('rate_limited');

export const options = {
  scenarios: {
    polite: {
      executor: 'constant-vus',
      vus: 10,
      duration: DURATION,
      exec: 'polite',
      tags: { client: 'polite' },
    },
    abuser: {
      executor: 'constant-arrival-rate',
      rate: 60,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: 20,
      maxVUs: 60,
      exec: 'abuser',
      tags: { client: 'abuser' },
    },
  },
  thresholds: {
    'rate_limited{client:polite}': ['rate<0.01'],
    'rate_limited{client:abuser}': ['rate>0.3'],
    'http_req_duration{status:429}': ['p(95)<50'],
    http_req_failed: ['rate<0.01'],
    checks: ['rate>0.99'],
  },
  summaryTrendStats: TREND_STATS,
};

function isInt(v, min) {
  return typeof v === 'string' && /^\d+$/.test(v) && parseInt(v, 10) >= min;
}

function send(address) {
  const text = `rate limit probe ${address} vu ${__VU} iter ${__ITER} ${Date.now()} ${Math.random()}`;
  const res = http.post(`${BASE_URL}/infer`, inferBody(text, 4), {
    headers: Object.assign({ 'X-Forwarded-For': address }, JSON_HEADERS),
    tags: { name: 'POST /infer' },
  });

  const limited = res.status === 429;
  rateLimited.add(limited);

  check(res, {
    'status 200 or 429': (r) => r.status === 200 || r.status === 429,
    'RateLimit-Limit/Remaining/Reset on every answer': (r) =>
      isInt(header(r, 'RateLimit-Limit'), 1)
      && isInt(header(r, 'RateLimit-Remaining'), 0)
      && isInt(header(r, 'RateLimit-Reset'), 0),
  });

  if (limited) {
    const body = parseJson(res);
    const scope = header(res, 'RateLimit-Scope');
    check(res, {
      '429 Retry-After >= 1': (r) => isInt(header(r, 'Retry-After'), 1),
      '429 retry-after-ms': (r) => isInt(header(r, 'retry-after-ms'), 1),
      '429 RateLimit-Scope': () => typeof scope === 'string' && scope.length > 0,
      '429 JSON body rate_limited': () => !!body && body.error === 'rate_limited'
        && body.scope === scope && Number.isInteger(body.retry_after) && body.retry_after >= 1,
    });
  }
  return res;
}

// scenario "polite": one address per VU, about 5 r/s each
export function polite() {
  send(clientAddress(__VU, 3));
  sleep(0.2);
}

// scenario "abuser": every VU is the same client
export function abuser() {
  send(ABUSER);
}

export default function () {
  polite();
}

export function handleSummary(data) {
  return summaryOutputs('rate_limit', data);
}
