// Streaming: OpenAI-style chat completions with "stream": true through the
// gateway (proxy_buffering off, SPEC 2.1), token by token.
//
// k6's http API hands the body over once complete, so time to first token is
// approximated by time to first byte (timings.waiting, request sent ->
// response headers); ai-sim sends the headers when it accepts the request,
// before its first token, so ttft_ms is a lower bound.  stream_total_ms is
// the whole exchange, stream_receive_ms the part spent receiving chunks.
// A stream is never cached: X-Cache is never HIT.
//
//   k6 run k6/stream.js                         (BASE_URL, VUS, DURATION)
//   docker compose --profile load run --rm k6 run /scripts/stream.js

import http from 'k6/http';
import { check, sleep } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import {
  BASE_URL, JSON_HEADERS, TREND_STATS, chatBody, clientAddress, header, prompt,
  summaryOutputs,
} from './lib/common.js';

const VUS = parseInt(__ENV.VUS || '10', 10);
const DURATION = __ENV.DURATION || '30s';
const MAX_TOKENS = 32;

const ttft = new Trend('ttft_ms', true);
const streamTotal = new Trend('stream_total_ms', true);
const streamReceive = new Trend('stream_receive_ms', true);
const chunks = new Counter('stream_chunks');

export const options = {
  scenarios: {
    stream: {
      executor: 'constant-vus',
      vus: VUS,
      duration: DURATION,
    },
  },
  thresholds: {
    ttft_ms: ['p(95)<500'],
    stream_total_ms: ['p(95)<3000'],
    http_req_failed: ['rate<0.01'],
    checks: ['rate>0.99'],
  },
  summaryTrendStats: TREND_STATS,
};

export default function () {
  const n = __VU * 100000 + __ITER;
  const res = http.post(`${BASE_URL}/v1/chat/completions`, chatBody(prompt(n), MAX_TOKENS, true), {
    headers: Object.assign({ 'X-Forwarded-For': clientAddress(__VU, 4), Accept: 'text/event-stream' }, JSON_HEADERS),
    tags: { name: 'POST /v1/chat/completions stream' },
    timeout: '60s',
  });

  ttft.add(res.timings.waiting);
  streamTotal.add(res.timings.duration);
  streamReceive.add(res.timings.receiving);

  const body = typeof res.body === 'string' ? res.body : '';
  const events = body.split('\n').filter((l) => l.startsWith('data: '));
  const tokens = events.filter((l) => l !== 'data: [DONE]').length;
  chunks.add(tokens);

  check(res, {
    'status 200': (r) => r.status === 200,
    'text/event-stream': (r) => (header(r, 'Content-Type') || '').indexOf('text/event-stream') === 0,
    'ends with data: [DONE]': () => body.replace(/\s+$/, '').endsWith('data: [DONE]'),
    'token chunks before [DONE]': () => tokens >= 1,
    'a stream is never a cache HIT': (r) => header(r, 'X-Cache') !== 'HIT',
  });

  sleep(0.1);
}

export function handleSummary(data) {
  return summaryOutputs('stream', data);
}
