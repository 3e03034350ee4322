"""Tests for server.domain.matcher -- the MATCHER primitive as a pure function (spec §6.1, §7.4, T1, T4, T8, §22)."""

from __future__ import annotations

import copy
from types import MappingProxyType
from typing import Any

import pytest

from server.domain.matcher import (
    MatcherConfig,
    MatcherError,
    MatchResult,
    config_from_properties,
    fuzzy_score,
    match,
    output_keys,
)

# --------------------------------------------------------------------------- T4 quickstart data (spec §20 T4)

INVOICES: list[dict[str, Any]] = [
    {"invoice_id": "INV-001", "vendor": "Acme Corp", "amount": 10000.00, "date": "2026-01-15"},
    {"invoice_id": "INV-002", "vendor": "Globex Inc", "amount": 4500.00, "date": "2026-01-18"},
    {"invoice_id": "INV-003", "vendor": "Initech", "amount": 7250.00, "date": "2026-01-20"},
    {"invoice_id": "INV-004", "vendor": "Umbrella Ltd", "amount": 15000.00, "date": "2026-01-22"},
    {"invoice_id": "INV-005", "vendor": "Stark Industries", "amount": 3200.00, "date": "2026-01-25"},
]
# The docs truncate the INV-004 payment; a partial payment (half the invoice) stands in for it.
PAYMENTS: list[dict[str, Any]] = [
    {"invoice_id": "INV-001", "vendor": "Acme Corp", "amount": 10000.00, "date": "2026-01-16"},
    {"invoice_id": "INV-002", "vendor": "Globex Inc", "amount": 4480.00, "date": "2026-01-19"},
    {"invoice_id": "INV-004", "vendor": "Umbrella Ltd", "amount": 7500.00, "date": "2026-01-23"},
]

# T1 step 2 matcher properties (verbatim); left/right already resolved.
T1_PROPERTIES: dict[str, Any] = {
    "left": "@input.invoices",
    "right": "@input.payments",
    "matchOn": ["invoice_id"],
    "tolerance": 0.05,
    "outputMatched": "matched",
    "outputUnmatchedLeft": "unmatched_invoices",
    "outputUnmatchedRight": "unmatched_payments",
}


def ids(records: list[dict[str, Any]], field: str = "invoice_id") -> list[Any]:
    return [record[field] for record in records]


def pair_ids(result: MatchResult, field: str = "invoice_id") -> list[tuple[Any, Any]]:
    return [(pair["a"][field], pair["b"][field]) for pair in result.matched]


def run(left: list[Any], right: list[Any], **properties: Any) -> MatchResult:
    return match(left, right, config_from_properties(properties))


# --------------------------------------------------------------------------- acceptance: T4 / T1 / §22 item 12


def test_quickstart_expected_matches() -> None:
    """§22 item 12: matchOn invoice_id, tolerance 0.05 (relative) -> INV-001, INV-002 matched; INV-003, INV-005 left."""
    result = run(INVOICES, PAYMENTS, matchOn=["invoice_id"], tolerance=0.05)
    assert pair_ids(result) == [("INV-001", "INV-001"), ("INV-002", "INV-002")]
    assert ids(result.unmatched_left) == ["INV-003", "INV-004", "INV-005"]
    assert ids(result.unmatched_right) == ["INV-004"]
    assert result.matched[0] == {"a": INVOICES[0], "b": PAYMENTS[0]}
    assert result.matched[1]["a"] is INVOICES[1] and result.matched[1]["b"] is PAYMENTS[1]
    # unmatched records are the original objects, unchanged
    assert result.unmatched_left[0] is INVOICES[2]


def test_quickstart_only_given_payments() -> None:
    """The two payments the docs show in full: INV-003, INV-004 and INV-005 have no payment."""
    result = run(INVOICES, PAYMENTS[:2], matchOn=["invoice_id"], tolerance=0.05)
    assert pair_ids(result) == [("INV-001", "INV-001"), ("INV-002", "INV-002")]
    assert ids(result.unmatched_left) == ["INV-003", "INV-004", "INV-005"]
    assert result.unmatched_right == []


def test_inputs_are_not_mutated() -> None:
    invoices, payments = copy.deepcopy(INVOICES), copy.deepcopy(PAYMENTS)
    run(invoices, payments, matchOn=["invoice_id"], tolerance=0.05, dateWindowDays=3)
    assert invoices == INVOICES and payments == PAYMENTS


