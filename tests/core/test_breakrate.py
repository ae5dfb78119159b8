"""Break rate: the conditional rate P(wrong with f | right without f) with its counts, by hand."""

import pytest

from opcod_core.breakrate import break_counts, difficulty_bin, step_metrics
from opcod_core.events import BreakEvent


def sample(without_f: bool, with_f: bool) -> dict:
    return {"correct_without_f": without_f, "correct_with_f": with_f, "broken": without_f and not with_f}


def probe(without_f: bool, with_f: bool) -> BreakEvent:
    """The break event a step reports for one probe."""
    return BreakEvent(round=1, direction=1, step=0, global_step=0, tutee="phys", tutor="chem", exchange_key="k",
                      domain="chemistry", tutor_cognizant=True, difficulty="easy", correct_with_f=with_f,
                      correct_without_f=without_f, eligible=without_f, broken=without_f and not with_f)


def test_break_counts_condition_on_right_without_feedback():
    # 5 samples: 3 right without f, of which 1 turned wrong; the 2 wrong-without-f samples do not count,
    # whatever f did to them (one was "fixed" by f)
    s = [sample(True, False), sample(True, True), sample(True, True), sample(False, True), sample(False, False)]
    c = break_counts(s)
    assert c == {"samples": 5, "eligible": 3, "broken": 1, "rate": pytest.approx(1 / 3)}


def test_no_eligible_sample_means_no_rate_not_zero():
    c = break_counts([sample(False, False), sample(False, True)])
    assert c["eligible"] == 0 and c["rate"] is None
    m = step_metrics([probe(False, False)])
    assert m == {"break/samples": 1.0, "break/eligible": 0.0, "break/broken": 0.0}
    assert step_metrics([]) == {}


def test_step_metrics_and_aggregation_sum_counts_not_rates():
    step_a = [probe(True, False)]                                    # 1/1
    step_b = [probe(True, True), probe(True, True), probe(True, True)]   # 0/3
    assert step_metrics(step_a)["break/rate"] == 1.0 and step_metrics(step_b)["break/rate"] == 0.0
    # over both steps: 1 broken of 4 eligible = 0.25, not the mean of the step rates (0.5)
    assert break_counts(b.to_dict() for b in step_a + step_b)["rate"] == pytest.approx(0.25)


def test_difficulty_bins():
    assert [difficulty_bin(x) for x in (0.0, 0.3, 1 / 3, 0.5, 2 / 3, 1.0)] == ["hard", "hard", "medium", "medium",
                                                                              "easy", "easy"]
