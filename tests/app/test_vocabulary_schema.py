"""The database schema's CHECK constraints and the core use the same domain words (opcod_core.vocabulary)."""

from opcod_core.vocabulary import ANCHORING_CATEGORIES, FINAL_RUN_STATUSES, RunStatus, values


def test_the_schema_checks_and_the_core_share_the_words():
    from app.models import RUN_STATUSES, Run
    from opcod_core.anchoring import CATEGORIES

    assert RUN_STATUSES == values(RunStatus) and CATEGORIES == ANCHORING_CATEGORIES
    check = next(c for c in Run.__table__.constraints if getattr(c, "name", "") and str(c.name).endswith("status"))
    assert all(f"'{s}'" in str(check.sqltext) for s in RunStatus)
    assert {s.value for s in FINAL_RUN_STATUSES} == {"finished", "failed", "cancelled"}
