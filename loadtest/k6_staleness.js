// Staleness for loadtest/bench_write.py: ack → first GET that shows the write, under load.
//
// Three open-loop scenarios in one k6 process (a compiled generator costs the box far less than a
// Python one): `votes` sends helpful votes to the writer, `tracked` posts a new review with a
// unique summary and then polls the reader's `/reviews?product_id=…&sort=newest&count=20` every
// POLL_MS until the review shows (20, not 1: a later tracked review of the same product must not hide it) (Trend `staleness`, ms from the 201 to the answer that showed
// it), and `reads` sends product-page GETs to the reader.
//
// Kept lean like k6_write.js (the generator shares the two cores with what it measures): id lists
// parsed once and shared (SharedArray), VUs started before the clock runs, and a `name` tag on
// every request with the `url` system tag dropped, so k6 keeps a few metric series, not one per URL.
import http from 'k6/http';
import { check, sleep } from 'k6';
import { SharedArray } from 'k6/data';
import { Counter, Trend } from 'k6/metrics';

const WRITER = __ENV.WRITER;
const READER = __ENV.READER;
const targets = {};
for (const list of ['reviews', 'questions', 'answers', 'products']) {
  targets[list] = new SharedArray(list, () => JSON.parse(open(__ENV.TARGETS))[list]);
}
const WRITE_RATE = Number(__ENV.WRITE_RATE);
const TRACKED_RATE = Math.max(1, Math.round(WRITE_RATE / 10));
const POLL_MS = Number(__ENV.POLL_MS || 10);
const staleness = new Trend('staleness', true);
const neverVisible = new Counter('never_visible');
const writeErrors = new Counter('write_errors');

function scenario(exec, rate) {
  return {
    executor: 'constant-arrival-rate', exec, rate, timeUnit: '1s', duration: __ENV.DURATION,
    preAllocatedVUs: 64, maxVUs: 256,
  };
}

export const options = {
  scenarios: {
    votes: scenario('vote', WRITE_RATE - TRACKED_RATE),
    tracked: scenario('tracked', TRACKED_RATE),
    reads: scenario('read', Number(__ENV.READ_RATE)),
  },
  summaryTrendStats: ['count', 'avg', 'p(50)', 'p(90)', 'p(99)', 'max'],
  systemTags: ['status', 'method', 'name', 'scenario', 'check', 'error', 'expected_response'],
  // Never failing; declared so the summary carries the read requests' own figures.
  thresholds: { 'http_req_duration{name:read}': ['max>=0'], 'http_reqs{name:read}': ['count>=0'] },
};

function pick(list) {
  return list[Math.floor(Math.random() * list.length)];
}

export function vote() {
  const which = Math.random();
  const path = which < 0.6 ? `/reviews/${pick(targets.reviews)}/helpful`
    : which < 0.8 ? `/qa/questions/${pick(targets.questions)}/helpful`
      : `/qa/answers/${pick(targets.answers)}/helpful`;
  const res = http.put(WRITER + path, '', { responseType: 'none', tags: { name: 'vote' } });
  if (res.status !== 204) writeErrors.add(1);
}

export function tracked() {
  const product = pick(targets.products);
  const summary = `stale-${__VU}-${__ITER}-${Math.random().toString(36).slice(2, 10)}`;
  const characteristics = {};
  for (const id of product.characteristics) characteristics[String(id)] = 3;
  const posted = http.post(WRITER + '/reviews', JSON.stringify({
    product_id: product.id, rating: 5, summary, body: 'x'.repeat(60), recommend: true, name: 'bench',
    email: 'bench@example.com', characteristics,
  }), { headers: { 'Content-Type': 'application/json' }, responseType: 'none', tags: { name: 'tracked_post' } });
  if (posted.status !== 201) {
    writeErrors.add(1);
    return;
  }
  const acked = Date.now();
  const url = `${READER}/reviews?product_id=${product.id}&sort=newest&count=20`;
  while (Date.now() - acked < 30000) {
    const res = http.get(url, { responseType: 'text', tags: { name: 'tracked_get' } });
    if (res.body && res.body.indexOf(summary) >= 0) {
      staleness.add(Date.now() - acked);
      return;
    }
    sleep(POLL_MS / 1000);
  }
  neverVisible.add(1);
}

// Reads go to the first HOT products (the benchmark warms the reader with them first), as shopper
// traffic concentrates on a part of the catalogue.
const HOT = Math.min(Number(__ENV.HOT || 1000), targets.products.length);

export function read() {
  const id = targets.products[Math.floor(Math.random() * HOT)].id;
  const roll = Math.random();
  const path = roll < 0.4 ? `/reviews/?product_id=${id}&count=1000&sort=relevant`
    : roll < 0.7 ? `/reviews/meta?product_id=${id}`
      : `/qa/questions?product_id=${id}&count=100`;
  const res = http.get(READER + path, { responseType: 'none', tags: { name: 'read' } });
  check(res, { read_ok: (r) => r.status === 200 });
}