def test_t1_first_workflow_matcher() -> None:
    config = config_from_properties(T1_PROPERTIES)
    assert config == MatcherConfig(match_on=("invoice_id",), tolerance=0.05)
    assert output_keys(T1_PROPERTIES) == ("matched", "unmatched_invoices", "unmatched_payments")
    result = match(INVOICES, PAYMENTS, config)
    assert len(result.matched) == 2  # the update_erp_status filter {"greaterThan": [{"length": "@matched"}, 0]} holds


def test_relative_tolerance_boundary() -> None:
    left = [{"id": 1, "amount": 100}]
    # |100 - 105| = 5 <= 0.05 * max(100, 105) = 5.25
    assert len(run(left, [{"id": 1, "amount": 105}], matchOn=["id"], tolerance=0.05).matched) == 1
    assert len(run(left, [{"id": 1, "amount": 105.26}], matchOn=["id"], tolerance=0.05).matched) == 1
    assert run(left, [{"id": 1, "amount": 105.3}], matchOn=["id"], tolerance=0.05).matched == []
    assert len(run(left, [{"id": 1, "amount": 95}], matchOn=["id"], tolerance=0.05).matched) == 1
    assert run(left, [{"id": 1, "amount": 94.9}], matchOn=["id"], tolerance=0.05).matched == []


def test_without_tolerance_amounts_are_ignored() -> None:
    result = run(INVOICES, PAYMENTS, matchOn=["invoice_id"])
    assert pair_ids(result) == [("INV-001", "INV-001"), ("INV-002", "INV-002"), ("INV-004", "INV-004")]


# ------------------------------------------------------------------- tolerance 0 / dateWindowDays 0 (§22 item 13)


def test_tolerance_zero_is_exact() -> None:
    result = run(INVOICES, PAYMENTS, matchOn=["invoice_id"], tolerance=0)
    assert pair_ids(result) == [("INV-001", "INV-001")]
    left = [{"id": "x", "amount": 0.1 + 0.2}]
    assert run(left, [{"id": "x", "amount": 0.3}], matchOn=["id"], tolerance=0).matched == []
    assert len(run([{"id": "x", "amount": 0.3}], [{"id": "x", "amount": "0.30"}], matchOn=["id"], tolerance=0).matched)
    assert len(run([{"id": "x", "amount": 0}], [{"id": "x", "amount": 0.0}], matchOn=["id"], tolerance=0).matched)


def test_date_window_zero_is_same_date() -> None:
    assert run(INVOICES, PAYMENTS, matchOn=["invoice_id"], dateWindowDays=0).matched == []  # payments a day later
    result = run(INVOICES, PAYMENTS, matchOn=["invoice_id"], dateWindowDays=1)
    assert len(result.matched) == 3
    same = [{"id": 1, "date": "2026-01-15T23:59:00Z"}]
    assert len(run(same, [{"id": 1, "date": "2026-01-15"}], matchOn=["id"], dateWindowDays=0).matched) == 1
    assert len(run(same, [{"id": 1, "date": "2026-01-15T00:00:00+02:00"}], matchOn=["id"], dateWindowDays=0).matched)
    assert run(same, [{"id": 1, "date": "2026-01-16T00:00:00Z"}], matchOn=["id"], dateWindowDays=0).matched == []


def test_date_window_days() -> None:
    left = [{"id": 1, "date": "2026-01-15"}]
    assert len(run(left, [{"id": 1, "date": "2026-01-10"}], matchOn=["id"], dateWindowDays=5).matched) == 1
    assert len(run(left, [{"id": 1, "date": "2026-01-20"}], matchOn=["id"], dateWindowDays=5).matched) == 1
    assert run(left, [{"id": 1, "date": "2026-01-21"}], matchOn=["id"], dateWindowDays=5).matched == []
    assert run(left, [{"id": 1, "date": "15/01/2026"}], matchOn=["id"], dateWindowDays=5).matched == []
    assert run(left, [{"id": 1, "date": 20260115}], matchOn=["id"], dateWindowDays=5).matched == []


