// Write load for loadtest/bench_write.py: the storefront's write mix against the writer.
//
// 70% helpful votes (reviews, questions, answers), 15% new reviews, 10% new questions, 5% new
// answers, on ids drawn from the loaded data set (TARGETS, a JSON file written by the benchmark).
// MODE=peak: a closed loop of VUS virtual users for DURATION (the most the writer acknowledges);
// MODE=rate: RATE requests per second, open loop, for DURATION (latency at a fixed load); at most
// 256 requests in flight, so a stalled server shows as dropped iterations rather than as a
// generator that spawns VUs until it starves the box it is measuring.
import http from 'k6/http';
import { check } from 'k6';

const BASE = __ENV.BASE;
const targets = JSON.parse(open(__ENV.TARGETS));
const JSON_HEADERS = { headers: { 'Content-Type': 'application/json' } };
const FORM_HEADERS = { headers: { 'Content-Type': 'application/x-www-form-urlencoded' } };
const BODY = 'Bought it for a trip and it held up to rain, wind and a week of daily wear. ';

export const options = __ENV.MODE === 'rate'
  ? {
      scenarios: {
        writes: {
          executor: 'constant-arrival-rate', rate: Number(__ENV.RATE), timeUnit: '1s',
          duration: __ENV.DURATION, preAllocatedVUs: 64, maxVUs: 256,
        },
      },
      summaryTrendStats: ['avg', 'p(50)', 'p(90)', 'p(99)', 'max'],
      discardResponseBodies: true,
    }
  : {
      vus: Number(__ENV.VUS), duration: __ENV.DURATION,
      summaryTrendStats: ['avg', 'p(50)', 'p(90)', 'p(99)', 'max'],
      discardResponseBodies: true,
    };

function pick(list) {
  return list[Math.floor(Math.random() * list.length)];
}

export default function () {
  const roll = Math.random();
  let res;
  if (roll < 0.7) {
    const which = Math.random();
    const path = which < 0.6 ? `/reviews/${pick(targets.reviews)}/helpful`
      : which < 0.8 ? `/qa/questions/${pick(targets.questions)}/helpful`
        : `/qa/answers/${pick(targets.answers)}/helpful`;
    res = http.put(BASE + path, '', FORM_HEADERS);
  } else if (roll < 0.85) {
    const product = pick(targets.products);
    const characteristics = {};
    for (const id of product.characteristics) characteristics[String(id)] = 1 + Math.floor(Math.random() * 5);
    res = http.post(BASE + '/reviews', JSON.stringify({
      product_id: product.id, rating: 1 + Math.floor(Math.random() * 5), summary: 'Solid', body: BODY,
      recommend: Math.random() < 0.8, name: 'loadtest', email: 'load@example.com', photos: [],
      characteristics,
    }), JSON_HEADERS);
  } else if (roll < 0.95) {
    res = http.post(BASE + '/qa/questions', JSON.stringify({
      body: 'Does this run true to size?', name: 'loadtest', email: 'load@example.com',
      product_id: pick(targets.products).id,
    }), JSON_HEADERS);
  } else {
    res = http.post(BASE + `/qa/questions/${pick(targets.questions)}/answers`, JSON.stringify({
      body: 'It does, I wear my usual size.', name: 'loadtest', email: 'load@example.com', photos: [],
    }), JSON_HEADERS);
  }
  check(res, { acknowledged: (r) => r.status === 201 || r.status === 204 });
}
