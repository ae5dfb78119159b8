"""The database schema's CHECK constraints and the core use the same domain words (opcod_core.vocabulary)."""

from opcod_core.vocabulary import ANCHORING_CATEGORIES, FINAL_RUN_STATUSES, RunStatus, values


def test_the_schema_checks_and_the_core_share_the_words():
    from app.models import RUN_STATUSES, Run
    from opcod_core.anchoring import CATEGORIES

    assert RUN_STATUSES == values(RunStatus) and CATEGORIES == ANCHORING_CATEGORIES
    check = next(c for c in Run.__table__.constraints if getattr(c, "name", "") and str(c.name).endswith("status"))
    assert all(f"'{s}'" in str(check.sqltext) for s in RunStatus)
    assert {s.value for s in FINAL_RUN_STATUSES} == {"finished", "failed", "cancelled"}


def test_run_override_kinds_are_one_list_for_the_core_the_api_the_form_and_the_worker():
    """quarantine and lift (tutor trust) are run-level overrides everywhere: the core's Literal, the API's
    request model, the run page's form labels, the tutor kinds the service and the worker check, and the
    trust-change table's CHECK constraint on what a change did."""
    from typing import get_args

    from app.models import TRUST_ACTIONS, TrustChange
    from app.schemas import RunOverrideIn
    from opcod_core.controls import RunOverrideKind as CoreKinds
    from opcod_core.trust_run import TRUST_OVERRIDES
    from opcod_core.vocabulary import (RUN_OVERRIDE_LABELS, TRUST_OVERRIDE_KINDS, TUTOR_OVERRIDE_KINDS,
                                       RunOverrideKind, TrustAction)

    assert set(get_args(CoreKinds)) == set(values(RunOverrideKind))
    assert set(get_args(RunOverrideIn.model_fields["kind"].annotation)) == set(values(RunOverrideKind))
    assert set(RUN_OVERRIDE_LABELS) == set(RunOverrideKind)
    assert set(TRUST_OVERRIDES) == {k.value for k in TRUST_OVERRIDE_KINDS} == set(values(TrustAction))
    assert TRUST_OVERRIDE_KINDS <= TUTOR_OVERRIDE_KINDS and TRUST_ACTIONS == values(TrustAction)
    check = next(c for c in TrustChange.__table__.constraints if str(getattr(c, "name", "")).endswith("action"))
    assert all(f"'{a}'" in str(check.sqltext) for a in TrustAction)