def test_custom_amount_and_date_keys() -> None:
    left = [{"id": 1, "total": "100.00", "paid_on": "2026-02-01", "amount": 1, "date": "1999-01-01"}]
    right = [{"id": 1, "total": 101, "paid_on": "2026-02-02"}]
    props = {"matchOn": ["id"], "tolerance": 0.02, "dateWindowDays": 1, "amountKey": "total", "dateKey": "paid_on"}
    assert len(run(left, right, **props).matched) == 1


# --------------------------------------------------------------------------- fuzzy


def test_fuzzy_score_is_token_sort_ratio() -> None:
    assert fuzzy_score("Acme Corp", "acme corp") == 100.0
    assert fuzzy_score("Corp, Acme", "ACME corp.") == 100.0
    assert fuzzy_score("", "") == 100.0
    assert fuzzy_score("abc", "") == 0.0
    assert 80 < fuzzy_score("Office supplies January", "Office supply January") < 100
    assert fuzzy_score("Office supplies", "Consulting fees") < 50


def test_fuzzy_on_and_off() -> None:
    left = [{"vendor_id": "V1", "description": "Office supplies - January"}]
    right = [
        {"vendor_id": "V1", "description": "Consulting services"},
        {"vendor_id": "V1", "description": "office supplies january"},
    ]
    on = run(left, right, matchOn=["vendor_id"], fuzzyThreshold=85, descriptionKey="description")
    assert [pair["b"] for pair in on.matched] == [right[1]]
    assert on.unmatched_right == [right[0]]
    off = run(left, right, matchOn=["vendor_id"])
    assert [pair["b"] for pair in off.matched] == [right[0]]  # no fuzzy criterion: first candidate wins
    strict = run(left, right[:1], matchOn=["vendor_id"], fuzzyThreshold=85, descriptionKey="description")
    assert strict.matched == [] and strict.unmatched_left == left


def test_fuzzy_prefers_highest_score_and_default_key() -> None:
    left = [{"k": 1, "description": "ACME widgets order 1234"}]
    right = [
        {"k": 1, "description": "ACME widgets order"},
        {"k": 1, "description": "ACME widgets order 1234"},
    ]
    config = config_from_properties({"matchOn": ["k"], "fuzzyThreshold": 50})
    assert config.description_key == "description"
    assert match(left, right, config).matched[0]["b"] is right[1]


def test_fuzzy_missing_description() -> None:
    props: dict[str, Any] = {"matchOn": ["k"], "fuzzyThreshold": 80, "descriptionKey": "memo"}
    assert len(run([{"k": 1}], [{"k": 1}], **props).matched) == 1  # missing on both: not a constraint
    assert run([{"k": 1, "memo": "rent"}], [{"k": 1}], **props).matched == []


# --------------------------------------------------------------------------- exact keys


def test_composite_keys_all_must_match() -> None:
    left = [{"vendor_id": "V1", "invoice_number": "A-1"}, {"vendor_id": "V2", "invoice_number": "A-1"}]
    right = [{"vendor_id": "V2", "invoice_number": "A-1"}, {"vendor_id": "V1", "invoice_number": "A-2"}]
    result = run(left, right, matchOn=["vendor_id", "invoice_number"])
    assert result.matched == [{"a": left[1], "b": right[0]}]
    assert result.unmatched_left == [left[0]] and result.unmatched_right == [right[1]]


def test_key_normalisation() -> None:
    left = [{"id": 10}, {"id": " INV-1 "}, {"id": True}, {"id": {"x": 1, "y": [1, 2]}}, {"id": "inv-2"}, {"id": "7"}]
    right = [{"id": "INV-2"}, {"id": 7}, {"id": {"y": [1, 2], "x": 1}}, {"id": 1}, {"id": "INV-1"}, {"id": 10.0}]
    result = run(left, right, matchOn=["id"])
    assert [(pair["a"]["id"], pair["b"]["id"]) for pair in result.matched] == [
        (10, 10.0),
        (" INV-1 ", "INV-1"),
        ({"x": 1, "y": [1, 2]}, {"y": [1, 2], "x": 1}),
    ]
    # case-sensitive; booleans are not numbers; numeric strings are not numbers
    assert [record["id"] for record in result.unmatched_left] == [True, "inv-2", "7"]
    assert [record["id"] for record in result.unmatched_right] == ["INV-2", 7, 1]


