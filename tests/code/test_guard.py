"""The online store's circuit breaker: when rankings stop reading the store, and start again."""

from serving.guard import StoreGuard


def test_reads_failed_in_a_row_open_the_guard_and_a_probe_that_answers_closes_it():
    guard = StoreGuard(failures=3)
    assert guard.admit() is None and not guard.is_open
    guard.failed("timed out")
    guard.failed("timed out")
    guard.succeeded()  # a success in between: the count starts again
    guard.failed("timed out")
    guard.failed("timed out")
    assert guard.admit() is None
    guard.failed("refused")
    assert guard.is_open and guard.admit() == "the online store failed 3 reads in a row, last: refused"
    assert not guard.probed("still refused")
    assert guard.admit() == "the online store does not answer probes: still refused"
    assert guard.probed(None) and guard.admit() is None and not guard.is_open
    guard.failed("timed out")  # closed again: one failure does not reopen it
    assert guard.admit() is None


def test_a_content_problem_holds_the_guard_until_it_clears():
    guard = StoreGuard()
    assert not guard.hold(None)  # nothing held, nothing released
    assert not guard.hold("view user_features: its table is missing")
    assert guard.admit() == "view user_features: its table is missing" and not guard.is_open
    assert not guard.probed(None)  # a probe does not release a content problem
    assert guard.admit() == "view user_features: its table is missing"
    assert guard.hold(None) and guard.admit() is None
