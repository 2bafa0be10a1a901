// The read load that runs beside the staleness measurement of loadtest/bench_write.py:
// product-page GETs (reviews, meta, questions) on random products, RATE per second, open loop.
import http from 'k6/http';
import { check } from 'k6';

const BASE = __ENV.BASE;
const targets = JSON.parse(open(__ENV.TARGETS));

export const options = {
  scenarios: {
    reads: {
      executor: 'constant-arrival-rate', rate: Number(__ENV.RATE), timeUnit: '1s',
      duration: __ENV.DURATION, preAllocatedVUs: 50, maxVUs: 400,
    },
  },
  summaryTrendStats: ['avg', 'p(50)', 'p(90)', 'p(99)', 'max'],
  discardResponseBodies: true,
};

export default function () {
  const id = targets.products[Math.floor(Math.random() * targets.products.length)].id;
  const roll = Math.random();
  const path = roll < 0.4 ? `/reviews/?product_id=${id}&count=1000&sort=relevant`
    : roll < 0.7 ? `/reviews/meta?product_id=${id}`
      : `/qa/questions?product_id=${id}&count=100`;
  check(http.get(BASE + path), { ok: (r) => r.status === 200 });
}