def test_missing_null_or_blank_key_never_matches() -> None:
    left = [{"name": "a"}, {"id": None}, {"id": "  "}, {"id": "x"}]
    right = [{"name": "a"}, {"id": None}, {"id": ""}, {"id": "x"}]
    result = run(left, right, matchOn=["id"])
    assert result.matched == [{"a": left[3], "b": right[3]}]
    assert result.unmatched_left == left[:3] and result.unmatched_right == right[:3]


def test_dotted_paths() -> None:
    left = [{"customer": {"id": "C1"}, "lines": [{"sku": "S1"}]}, {"customer.id": "C2", "lines": []}]
    right = [{"customer": {"id": "C2"}}, {"customer": {"id": "C1"}}, {"customer": "C1"}]
    result = run(left, right, matchOn=["customer.id"])
    # a literal top-level "customer.id" key is tried first, then the path
    assert [(pair["a"], pair["b"]) for pair in result.matched] == [(left[0], right[1]), (left[1], right[0])]
    assert result.unmatched_right == [right[2]]
    # numeric segments index arrays; out-of-range or non-container segments are missing
    sku = run(left, [{"lines": [{"sku": "S1"}]}], matchOn=["lines.0.sku"])
    assert [pair["a"] for pair in sku.matched] == [left[0]]
    assert run(left, [{"lines": [{"sku": "S1"}]}], matchOn=["lines.1.sku"]).matched == []


def test_duplicate_keys_on_right_each_used_once() -> None:
    left = [{"id": "A", "n": 1}, {"id": "A", "n": 2}, {"id": "A", "n": 3}]
    right = [{"id": "A", "m": 1}, {"id": "A", "m": 2}]
    result = run(left, right, matchOn=["id"])
    assert [(pair["a"]["n"], pair["b"]["m"]) for pair in result.matched] == [(1, 1), (2, 2)]
    assert result.unmatched_left == [left[2]] and result.unmatched_right == []


def test_best_candidate_smallest_amount_difference() -> None:
    left = [{"id": "A", "amount": 100}, {"id": "A", "amount": 100}]
    right = [{"id": "A", "amount": 104}, {"id": "A", "amount": 99.5}, {"id": "A", "amount": 101}]
    result = run(left, right, matchOn=["id"], tolerance=0.05)
    assert [pair["b"]["amount"] for pair in result.matched] == [99.5, 101]
    assert result.unmatched_right == [right[0]]


def test_tie_breaking_amount_then_date_then_earliest() -> None:
    left = [{"id": 1, "amount": 100, "date": "2026-01-10"}]
    right = [
        {"id": 1, "amount": 101, "date": "2026-01-10", "r": 0},
        {"id": 1, "amount": 99, "date": "2026-01-12", "r": 1},
        {"id": 1, "amount": 101, "date": "2026-01-09", "r": 2},
        {"id": 1, "amount": 99, "date": "2026-01-10", "r": 3},
    ]
    result = run(left, right, matchOn=["id"], tolerance=0.05, dateWindowDays=3)
    assert result.matched[0]["b"]["r"] == 0  # diff 1 and 0 days: right 0 and 3 tie -> earliest
    closest = run(left, right[1:], matchOn=["id"], tolerance=0.05, dateWindowDays=3)
    assert closest.matched[0]["b"]["r"] == 3


def test_greedy_in_left_order() -> None:
    """Greedy, not globally optimal: the first left record takes its best candidate even if a later one needed it."""
    left = [{"id": 1, "amount": 100}, {"id": 1, "amount": 103}]
    right = [{"id": 1, "amount": 102}, {"id": 1, "amount": 97}]
    result = run(left, right, matchOn=["id"], tolerance=0.03)
    assert [(pair["a"]["amount"], pair["b"]["amount"]) for pair in result.matched] == [(100, 102)]
    assert result.unmatched_left == [left[1]] and result.unmatched_right == [right[1]]


# --------------------------------------------------------------------------- amounts


def test_numeric_string_amounts() -> None:
    left = [
        {"id": 1, "amount": "10000.00"},
        {"id": 2, "amount": " 4,500.00 "},
        {"id": 3, "amount": "1e3"},
        {"id": 4, "amount": "12abc"},
        {"id": 5, "amount": "1,5"},
    ]
    right = [
        {"id": 1, "amount": 10000},
        {"id": 2, "amount": "4480"},
        {"id": 3, "amount": 1000.0},
        {"id": 4, "amount": 12},
        {"id": 5, "amount": 1.5},
    ]
    result = run(left, right, matchOn=["id"], tolerance=0.05)
    assert [pair["a"]["id"] for pair in result.matched] == [1, 2, 3]


