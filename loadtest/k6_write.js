// Write load for loadtest/bench_write.py: the storefront's write mix against the writer.
//
// 70% helpful votes (reviews, questions, answers), 15% new reviews, 10% new questions, 5% new
// answers, on ids drawn from the loaded data set (TARGETS, a JSON file written by the benchmark).
// MODE=peak: a closed loop of VUS virtual users for DURATION (the most the writer acknowledges);
// MODE=rate: RATE requests per second, open loop, for DURATION (latency at a fixed load); at most
// 256 requests in flight, so a stalled server shows as dropped iterations rather than as a
// generator that spawns VUs until it starves the box it is measuring.
//
// The generator shares the two cores with what it measures, so it is kept lean: the id lists are
// parsed once and shared by every VU (SharedArray), all 256 VUs are started before the clock runs
// (a VU started mid-run would stall the others while it initialises), and every request carries a
// `name` tag with the `url` system tag dropped, so k6 keeps a handful of metric series instead of
// one per distinct URL (100k+ of them, with the memory and CPU that costs).
import http from 'k6/http';
import { check } from 'k6';
import { SharedArray } from 'k6/data';

const BASE = __ENV.BASE;
const targets = {};
for (const list of ['reviews', 'questions', 'answers', 'products']) {
  targets[list] = new SharedArray(list, () => JSON.parse(open(__ENV.TARGETS))[list]);
}
const JSON_HEADERS = { 'Content-Type': 'application/json' };
const VOTE = { headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, tags: { name: 'vote' } };
const REVIEW = { headers: JSON_HEADERS, tags: { name: 'review' } };
const QUESTION = { headers: JSON_HEADERS, tags: { name: 'question' } };
const ANSWER = { headers: JSON_HEADERS, tags: { name: 'answer' } };
const SYSTEM_TAGS = ['status', 'method', 'name', 'scenario', 'check', 'error', 'expected_response'];
const BODY = 'Bought it for a trip and it held up to rain, wind and a week of daily wear. ';

export const options = __ENV.MODE === 'rate'
  ? {
      scenarios: {
        writes: {
          executor: 'constant-arrival-rate', rate: Number(__ENV.RATE), timeUnit: '1s',
          duration: __ENV.DURATION, preAllocatedVUs: 256, maxVUs: 256,
        },
      },
      summaryTrendStats: ['avg', 'p(50)', 'p(90)', 'p(99)', 'max'],
      discardResponseBodies: true,
      systemTags: SYSTEM_TAGS,
    }
  : {
      vus: Number(__ENV.VUS), duration: __ENV.DURATION,
      summaryTrendStats: ['avg', 'p(50)', 'p(90)', 'p(99)', 'max'],
      discardResponseBodies: true,
      systemTags: SYSTEM_TAGS,
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
    res = http.put(BASE + path, '', VOTE);
  } else if (roll < 0.85) {
    const product = pick(targets.products);
    const characteristics = {};
    for (const id of product.characteristics) characteristics[String(id)] = 1 + Math.floor(Math.random() * 5);
    res = http.post(BASE + '/reviews', JSON.stringify({
      product_id: product.id, rating: 1 + Math.floor(Math.random() * 5), summary: 'Solid', body: BODY,
      recommend: Math.random() < 0.8, name: 'loadtest', email: 'load@example.com', photos: [],
      characteristics,
    }), REVIEW);
  } else if (roll < 0.95) {
    res = http.post(BASE + '/qa/questions', JSON.stringify({
      body: 'Does this run true to size?', name: 'loadtest', email: 'load@example.com',
      product_id: pick(targets.products).id,
    }), QUESTION);
  } else {
    res = http.post(BASE + `/qa/questions/${pick(targets.questions)}/answers`, JSON.stringify({
      body: 'It does, I wear my usual size.', name: 'loadtest', email: 'load@example.com', photos: [],
    }), ANSWER);
  }
  check(res, { acknowledged: (r) => r.status === 201 || r.status === 204 });
}
