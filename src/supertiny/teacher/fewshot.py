"""Few-shot examples for the teacher: the labelled seed requests most like a request.

Similarity is TF-IDF cosine over character 3-grams and words of the users' text: character
n-grams forgive the typos of spoken requests ("navigte"), words reward shared vocabulary. The
seed set is small (tens to hundreds), so a dense scan is fast enough and needs no library.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Callable

_WORD = re.compile(r"\w+")


def request_text(request: dict) -> str:
    """The user's words in a request (what examples are matched on)."""
    return " ".join(message["content"] for message in request["messages"] if message["role"] == "user")


def _features(text: str) -> Counter:
    normal = " " + " ".join(text.lower().split()) + " "
    grams = Counter(normal[i : i + 3] for i in range(len(normal) - 2))
    grams.update("w:" + word for word in _WORD.findall(normal))
    return grams


class FewShotIndex:
    """Nearest labelled examples by lexical similarity; never the request itself."""

    def __init__(self, examples: list[dict]) -> None:
        self.examples = [example for example in examples if example.get("reference") is not None]
        counts = [_features(request_text(example)) for example in self.examples]
        document_frequency = Counter(feature for count in counts for feature in count)
        total = len(self.examples)
        self._idf = {feature: math.log((1 + total) / (1 + df)) + 1 for feature, df in document_frequency.items()}
        self._vectors = [self._vector(count) for count in counts]

    def _vector(self, count: Counter) -> dict[str, float]:
        # Unseen features cannot match any example, so they only scale the norm.
        weights = {feature: (1 + math.log(n)) * self._idf.get(feature, 1.0) for feature, n in count.items()}
        norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
        return {feature: w / norm for feature, w in weights.items()}

    def nearest(self, request: dict, n: int, accept: Callable[[dict], bool] | None = None) -> list[dict]:
        """Up to ``n`` examples, most similar first, that ``accept`` admits; an example with the
        request's id or the same messages is never returned."""
        if n <= 0 or not self.examples:
            return []
        query = self._vector(_features(request_text(request)))
        scored = []
        for position, (example, vector) in enumerate(zip(self.examples, self._vectors)):
            if example["id"] == request.get("id") or example["messages"] == request["messages"]:
                continue
            if accept is not None and not accept(example):
                continue
            score = sum(weight * vector.get(feature, 0.0) for feature, weight in query.items())
            scored.append((-score, position))
        scored.sort()
        return [self.examples[position] for _, position in scored[:n]]