def test_missing_or_invalid_amounts() -> None:
    props: dict[str, Any] = {"matchOn": ["id"], "tolerance": 0.05}
    assert len(run([{"id": 1}], [{"id": 1}], **props).matched) == 1  # missing on both: not a constraint
    assert run([{"id": 1, "amount": 5}], [{"id": 1}], **props).matched == []
    assert run([{"id": 1}], [{"id": 1, "amount": None}, {"id": 1, "amount": 3}], **props).matched[0]["b"] == {
        "id": 1,
        "amount": None,
    }
    assert run([{"id": 1, "amount": True}], [{"id": 1, "amount": 1}], **props).matched == []
    assert run([{"id": 1, "amount": [1]}], [{"id": 1, "amount": 1}], **props).matched == []
    assert run([{"id": 1, "amount": "1e999999"}], [{"id": 1, "amount": 1}], **props).matched == []
    assert len(run([{"id": 1, "amount": -100}], [{"id": 1, "amount": "-102"}], **props).matched) == 1


# --------------------------------------------------------------------------- T8 chained matchers on pairs (§22 item 13)


def test_t8_chained_matchers_on_pairs() -> None:
    claims = [
        {"claim_id": "C-1", "policy_number": "P-1", "member_id": "M-1", "procedure_code": "99213",
         "service_date": "2026-03-01", "amount": 150.0},
        {"claim_id": "C-2", "policy_number": "P-2", "member_id": "M-2", "procedure_code": "99214",
         "service_date": "2026-03-02", "amount": 200.0},
        {"claim_id": "C-3", "policy_number": "P-9", "member_id": "M-3", "procedure_code": "99215",
         "service_date": "2026-03-03", "amount": 300.0},
        {"claim_id": "C-4", "policy_number": "P-1", "member_id": "M-1", "procedure_code": "80053",
         "service_date": "2026-03-04", "amount": 80.0},
    ]  # fmt: skip
    policies = [
        {"policy_number": "P-1", "member_id": "M-1", "plan": "gold"},
        {"policy_number": "P-2", "member_id": "M-2", "plan": "silver"},
        {"policy_number": "P-3", "member_id": "M-4", "plan": "bronze"},
    ]
    recent_claims = [
        {"claim_id": "R-1", "member_id": "M-1", "procedure_code": "99213", "service_date": "2026-03-01",
         "amount": 150.0},
        {"claim_id": "R-2", "member_id": "M-2", "procedure_code": "99214", "service_date": "2026-03-02",
         "amount": 210.0},
    ]  # fmt: skip
    first_props: dict[str, Any] = {
        "left": claims,
        "right": policies,
        "matchOn": ["policy_number", "member_id"],
        "dateWindowDays": 0,
        "outputMatched": "claims_with_policy",
        "outputUnmatchedLeft": "no_policy_claims",
        "outputUnmatchedRight": "unused_policies",
    }
    first = match(claims, policies, config_from_properties(first_props))
    assert output_keys(first_props) == ("claims_with_policy", "no_policy_claims", "unused_policies")
    # one-to-one: C-4 shares C-1's policy, but P-1 is already used, so C-4 lands in no_policy_claims
    assert [(pair["a"]["claim_id"], pair["b"]["plan"]) for pair in first.matched] == [
        ("C-1", "gold"),
        ("C-2", "silver"),
    ]
    assert ids(first.unmatched_left, "claim_id") == ["C-3", "C-4"]
    assert first.unmatched_right == [policies[2]]

    second_props: dict[str, Any] = {
        "left": first.matched,
        "right": recent_claims,
        "matchOn": ["member_id", "procedure_code", "service_date"],
        "tolerance": 0,
        "dateWindowDays": 1,
        "outputMatched": "potential_duplicates",
        "outputUnmatchedLeft": "unique_claims",
        "outputUnmatchedRight": "no_dup_match",
    }
    second = match(first.matched, recent_claims, config_from_properties(second_props))
    # member_id etc. are looked up on the pair's `a` (the claim); amount 150 == 150 exactly, 200 != 210
    assert [(pair["a"]["a"]["claim_id"], pair["b"]["claim_id"]) for pair in second.matched] == [("C-1", "R-1")]
    # unmatched-left items are the original pairs: {{claim.a.claim_id}} / {{claim.b.policy_number}} work
    assert second.unmatched_left == [first.matched[1]]
    claim = second.unmatched_left[0]
    assert (claim["a"]["claim_id"], claim["b"]["policy_number"]) == ("C-2", "P-2")
    assert second.unmatched_right == [recent_claims[1]]


