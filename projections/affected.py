"""What a batch of mutations touched, in read-model terms.

The worker collects one `Affected` per batch while it applies source-row changes, then hands it
to `projections.refresh` inside the same transaction; the projections package alone decides
which read models that means.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class Affected:
    # Products whose reviews list and reviews meta must be rebuilt (new review, report).
    review_products: set[int] = dataclasses.field(default_factory=set)
    # Products whose reviews list changed but whose meta did not (helpful votes): the list only.
    review_lists: set[int] = dataclasses.field(default_factory=set)
    # Products whose questions model (questions with nested answers) must be rebuilt.
    question_products: set[int] = dataclasses.field(default_factory=set)
    # Questions whose answers model must be rebuilt.
    answer_questions: set[int] = dataclasses.field(default_factory=set)

    def merge(self, other: "Affected") -> None:
        self.review_products |= other.review_products
        self.review_lists |= other.review_lists
        self.question_products |= other.question_products
        self.answer_questions |= other.answer_questions

    def __bool__(self) -> bool:
        return bool(self.review_products or self.review_lists or self.question_products or self.answer_questions)
