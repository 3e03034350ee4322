"""Tests for server.domain.evaluate — references, templates, conditions and org-config secrets at run time."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from server.domain.evaluate import (
    MAX_MATCH_TEXT,
    MISSING,
    ORGCONFIG_REFERENCE,
    EvaluationError,
    evaluate_condition,
    lookup,
    new_context,
    redact,
    resolve,
    secret_keys,
    stringify,
    substitute_secrets,
)


def make_context() -> dict[str, Any]:
    context = new_context(
        {
            "order_total": 12500,
            "amount": 5000,
            "amount_text": "5000.00",
            "small_text": " 12 ",
            "status": "active",
            "name": "Acme",
            "flag": True,
            "nothing": None,
            "email": "ops@acme.com",
            "tags": ["urgent", "vip"],
            "allowed": ["active", "pending"],
            "invoices": [{"invoice_id": "INV-1", "amount": 100}, {"invoice_id": "INV-2", "amount": 250.5}],
            "customer": {"name": "Jane", "address": {"city": "Oslo"}},
            "by_index": {"0": "zero-key"},
            "box": {"length": 99, "x": 1},
            "zip": 90210,
            "pattern": "^INV-[0-9]+$",
            "bad_pattern": "(unclosed",
        },
        run_id="run_123",
        now="2025-01-15T10:30:00Z",
    )
    context["matched"] = [{"invoice_id": "INV-1", "left": {"amount": 100}}]
    context["empty"] = []
    context["__approved"] = True
    context["__comment"] = "Looks good"
    context["customer"] = {"name": "Loop Customer", "email": "c@example.com"}
    return context


CONTEXT = make_context()


# --------------------------------------------------------------------------- new_context / lookup


def test_new_context_shape() -> None:
    assert new_context({"a": 1}, run_id="r1", now="2025-01-01T00:00:00Z") == {
        "input": {"a": 1},
        "__run_id": "r1",
        "now": "2025-01-01T00:00:00Z",
    }


@pytest.mark.parametrize(
    ("segments", "expected"),
    [
        (["input", "status"], "active"),
        (["input", "invoices", 1, "invoice_id"], "INV-2"),
        (["input", "invoices", "1", "amount"], 250.5),  # digit strings index lists too
        (["input", "invoices", "length"], 2),
        (["input", "name", "length"], 4),
        (["input", "customer", "length"], 2),  # objects: number of keys
        (["input", "box", "length"], 99),  # an object's own "length" key wins
        (["input", "by_index", 0], "zero-key"),  # int segment on an object reads the key "0"
        (["input", "nothing"], None),
        (["empty", "length"], 0),
        (["__run_id"], "run_123"),
        (["now"], "2025-01-15T10:30:00Z"),
        (["__approved"], True),
        ([], CONTEXT),
    ],
)
def test_lookup_finds(segments: list[str | int], expected: Any) -> None:
    assert lookup(CONTEXT, segments) == expected


@pytest.mark.parametrize(
    "segments",
    [
        ["nope"],
        ["input", "nope"],
        ["input", "invoices", 2],
        ["input", "invoices", -1],  # negative indexes are not allowed
        ["input", "invoices", "-1"],
        ["input", "invoices", "x"],
        ["input", "status", 0],  # strings are not indexable
        ["input", "status", "x"],
        ["input", "amount", "length"],  # numbers have no length
        ["input", "nothing", "x"],
        ["input", "nothing", "length"],
        ["input", "invoices", True],
        ["input", "invoices", "9" * 40],
    ],
)
def test_lookup_missing(segments: list[Any]) -> None:
    assert lookup(CONTEXT, segments) is MISSING


def test_missing_is_a_falsy_singleton_distinct_from_none() -> None:
    assert MISSING is not None
    assert not MISSING
    assert copy.deepcopy(MISSING) is MISSING
    assert repr(MISSING) == "MISSING"


# --------------------------------------------------------------------------- resolve: references


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("@input.amount", 5000),
        ("@input.customer", {"name": "Jane", "address": {"city": "Oslo"}}),
        ("@matched.0.invoice_id", "INV-1"),
        ("@input.invoices.1.amount", 250.5),
        ("@input.invoices.length", 2),
        ("@matched.length", 1),
        ("@input.missing", None),
        ("@input.nothing", None),
        ("@__run_id", "run_123"),
        ("@now", "2025-01-15T10:30:00Z"),
        ("@__approved", True),
        ("@__comment", "Looks good"),
        ("@customer.email", "c@example.com"),  # a loop variable is just a context key
        ("ops@acme.com", "ops@acme.com"),  # not a reference
        ("@ not a reference", "@ not a reference"),  # malformed: left unchanged
        ("plain text", "plain text"),
        (42, 42),
        (None, None),
        (True, True),
    ],
)
def test_resolve_references(value: Any, expected: Any) -> None:
    assert resolve(value, CONTEXT) == expected


def test_resolve_nested_structures() -> None:
    properties = {
        "table": "reconciliation_log",
        "keys": ["run_id", "invoice_id"],
        "values": ["@__run_id", "@matched.0.invoice_id"],
        "fields": {
            "amount": "@input.amount",
            "processed_at": "@now",
            "nested": [{"city": "@input.customer.address.city"}],
        },
        "count": "@input.invoices.length",
        "missing": "@input.nope",
    }
    assert resolve(properties, CONTEXT) == {
        "table": "reconciliation_log",
        "keys": ["run_id", "invoice_id"],
        "values": ["run_123", "INV-1"],
        "fields": {"amount": 5000, "processed_at": "2025-01-15T10:30:00Z", "nested": [{"city": "Oslo"}]},
        "count": 2,
        "missing": None,
    }


def test_resolve_reference_returns_the_raw_value_of_any_type() -> None:
    assert resolve({"items": "@input.invoices"}, CONTEXT)["items"] == CONTEXT["input"]["invoices"]
    assert resolve("@input.flag", CONTEXT) is True


# --------------------------------------------------------------------------- resolve: templates


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("High-value: ${{input.amount}}", "High-value: $5000"),
        ("Please review this expense for ${{input.amount}}", "Please review this expense for $5000"),
        ("Monthly Statement for {{customer.name}}", "Monthly Statement for Loop Customer"),
        ("Onboard {{ input.name }} ({{input.zip}})", "Onboard Acme (90210)"),
        ("a{{input.invoices.1.amount}}b", "a250.5b"),
        ("{{input.flag}}/{{__approved}}", "true/true"),
        ("[{{input.nothing}}][{{input.missing}}]", "[][]"),
        ("{{input.tags}}", '["urgent","vip"]'),
        ("obj={{input.customer}}", 'obj={"name":"Jane","address":{"city":"Oslo"}}'),
        ("n={{input.invoices.length}}", "n=2"),
        ("run {{__run_id}} at {{now}}", "run run_123 at 2025-01-15T10:30:00Z"),
        ("{{input.status}}", "active"),  # a lone placeholder is still text
        ('JSON sample: {"a": {"b": 1}}', 'JSON sample: {"a": {"b": 1}}'),  # stray }} is literal
        ("unclosed {{input.amount", "unclosed {{input.amount"),  # malformed: left unchanged
    ],
)
def test_resolve_templates(template: str, expected: str) -> None:
    assert resolve(template, CONTEXT) == expected


def test_templates_look_in_scopes_first_then_context() -> None:
    properties = {"customer_id": "C-42", "input": {"name": "shadowed"}}
    url = "https://api.crm.com/customers/{{customer_id}}?name={{input.name}}&run={{__run_id}}"
    assert resolve(url, CONTEXT, scopes=[properties]) == "https://api.crm.com/customers/C-42?name=shadowed&run=run_123"
    first, second = {"x": "first"}, {"x": "second", "y": "second-y"}
    assert resolve("{{x}}-{{y}}-{{z}}", CONTEXT, scopes=[first, second]) == "first-second-y-"
    # an explicit null in a scope wins (renders empty), it is not "missing"
    assert resolve("[{{input.status}}]", CONTEXT, scopes=[{"input": {"status": None}}]) == "[]"


def test_templates_are_not_applied_to_resolved_values() -> None:
    context = {"input": {"text": "{{secret}}", "ref": "@secret"}, "secret": "s3cr3t"}
    assert resolve({"a": "@input.text", "b": "@input.ref"}, context) == {"a": "{{secret}}", "b": "@secret"}
    assert resolve("say {{input.text}}", context) == "say {{secret}}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, ""), (MISSING, ""), (True, "true"), (False, "false"), (7, "7"), (10**20, str(10**20)), (1.5, "1.5")],
)
def test_stringify(value: Any, expected: str) -> None:
    assert stringify(value) == expected


def test_resolve_never_mutates_its_input_and_builds_new_containers() -> None:
    properties = {"a": ["@input.amount", {"b": "{{input.name}}"}], "c": ("@input.status",)}
    before = copy.deepcopy(properties)
    context_before = copy.deepcopy(CONTEXT)
    result = resolve(properties, CONTEXT)
    assert properties == before
    assert context_before == CONTEXT
    assert result == {"a": [5000, {"b": "Acme"}], "c": ["active"]}
    assert result["a"] is not properties["a"]


def test_resolve_deeply_nested_values_without_recursion() -> None:
    deep: Any = "@input.amount"
    for _ in range(5000):
        deep = [deep]
    result = resolve(deep, CONTEXT)
    for _ in range(5000):
        result = result[0]
    assert result == 5000


# --------------------------------------------------------------------------- conditions: spec examples


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"greaterThan": [{"length": "@matched"}, 0]}, True),
        ({"greaterThan": [{"length": "@empty"}, 0]}, False),
        ({"greaterThan": ["@input.order_total", 10000]}, True),
        ({"greaterThan": ["@input.order_total", 20000]}, False),
        ({"greaterThan": ["@input.amount", 5000]}, False),
        ({"equal": ["@input.status", "active"]}, True),
        ({"equal": ["@input.status", "inactive"]}, False),
        ({"hasKey": "input.customer.address.city"}, True),
        ({"hasKey": "@input.customer.address.city"}, True),
        ({"hasKey": "input.customer.phone"}, False),
        ({"hasKey": "input.nothing"}, True),  # the key exists, its value is null
        ({"in": ["@input.status", "@input.allowed"]}, True),
        ({"in": ["closed", "@input.allowed"]}, False),
        ({"in": ["vip", ["gold", "vip"]]}, True),
        ({"in": ["@input.status", ["@input.name", "active"]]}, True),  # references inside a literal array
        ({"in": ["x", "@input.status"]}, False),  # not an array
        ({"in": ["x", "@input.missing"]}, False),
        ({"matches": ["@input.email", "@acme\\.com$"]}, True),
        ({"matches": ["@input.email", "^admin@"]}, False),
        ({"matches": ["@matched.0.invoice_id", "@input.pattern"]}, True),  # regex from a reference
        ({"matches": ["@input.zip", "^902"]}, True),  # numbers are matched as text
        ({"matches": ["@input.flag", "^true$"]}, True),
        ({"matches": ["@input.missing", ".*"]}, False),
        ({"matches": ["@input.nothing", ".*"]}, False),
        ({"matches": ["@input.email", "@input.missing"]}, False),
    ],
)
def test_conditions(condition: dict[str, Any], expected: bool) -> None:
    assert evaluate_condition(condition, CONTEXT) is expected


# --------------------------------------------------------------------------- conditions: comparisons


@pytest.mark.parametrize(
    ("operator", "left", "right", "expected"),
    [
        ("equal", 1, 1.0, True),
        ("equal", "1", 1, False),
        ("equal", True, 1, False),
        ("equal", 0, False, False),
        ("equal", None, None, True),
        ("equal", "@input.missing", None, True),  # missing counts as null
        ("equal", "@input.nothing", None, True),
        ("equal", "@input.tags", ["urgent", "vip"], True),
        ("equal", "@input.tags", ["vip", "urgent"], False),
        ("equal", [1, [2.0]], [1.0, [2]], True),
        ("equal", [1], ["1"], False),
        ("equal", "@input.invoices.0", "@matched.0", False),
        ("equal", "@__approved", True, True),
        ("equal", "@input.amount_text", 5000, False),  # equality is strict: no string coercion
        ("notEqual", "@input.status", "active", False),
        ("notEqual", "@input.status", "closed", True),
        ("notEqual", "1", 1, True),
        ("notEqual", "@input.missing", "x", True),
        ("greaterThan", 3, 2, True),
        ("greaterThan", 2, 2, False),
        ("greaterOrEqual", 2, 2.0, True),
        ("greaterOrEqual", 1, 2, False),
        ("lessThan", 1.5, 2, True),
        ("lessThan", 2, 1.5, False),
        ("lessOrEqual", 2, 2, True),
        ("lessOrEqual", 3, 2, False),
        ("greaterThan", 10**30, 1e29, True),  # big ints compare exactly against floats
        ("greaterThan", "@input.invoices.length", 1, True),
        ("lessThan", {"length": "@input.name"}, 5, True),
    ],
)
def test_comparisons(operator: str, left: Any, right: Any, expected: bool) -> None:
    assert evaluate_condition({operator: [left, right]}, CONTEXT) is expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"greaterThan": ["@input.amount_text", 4999.99]}, True),  # "5000.00" is coerced
        ({"greaterOrEqual": ["@input.amount_text", 5000]}, True),
        ({"lessThan": ["@input.amount_text", "5000.01"]}, True),
        ({"greaterThan": ["@input.small_text", 11]}, True),  # blanks around the number are allowed
        ({"lessOrEqual": ["-3", -3]}, True),
        ({"greaterThan": ["1e3", 999]}, True),
        ({"greaterThan": [".5", 0]}, True),
    ],
)
def test_numeric_strings_are_coerced_for_orderings(condition: dict[str, Any], expected: bool) -> None:
    assert evaluate_condition(condition, CONTEXT) is expected


@pytest.mark.parametrize("operator", ["greaterThan", "lessThan", "greaterOrEqual", "lessOrEqual"])
@pytest.mark.parametrize(
    "operand",
    [
        "@input.missing",
        "@input.nothing",
        "@input.status",  # non-numeric string
        "@input.flag",  # booleans are not numbers
        "@input.tags",
        "@input.customer",
        "1,000",
        "$5000",
        "1e999",  # overflows to infinity
        "nan",
        "5" * 200,  # absurdly long numeric string
        "",
    ],
)
def test_orderings_with_non_numbers_are_false_never_errors(operator: str, operand: Any) -> None:
    assert evaluate_condition({operator: [operand, 1]}, CONTEXT) is False
    assert evaluate_condition({operator: [1, operand]}, CONTEXT) is False


@pytest.mark.parametrize(
    ("operand", "expected"),
    [
        ("@input.tags", 2),
        ("@input.name", 4),
        ("@input.customer", 2),
        ("@input.missing", 0),
        ("@input.nothing", 0),
        ("@input.amount", 0),
        (["a", "b", "c"], 3),
        ("abc", 3),
        ({"length": "@input.tags"}, 0),  # length of a number
    ],
)
def test_length_operand(operand: Any, expected: int) -> None:
    assert evaluate_condition({"equal": [{"length": operand}, expected]}, CONTEXT) is True


# --------------------------------------------------------------------------- conditions: logic


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"and": [{"equal": ["@input.status", "active"]}, {"greaterThan": ["@input.amount", 100]}]}, True),
        ({"and": [{"equal": ["@input.status", "active"]}, {"greaterThan": ["@input.amount", 10**6]}]}, False),
        ({"or": [{"equal": ["@input.status", "closed"]}, {"in": ["vip", "@input.tags"]}]}, True),
        ({"or": [{"equal": ["@input.status", "closed"]}, {"hasKey": "input.nope"}]}, False),
        ({"not": {"equal": ["@input.status", "closed"]}}, True),
        ({"not": {"not": {"hasKey": "input.status"}}}, True),
        (
            {
                "or": [
                    {"and": [{"hasKey": "input.nope"}, {"equal": [1, 1]}]},
                    {"not": {"or": [{"lessThan": ["@input.amount", 0]}, {"matches": ["@input.name", "^Z"]}]}},
                ]
            },
            True,
        ),
        ({"and": [{"equal": ["@__approved", True]}, {"matches": ["@__comment", "(?i)good"]}]}, True),
    ],
)
def test_logic(condition: dict[str, Any], expected: bool) -> None:
    assert evaluate_condition(condition, CONTEXT) is expected


def test_and_or_short_circuit() -> None:
    broken = {"matches": ["x", "(unclosed"]}  # would raise if evaluated
    assert evaluate_condition({"and": [{"equal": [1, 2]}, broken]}, CONTEXT) is False
    assert evaluate_condition({"or": [{"equal": [1, 1]}, broken]}, CONTEXT) is True
    with pytest.raises(EvaluationError):
        evaluate_condition({"and": [{"equal": [1, 1]}, broken]}, CONTEXT)


# --------------------------------------------------------------------------- conditions: errors


def test_matches_invalid_regex_names_the_path() -> None:
    with pytest.raises(EvaluationError) as info:
        evaluate_condition(
            {"or": [{"equal": [1, 2]}, {"matches": ["@input.email", "@input.bad_pattern"]}]},
            CONTEXT,
            "definition.actions[1].filter.condition",
        )
    assert info.value.path == "definition.actions[1].filter.condition.or[1].matches[1]"
    assert "invalid regular expression" in info.value.message
    assert str(info.value).startswith("definition.actions[1].filter.condition.or[1].matches[1]: ")


@pytest.mark.parametrize(
    ("condition", "where"),
    [
        ({"matches": ["x", "("]}, "condition.matches[1]"),
        ({"matches": ["x", 5]}, "condition.matches[1]"),
        ({"matches": ["x", "a" * 1001]}, "condition.matches[1]"),
        ({"matches": ["@input.name", "@input.zip"]}, "condition.matches[1]"),  # a non-string regex
        ({"bogus": [1, 2]}, "condition"),
        ({"equal": [1]}, "condition.equal"),
        ({"equal": [1, 2], "notEqual": [1, 2]}, "condition"),
        ({"hasKey": 5}, "condition.hasKey"),
        ({"hasKey": "input..x"}, "condition.hasKey"),
        ({"and": {"equal": [1, 1]}}, "condition.and"),
        ({"equal": [{"size": "@x"}, 1]}, "condition.equal[0]"),
    ],
)
def test_malformed_conditions_raise(condition: dict[str, Any], where: str) -> None:
    with pytest.raises(EvaluationError) as info:
        evaluate_condition(condition, CONTEXT)
    assert info.value.path == where


def test_matches_searches_a_bounded_prefix() -> None:
    context = {"text": "a" * MAX_MATCH_TEXT + "NEEDLE"}
    assert evaluate_condition({"matches": ["@text", "NEEDLE"]}, context) is False
    assert evaluate_condition({"matches": ["@text", "^a+$"]}, context) is True


def test_conditions_do_not_mutate_the_context() -> None:
    before = copy.deepcopy(CONTEXT)
    condition = {
        "and": [{"in": ["@input.status", ["@input.name", "active"]]}, {"greaterThan": [{"length": "@matched"}, 0]}]
    }
    condition_before = copy.deepcopy(condition)
    assert evaluate_condition(condition, CONTEXT) is True
    assert before == CONTEXT
    assert condition == condition_before


# --------------------------------------------------------------------------- org-config secrets


SECRETS = {"api:salesforce_token": "sf-TOKEN-123", "db:warehouse_pg": "postgres://u:p@h/db", "api:a.b-c_d": "x\\1y"}


def test_orgconfig_reference_pattern() -> None:
    match = ORGCONFIG_REFERENCE.search("Bearer orgconfig:api:salesforce_token")
    assert match is not None
    assert (match[1], match[2]) == ("api", "salesforce_token")
    assert ORGCONFIG_REFERENCE.search("orgconfig::x") is None
    assert ORGCONFIG_REFERENCE.search("orgconfig:api:") is None


def test_secret_keys() -> None:
    action = {
        "url": "https://api.salesforce.com/query",
        "headers": {"Authorization": "Bearer orgconfig:api:salesforce_token", "X-Other": "orgconfig:api:a.b-c_d"},
        "datasource": "orgconfig:db:warehouse_pg",
        "list": ["a orgconfig:oauth:gmail_client_id and orgconfig:api:salesforce_token", 5, None],
        "orgconfig:api:in_a_key": "keys are not scanned",
    }
    assert secret_keys(action) == {"api:salesforce_token", "api:a.b-c_d", "db:warehouse_pg", "oauth:gmail_client_id"}
    assert secret_keys("no secrets here") == set()
    assert secret_keys(42) == set()


def test_substitute_secrets() -> None:
    action = {
        "headers": {"Authorization": "Bearer orgconfig:api:salesforce_token"},
        "datasource": "orgconfig:db:warehouse_pg",
        "both": ["orgconfig:api:salesforce_token/orgconfig:api:a.b-c_d", 3],
        "plain": "unchanged",
    }
    before = copy.deepcopy(action)
    assert substitute_secrets(action, SECRETS) == {
        "headers": {"Authorization": "Bearer sf-TOKEN-123"},
        "datasource": "postgres://u:p@h/db",
        "both": ["sf-TOKEN-123/x\\1y", 3],  # backslashes in values are not regex escapes
        "plain": "unchanged",
    }
    assert action == before


def test_substituted_secret_text_is_not_substituted_again() -> None:
    assert substitute_secrets("orgconfig:api:one", {"api:one": "orgconfig:api:two"}) == "orgconfig:api:two"


def test_substitute_unknown_secret_raises() -> None:
    with pytest.raises(EvaluationError) as info:
        substitute_secrets({"h": "Bearer orgconfig:api:x"}, SECRETS, path="action.headers")
    assert info.value.message == "org config key 'api:x' is not set; add it with POST /org-config"
    assert info.value.path == "action.headers"


def test_redact() -> None:
    value = {
        "headers": {"Authorization": "Bearer sf-TOKEN-123"},
        "echo": ["sf-TOKEN-123sf-TOKEN-123", "dsn postgres://u:p@h/db!"],
        "short": "abc is fine",
        "number": 12,
        "sf-TOKEN-123": "a key",
    }
    before = copy.deepcopy(value)
    assert redact(value, [*SECRETS.values(), "abc", ""]) == {
        "headers": {"Authorization": "Bearer ****"},
        "echo": ["****", "dsn ****!"],
        "short": "abc is fine",  # secrets shorter than 4 characters are not redacted
        "number": 12,
        "****": "a key",
    }
    assert value == before


def test_redact_overlapping_secrets_leaves_no_fragment() -> None:
    assert redact("xxabcdefghyy", ["abcd", "cdefgh"]) == "xx****yy"
    assert redact("aaaaaa", ["aaaa"]) == "****"
    assert redact("a.b*c", ["a.b*"]) == "****c"  # regex metacharacters are literal
    assert redact({"k": ["v"]}, []) == {"k": ["v"]}


def test_secrets_round_trip_then_redact_for_storage() -> None:
    properties = resolve({"auth": "Bearer orgconfig:api:salesforce_token", "amount": "@input.amount"}, CONTEXT)
    executed = substitute_secrets(properties, SECRETS)
    assert executed == {"auth": "Bearer sf-TOKEN-123", "amount": 5000}
    stored = redact(executed, SECRETS.values())
    assert "sf-TOKEN-123" not in json.dumps(stored)
    assert stored == {"auth": "Bearer ****", "amount": 5000}