def test_pair_lookup_falls_back_to_a_then_b_and_explicit_paths() -> None:
    pair = {"a": {"id": "L1", "shared": "from-a"}, "b": {"id": "R1", "shared": "from-b", "plan": "gold"}}
    right = [{"id": "L1", "shared": "from-a", "plan": "gold", "b.id": "R1"}]
    assert len(run([pair], right, matchOn=["id"]).matched) == 1
    assert len(run([pair], right, matchOn=["shared"]).matched) == 1  # `a` wins over `b`
    assert len(run([pair], right, matchOn=["plan"]).matched) == 1  # only on `b`
    assert len(run([pair], [{"b.id": "R1"}], matchOn=["b.id"]).matched) == 1  # explicit side via dotted path
    # nested pairs (a matcher chained on a chain) still reach the innermost `a`
    nested = {"a": pair, "b": {"x": 1}}
    assert len(run([nested], right, matchOn=["id"]).matched) == 1
    deep: dict[str, Any] = {"id": "L1"}
    for _ in range(5_000):
        deep = {"a": deep, "b": {}}
    assert run([deep], right, matchOn=["id"]).matched == []  # bounded fallback depth, no RecursionError


# --------------------------------------------------------------------------- properties and errors


def test_config_from_properties_full() -> None:
    props = {
        "left": "@input.invoices",
        "right": "@input.payments",
        "matchOn": ["invoice_number", "vendor_id"],
        "tolerance": 0.02,
        "dateWindowDays": 5,
        "fuzzyThreshold": 85,
        "descriptionKey": "description",
        "rules": [],
    }  # §7.4 invoice_payment_matcher
    assert config_from_properties(props) == MatcherConfig(
        match_on=("invoice_number", "vendor_id"),
        tolerance=0.02,
        date_window_days=5,
        fuzzy_threshold=85.0,
        description_key="description",
    )
    nulls = config_from_properties({"matchOn": ["id"], "tolerance": None, "dateWindowDays": None, "dateKey": None})
    assert nulls == MatcherConfig(match_on=("id",))
    assert config_from_properties({"matchOn": ["id"], "dateWindowDays": 2.0}).date_window_days == 2


def test_output_keys_defaults() -> None:
    assert output_keys({"matchOn": ["id"]}) == ("matched", "unmatchedLeft", "unmatchedRight")
    assert output_keys({"outputMatched": "m", "outputUnmatchedLeft": None}) == ("m", "unmatchedLeft", "unmatchedRight")
    with pytest.raises(MatcherError) as info:
        output_keys({"outputUnmatchedRight": 3})
    assert info.value.path == "outputUnmatchedRight"


@pytest.mark.parametrize(
    ("properties", "path"),
    [
        ({}, "matchOn"),
        ({"matchOn": []}, "matchOn"),
        ({"matchOn": "invoice_id"}, "matchOn"),
        ({"matchOn": ["id", 3]}, "matchOn[1]"),
        ({"matchOn": ["id", " "]}, "matchOn[1]"),
        ({"matchOn": ["id"], "tolerance": "0.05"}, "tolerance"),
        ({"matchOn": ["id"], "tolerance": -0.01}, "tolerance"),
        ({"matchOn": ["id"], "tolerance": True}, "tolerance"),
        ({"matchOn": ["id"], "tolerance": float("nan")}, "tolerance"),
        ({"matchOn": ["id"], "dateWindowDays": 1.5}, "dateWindowDays"),
        ({"matchOn": ["id"], "dateWindowDays": -1}, "dateWindowDays"),
        ({"matchOn": ["id"], "fuzzyThreshold": 101}, "fuzzyThreshold"),
        ({"matchOn": ["id"], "fuzzyThreshold": "85"}, "fuzzyThreshold"),
        ({"matchOn": ["id"], "descriptionKey": ""}, "descriptionKey"),
        ({"matchOn": ["id"], "amountKey": 5}, "amountKey"),
        ({"matchOn": ["id"], "dateKey": []}, "dateKey"),
    ],
)
def test_config_errors_name_the_property(properties: dict[str, Any], path: str) -> None:
    with pytest.raises(MatcherError) as info:
        config_from_properties(properties)
    assert info.value.path == path
    assert path.split("[")[0] in info.value.message
    assert str(info.value).startswith(f"{path}: ")


