"""The storefront's write mix as prepared HTTP requests, for the open-loop generator (`openloop.py`).

Same mix as `k6_write.js`: 70% helpful votes (reviews 60%, questions 20%, answers 20% of them),
15% new reviews (every characteristic of the product scored), 10% new questions, 5% new answers,
on ids drawn from the benchmark's targets file.
"""

from __future__ import annotations

import random

import orjson

from loadtest.openloop import Call, request_bytes

BODY = "Bought it for a trip and it held up to rain, wind and a week of daily wear. "
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


class WriteMix:
    def __init__(self, targets: dict, host: str, seed: int | None = None):
        self.targets = targets
        self.host = host
        self.random = random.Random(seed)

    def _post(self, target: str, document: dict, name: str) -> Call:
        return Call(request_bytes("POST", self.host, target, orjson.dumps(document), JSON), name)

    def vote(self) -> Call:
        which, choice = self.random.random(), self.random.choice
        if which < 0.6:
            path = f"/reviews/{choice(self.targets['reviews'])}/helpful"
        elif which < 0.8:
            path = f"/qa/questions/{choice(self.targets['questions'])}/helpful"
        else:
            path = f"/qa/answers/{choice(self.targets['answers'])}/helpful"
        return Call(request_bytes("PUT", self.host, path, b"", FORM), "vote")

    def review(self, summary: str = "Solid", name: str = "review") -> tuple[Call, int]:
        product = self.random.choice(self.targets["products"])
        rating = self.random.randint
        return self._post("/reviews", {
            "product_id": product["id"], "rating": rating(1, 5), "summary": summary, "body": BODY,
            "recommend": self.random.random() < 0.8, "name": "loadtest", "email": "load@example.com", "photos": [],
            "characteristics": {str(c): rating(1, 5) for c in product["characteristics"]},
        }, name), product["id"]

    def __call__(self) -> Call:
        roll = self.random.random()
        if roll < 0.7:
            return self.vote()
        if roll < 0.85:
            return self.review()[0]
        if roll < 0.95:
            return self._post("/qa/questions", {
                "body": "Does this run true to size?", "name": "loadtest", "email": "load@example.com",
                "product_id": self.random.choice(self.targets["products"])["id"]}, "question")
        return self._post(f"/qa/questions/{self.random.choice(self.targets['questions'])}/answers", {
            "body": "It does, I wear my usual size.", "name": "loadtest", "email": "load@example.com",
            "photos": []}, "answer")
