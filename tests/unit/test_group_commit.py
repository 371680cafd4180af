"""GroupCommit's hand-over of the lead: no writer is stranded, none believes it committed when its group did not."""

from __future__ import annotations

import threading
import time

import pytest

from stockade.adapters.sql.group_commit import GroupCommit, Lead


def _statements(name: str):
    def run(conn) -> None:
        raise AssertionError("a fake lead runs nothing")

    run.__name__ = name
    return run


def _lead(take) -> list[BaseException | None]:
    return [None] * len(take())


def _in_thread(call) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def run() -> None:
        try:
            call()
            outcome.append("committed")
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def _held(lead: Lead) -> tuple[Lead, threading.Event, threading.Event]:
    """`lead` held back: the first event is set when it is called, and it goes on once the
    second is set."""
    leading, go_on = threading.Event(), threading.Event()

    def gated(take):
        leading.set()
        go_on.wait(10)
        return lead(take)

    return gated, leading, go_on


def _two_writers(group: GroupCommit, first_lead: Lead, second_lead: Lead = _lead) -> tuple[object, object]:
    """Writer "a" leads with `first_lead`, which starts only once writer "b" has queued behind
    it; each one's outcome: "committed" or what it raised."""
    gated, leading, go_on = _held(first_lead)
    first, first_outcome = _in_thread(lambda: group.commit(_statements("a"), gated))
    assert leading.wait(10)
    second, second_outcome = _in_thread(lambda: group.commit(_statements("b"), second_lead))
    deadline = time.monotonic() + 10
    while len(group._queue) < 2:
        assert time.monotonic() < deadline, "the second writer did not queue"
        time.sleep(0.005)
    go_on.set()
    first.join(10)
    second.join(10)
    return first_outcome[0], second_outcome[0]


def test_a_leader_that_fails_before_taking_its_group_hands_the_lead_to_the_next_writer():
    group = GroupCommit()
    led: list[list[str]] = []

    def failing_lead(take):
        raise RuntimeError("the writer lock could not be taken")

    def lead(take):
        statements = take()
        led.append([s.__name__ for s in statements])
        return [None] * len(statements)

    first, second = _two_writers(group, failing_lead, lead)
    assert isinstance(first, RuntimeError)
    assert second == "committed" and led == [["b"]]
    assert group._queue == [] and not group._leading


def test_the_writers_of_an_interrupted_group_fail_and_none_believes_it_committed():
    group = GroupCommit()

    def interrupted_lead(take):
        take()
        raise KeyboardInterrupt  # stopped mid-group: whether the COMMIT ran is unknown

    first, second = _two_writers(group, interrupted_lead)
    assert isinstance(first, KeyboardInterrupt)
    assert isinstance(second, RuntimeError) and "outcome is unknown" in str(second)
    assert group.commit(_statements("c"), _lead) is None  # the next writer leads a group of its own


def test_each_writer_of_a_group_gets_its_own_error():
    group = GroupCommit()

    def lead(take):
        return [ValueError(s.__name__) if s.__name__ == "b" else None for s in take()]

    first, second = _two_writers(group, lead)
    assert first == "committed"
    with pytest.raises(ValueError, match="b"):
        raise second  # type: ignore[misc]


def test_a_group_takes_at_most_max_group_writers_and_the_rest_form_the_next():
    """Queued writers hold no connection, so many may queue: one group takes `max_group` of
    them, in the order they came, and the first of the rest leads the next group."""
    group = GroupCommit(max_group=2)
    led: list[list[str]] = []

    def lead(take):
        statements = take()
        led.append([s.__name__ for s in statements])
        return [None] * len(statements)

    gated, leading, go_on = _held(lead)
    first, first_outcome = _in_thread(lambda: group.commit(_statements("a"), gated))
    assert leading.wait(10)
    others = []
    for name in "bcd":
        others.append(_in_thread(lambda name=name: group.commit(_statements(name), lead)))
        deadline = time.monotonic() + 10
        while len(group._queue) < "abcd".index(name) + 1:  # queued in this order
            assert time.monotonic() < deadline, "the writer did not queue"
            time.sleep(0.005)
    go_on.set()
    for thread, _ in [(first, first_outcome), *others]:
        thread.join(10)
    assert led == [["a", "b"], ["c", "d"]]
    assert first_outcome == ["committed"] and all(outcome == ["committed"] for _, outcome in others)
    assert group._queue == [] and not group._leading