@pytest.mark.parametrize(
    ("left", "right", "path", "message"),
    [
        ("@input.invoices", [], "left", "left must be a list of objects, got a string"),
        (None, [], "left", "left must be a list of objects, got null"),
        ({"id": 1}, [], "left", "left must be a list of objects, got an object"),
        ([], 42, "right", "right must be a list of objects, got a number"),
        ([{"id": 1}, "x"], [], "left[1]", "left must be a list of objects, item 1 is a string"),
        ([], [{"id": 1}, None], "right[1]", "right must be a list of objects, item 1 is null"),
        ([[1]], [], "left[0]", "left must be a list of objects, item 0 is an array"),
    ],
)
def test_wrong_input_types(left: Any, right: Any, path: str, message: str) -> None:
    with pytest.raises(MatcherError) as info:
        match(left, right, MatcherConfig(match_on=("id",)))
    assert (info.value.path, info.value.message) == (path, message)
    assert isinstance(info.value, ValueError)


def test_empty_inputs_and_mappings() -> None:
    assert match([], [], MatcherConfig(match_on=("id",))) == MatchResult([], [], [])
    left = [MappingProxyType({"id": 1})]
    result = match(left, ({"id": 1},), MatcherConfig(match_on=("id",)))
    assert result.matched == [{"a": {"id": 1}, "b": {"id": 1}}] and type(result.matched[0]["a"]) is dict


def test_max_records() -> None:
    config = MatcherConfig(match_on=("id",))
    records = [{"id": index} for index in range(11)]
    assert len(match(records[:10], records[:10], config, max_records=10).matched) == 10
    with pytest.raises(MatcherError) as info:
        match(records, [], config, max_records=10)
    assert info.value.path == "left" and "at most 10" in info.value.message
    with pytest.raises(MatcherError) as info:
        match([], records, config, max_records=10)
    assert info.value.path == "right"


def test_comparison_budget_for_shared_keys() -> None:
    config = MatcherConfig(match_on=("id",), tolerance=0)
    left = [{"id": 1, "amount": index} for index in range(100)]
    right = [{"id": 1, "amount": -index - 1} for index in range(100)]  # nothing passes: every left scans all rights
    with pytest.raises(MatcherError) as info:
        match(left, right, config, max_comparisons=1_000)
    assert info.value.path == "matchOn" and "too many" in info.value.message
    # exact hits stop the scan early, so identical data stays cheap
    same = [{"id": 1, "amount": 5} for _ in range(1_000)]
    assert len(match(same, same, config, max_comparisons=5_000).matched) == 1_000


def test_fuzzy_comparisons_weigh_more() -> None:
    config = MatcherConfig(match_on=("id",), fuzzy_threshold=90, description_key="d")
    left = [{"id": 1, "d": f"alpha {index}"} for index in range(3)]
    right = [{"id": 1, "d": f"omega zulu {index}"} for index in range(4)]
    assert match(left, right, config, max_comparisons=8 * 12).matched == []
    with pytest.raises(MatcherError):
        match(left, right, config, max_comparisons=8 * 12 - 1)


def test_large_inputs_complete() -> None:
    n = 50_000
    left = [{"invoice_id": f"INV-{index:06d}", "amount": index + 100, "date": "2026-01-15"} for index in range(n)]
    right = [
        {"invoice_id": f"INV-{index:06d}", "amount": str(index + 101), "date": "2026-01-16"}
        for index in reversed(range(1, n + 1))
    ]
    result = run(left, right, matchOn=["invoice_id"], tolerance=0.05, dateWindowDays=1)
    assert len(result.matched) == n - 1
    assert len(result.unmatched_left) == 1 and len(result.unmatched_right) == 1
    plain = match(left, right, MatcherConfig(match_on=("invoice_id",)))
    assert len(plain.matched) == n - 1
