"""Few-shot retrieval: the most similar labelled examples, and never the request itself."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from supertiny.teacher.fewshot import FewShotIndex


def test_nearest_ranks_similar_requests_first_and_forgives_typos(requests, make_request):
    index = FewShotIndex(requests)
    query = make_request(99, "set a timr for 5 minutes")
    assert [e["id"] for e in index.nearest(query, 2)] == ["r3", "r4"]


def test_the_request_itself_is_never_an_example(requests):
    index = FewShotIndex(requests)
    for request in requests:
        assert request["id"] not in {e["id"] for e in index.nearest(request, len(requests))}


def test_a_copy_of_the_request_under_another_id_is_not_an_example(requests, make_request):
    copy = make_request(42, requests[0]["messages"][0]["content"])
    assert "r1" not in {e["id"] for e in FewShotIndex(requests).nearest(copy, 10)}


def test_unlabelled_examples_are_ignored_and_accept_filters(requests, make_request):
    index = FewShotIndex(requests + [make_request(7, "turn on the kitchen lights now", None)])
    query = make_request(99, "kitchen lights on")
    assert "r7" not in {e["id"] for e in index.nearest(query, 10)}
    only_timers = index.nearest(query, 10, accept=lambda e: any(c["name"] == "start_timer" for c in e["reference"]))
    assert {e["id"] for e in only_timers} == {"r3", "r4"}
    assert index.nearest(query, 0) == [] and FewShotIndex([]).nearest(query, 3) == []


@settings(max_examples=50, deadline=None)
@given(texts=st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=8), pick=st.integers(min_value=0), n=st.integers(0, 10))
def test_never_itself_for_any_text(texts, pick, n):
    pool = [{"id": f"x{i}", "messages": [{"role": "user", "content": t}], "reference": []} for i, t in enumerate(texts)]
    request = pool[pick % len(pool)]
    found = FewShotIndex(pool).nearest(request, n)
    assert len(found) <= n
    assert all(e["id"] != request["id"] and e["messages"] != request["messages"] for e in found)
