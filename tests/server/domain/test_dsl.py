"""Tests for server.domain.dsl — structural validation of workflow definitions."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from server.domain.custom_tables import MAX_READ_ROWS
from server.domain.dsl import (
    CONDITION_OPERATORS,
    MAX_DEPTH,
    MAX_STEPS,
    PRIMITIVES,
    DefinitionError,
    TemplateField,
    parse_path,
    parse_reference,
    split_template,
    validate_condition,
    validate_definition,
)

# --------------------------------------------------------------------------- real definitions from the spec

# T1 step 2 — "Your First Workflow" (verbatim).
T1_FIRST_WORKFLOW: dict[str, Any] = {
    "actions": [
        {
            "type": "matcher",
            "properties": {
                "left": "@input.invoices",
                "right": "@input.payments",
                "matchOn": ["invoice_id"],
                "tolerance": 0.05,
                "outputMatched": "matched",
                "outputUnmatchedLeft": "unmatched_invoices",
                "outputUnmatchedRight": "unmatched_payments",
            },
        },
        {
            "type": "update_erp_status",
            "filter": {"condition": {"greaterThan": [{"length": "@matched"}, 0]}},
            "properties": {"records": "@matched", "action": "mark_reconciled"},
        },
    ]
}

# T3 — Pattern A "Invoice Exception Investigation"; the truncated tail (result_key, then
# PbotApproval and custom-table logging per the documented diagram) is completed.
T3_INVOICE_INVESTIGATION: dict[str, Any] = {
    "actions": [
        {
            "type": "matcher",
            "properties": {
                "left": "@input.invoices",
                "right": "@input.payments",
                "matchOn": ["invoice_id"],
                "tolerance": 0.02,
                "outputMatched": "reconciled",
                "outputUnmatchedLeft": "exceptions",
            },
        },
        {
            "type": "loop",
            "filter": {"condition": {"greaterThan": [{"length": "@exceptions"}, 0]}},
            "properties": {
                "mode": "foreach",
                "items_path": "@exceptions",
                "item_variable_name": "exception",
                "actions_to_execute": [
                    {
                        "type": "loop",
                        "properties": {
                            "mode": "react",
                            "objective": (
                                "Investigate why invoice {{exception.invoice_id}} for ${{exception.amount}} "
                                "from {{exception.vendor}} has no matching payment. Check for partial "
                                "payments, alternate vendor names, or recent credits. Recommend: approve, "
                                "reject, or escalate."
                            ),
                            "tools": [
                                {"type": "action", "name": "search_payments"},
                                {"type": "action", "name": "lookup_vendor"},
                                {"type": "action", "name": "check_credits"},
                            ],
                            "max_iterations": 8,
                            "on_stuck": {"iterations": 3, "action": "escalate"},
                            "result_key": "investigation",
                        },
                    }
                ],
                "collect_results": True,
                "result_key": "investigations",
            },
        },
        {
            "type": "PbotApproval",
            "filter": {"condition": {"greaterThan": [{"length": "@exceptions"}, 0]}},
            "properties": {
                "comment": "Review {{exceptions.length}} invoice exceptions and the agent recommendations",
                "request_payload": {"exceptions": "@exceptions", "investigations": "@investigations"},
            },
        },
        {
            "type": "custom-table",
            "properties": {
                "table": "reconciliation_log",
                "operation": "write",
                "keys": ["run_id"],
                "values": ["@__run_id"],
                "fields": {
                    "matched": "@reconciled.length",
                    "approved": "@__approved",
                    "processed_at": "@now",
                },
            },
        },
    ]
}

# T4 — Quickstart "Your First Governed Workflow": matcher -> bounded agent -> approval -> custom table.
# The page gives the pipeline and data, not the JSON; this is the documented pipeline as a definition.
T4_QUICKSTART: dict[str, Any] = {
    "actions": [
        {
            "type": "matcher",
            "properties": {
                "left": "@input.invoices",
                "right": "@input.payments",
                "matchOn": ["invoice_id"],
                "tolerance": 0.02,
                "dateWindowDays": 3,
                "outputMatched": "matched",
                "outputUnmatchedLeft": "unmatched_invoices",
                "outputUnmatchedRight": "unmatched_payments",
            },
        },
        {
            "type": "loop",
            "filter": {"condition": {"greaterThan": [{"length": "@unmatched_invoices"}, 0]}},
            "properties": {
                "mode": "foreach",
                "items_path": "@unmatched_invoices",
                "item_variable_name": "invoice",
                "max_concurrency": 5,
                "failure_strategy": "continue_on_error",
                "collect_results": True,
                "result_key": "investigations",
                "actions_to_execute": [
                    {
                        "type": "loop",
                        "properties": {
                            "mode": "react",
                            "objective": "Investigate invoice {{invoice.invoice_id}} from {{invoice.vendor}}.",
                            "tools": [{"type": "action", "name": "search_payments"}, "__complete__"],
                            "max_iterations": 5,
                            "result_key": "finding",
                        },
                    }
                ],
            },
        },
        {
            "type": "PbotApproval",
            "properties": {
                "comment": "Approve the reconciliation of {{matched.length}} invoices",
                "request_payload": {"matched": "@matched", "investigations": "@investigations"},
            },
        },
        {
            "type": "custom-table",
            "properties": {
                "table": "reconciliation_log",
                "operation": "upsert",
                "keys": ["run_id"],
                "values": ["@__run_id"],
                "fields": {"status": "processed", "approved": "@__approved", "processed_at": "@now"},
            },
        },
    ]
}

T5_STEP_TYPES = {
    "enrich_indicator",
    "query_siem",
    "lookup_asset",
    "block_ip",
    "isolate_host",
    "create_ticket",
    "classify_severity",
}

# T5 — IT Incident Response (the page's JSON section was not retrievable; built from its required actions).
T5_INCIDENT_RESPONSE: dict[str, Any] = {
    "condition": {"hasKey": "input.alert"},
    "actions": [
        {
            "type": "enrich_indicator",
            "properties": {"indicator": "@input.alert.source_ip"},
            "outputKey": "enrichment",
        },
        {"type": "lookup_asset", "properties": {"hostname": "@input.alert.hostname"}, "outputKey": "asset"},
        {
            "type": "loop",
            "properties": {
                "mode": "react",
                "objective": (
                    "Triage alert {{input.alert.id}} ({{input.alert.rule}}). Enrichment: {{enrichment}}. "
                    "Asset: {{asset}}. Close benign alerts, contain clear threats, escalate ambiguous ones. "
                    'Answer as JSON: {"verdict": "...", "confidence": 0.0}'
                ),
                "tools": [{"type": "action", "name": name} for name in sorted(T5_STEP_TYPES)],
                "max_iterations": 12,
                "timeout_ms": 120000,
                "on_stuck": {
                    "iterations": 3,
                    "action": "retry_with_hint",
                    "hint": "Use __complete__ with your best answer.",
                },
                "result_key": "triage",
            },
        },
        {
            "type": "create_ticket",
            "filter": {
                "condition": {
                    "or": [
                        {"in": ["@triage.answer.verdict", ["escalate", "contain"]]},
                        {"lessThan": ["@triage.confidence", 0.8]},
                    ]
                }
            },
            "properties": {"summary": "Incident {{input.alert.id}}", "details": "@triage"},
            "onFalse": {
                "type": "custom-table",
                "properties": {
                    "table": "closed_alerts",
                    "operation": "write",
                    "fields": {"alert": "@input.alert.id"},
                },
            },
        },
    ],
}

# T6 — KYC Customer Onboarding (first step verbatim; the truncated second step completed).
T6_KYC_ONBOARDING: dict[str, Any] = {
    "actions": [
        {
            "type": "loop",
            "properties": {
                "mode": "react",
                "objective": (
                    "Onboard applicant {{input.applicant_name}} ({{input.applicant_id}}). Execute "
                    "verification sequence: 1) Run identity verification workflow, 2) Run sanctions "
                    "screening workflow, 3) Run adverse media scan workflow, 4) Synthesize results — if "
                    "all pass, approve with risk score. If any conflict (e.g., identity passes but "
                    "sanctions flags a partial name match), investigate the discrepancy. If confidence "
                    "below 0.8, pause for human compliance review with full context and reasoning. 5) "
                    "Provide final recommendation with risk level (low/medium/high)."
                ),
                "tools": [
                    {"type": "workflow", "id": "wf_identity_verification"},
                    {"type": "workflow", "id": "wf_sanctions_screening"},
                    {"type": "workflow", "id": "wf_adverse_media_scan"},
                ],
                "max_iterations": 15,
                "timeout_ms": 300000,
                "on_stuck": {"iterations": 4, "action": "escalate"},
                "result_key": "onboarding_decision",
            },
        },
        {
            "type": "loop",
            "filter": {"condition": {"equal": ["@onboarding_decision.answer.decision", "approved"]}},
            "properties": {
                "mode": "foreach",
                "items_path": "@input.accounts",
                "item_variable_name": "account",
                "actions_to_execute": [
                    {
                        "type": "provision_account",
                        "properties": {"account": "@account", "owner": "@input.applicant_id"},
                    }
                ],
            },
        },
        {
            "type": "custom-table",
            "properties": {
                "table": "onboarding_log",
                "operation": "write",
                "keys": ["applicant_id"],
                "values": ["@input.applicant_id"],
                "fields": {"decision": "@onboarding_decision.answer.decision", "run_id": "@__run_id"},
            },
        },
    ]
}

T7_STEP_TYPES = {
    "extract_contract_terms",
    "lookup_playbook",
    "assess_clause_risk",
    "draft_redline",
    "search_precedent",
    "log_contract",
}

# T7 — Contract Review & Extraction (built from the documented required actions).
T7_CONTRACT_REVIEW: dict[str, Any] = {
    "actions": [
        {
            "type": "extract_contract_terms",
            "properties": {"contract_text": "@input.contract_text"},
            "outputKey": "terms",
        },
        {
            "type": "lookup_playbook",
            "properties": {"contract_type": "@input.contract_type"},
            "outputKey": "playbook",
        },
        {
            "type": "loop",
            "properties": {
                "mode": "react",
                "objective": "Compare {{terms}} against the playbook {{playbook}} and flag risky clauses.",
                "tools": [
                    {"type": "action", "name": "assess_clause_risk"},
                    {"type": "action", "name": "draft_redline"},
                    {"type": "action", "name": "search_precedent"},
                ],
                "max_iterations": 10,
                "result_key": "review",
            },
        },
        {
            "type": "PbotApproval",
            "filter": {"condition": {"not": {"equal": ["@review.answer.risk", "low"]}}},
            "properties": {
                "comment": "Legal review of {{input.contract_name}}",
                "request_payload": {"review": "@review"},
            },
        },
        {"type": "log_contract", "properties": {"terms": "@terms", "review": "@review"}},
    ]
}

# T8 — Insurance Claims Adjudication (first three steps verbatim, the truncated tail completed).
T8_CLAIMS_ADJUDICATION: dict[str, Any] = {
    "actions": [
        {
            "type": "matcher",
            "properties": {
                "left": "@input.claims",
                "right": "@input.policies",
                "matchOn": ["policy_number", "member_id"],
                "dateWindowDays": 0,
                "outputMatched": "claims_with_policy",
                "outputUnmatchedLeft": "no_policy_claims",
                "outputUnmatchedRight": "unused_policies",
            },
        },
        {
            "type": "matcher",
            "filter": {"condition": {"greaterThan": [{"length": "@claims_with_policy"}, 0]}},
            "properties": {
                "left": "@claims_with_policy",
                "right": "@input.recent_claims",
                "matchOn": ["member_id", "procedure_code", "service_date"],
                "tolerance": 0,
                "dateWindowDays": 1,
                "outputMatched": "potential_duplicates",
                "outputUnmatchedLeft": "unique_claims",
                "outputUnmatchedRight": "no_dup_match",
            },
        },
        {
            "type": "loop",
            "filter": {"condition": {"greaterThan": [{"length": "@unique_claims"}, 0]}},
            "properties": {
                "mode": "foreach",
                "items_path": "@unique_claims",
                "item_variable_name": "claim",
                "actions_to_execute": [
                    {
                        "type": "loop",
                        "properties": {
                            "mode": "react",
                            "objective": (
                                "Adjudicate claim {{claim.a.claim_id}}. Policy: {{claim.b.policy_number}}. "
                                "Procedure: {{claim.a.procedure_code}}. Billed {{claim.a.billed_amount}}."
                            ),
                            "tools": [{"type": "action", "name": "verify_coverage"}],
                            "max_iterations": 10,
                            "on_stuck": {"iterations": 3, "action": "escalate"},
                            "result_key": "adjudication",
                        },
                    },
                    {
                        "type": "PbotApproval",
                        "filter": {"condition": {"lessThan": ["@adjudication.confidence", 0.85]}},
                        "properties": {"comment": "Adjudicate claim {{claim.a.claim_id}}"},
                    },
                    {
                        "type": "custom-table",
                        "properties": {
                            "table": "adjudication_log",
                            "operation": "write",
                            "keys": ["claim_id"],
                            "values": ["@claim.a.claim_id"],
                            "fields": {"decision": "@adjudication.answer", "run_id": "@__run_id"},
                        },
                    },
                ],
            },
        },
    ]
}

REACT_TEMPLATES: list[tuple[str, dict[str, Any], set[str], str]] = [
    (
        "T3",
        T3_INVOICE_INVESTIGATION,
        set(),
        "definition.actions[1].properties.actions_to_execute[0].properties.mode",
    ),
    ("T4", T4_QUICKSTART, set(), "definition.actions[1].properties.actions_to_execute[0].properties.mode"),
    ("T5", T5_INCIDENT_RESPONSE, T5_STEP_TYPES, "definition.actions[2].properties.mode"),
    ("T6", T6_KYC_ONBOARDING, {"provision_account"}, "definition.actions[0].properties.mode"),
    ("T7", T7_CONTRACT_REVIEW, T7_STEP_TYPES, "definition.actions[2].properties.mode"),
    (
        "T8",
        T8_CLAIMS_ADJUDICATION,
        set(),
        "definition.actions[2].properties.actions_to_execute[0].properties.mode",
    ),
]


def test_t1_first_workflow_validates() -> None:
    validate_definition(T1_FIRST_WORKFLOW, step_types={"update_erp_status"})


def test_t1_needs_the_registered_action() -> None:
    with pytest.raises(DefinitionError) as info:
        validate_definition(T1_FIRST_WORKFLOW, step_types=set())
    assert info.value.path == "definition.actions[1].type"
    assert "unknown step type 'update_erp_status'" in info.value.message


@pytest.mark.parametrize(
    ("name", "definition", "types", "mode_path"), REACT_TEMPLATES, ids=[t[0] for t in REACT_TEMPLATES]
)
def test_react_templates_validate_when_agents_are_enabled(
    name: str, definition: dict[str, Any], types: set[str], mode_path: str
) -> None:
    validate_definition(definition, step_types=types, allow_react=True)


@pytest.mark.parametrize(
    ("name", "definition", "types", "mode_path"), REACT_TEMPLATES, ids=[t[0] for t in REACT_TEMPLATES]
)
def test_react_templates_fail_without_agents(
    name: str, definition: dict[str, Any], types: set[str], mode_path: str
) -> None:
    with pytest.raises(DefinitionError) as info:
        validate_definition(definition, step_types=types)
    assert info.value.path == mode_path
    assert "loop mode 'react' (agents) is not available yet" in info.value.message


DOC_EXAMPLES: list[tuple[str, dict[str, Any], set[str]]] = [
    (
        "schedule-daily",
        {"schedule": {"every": "1d", "at": "02:00", "timezone": "America/New_York"}, "actions": []},
        set(),
    ),
    ("schedule-6h", {"schedule": {"every": "6h"}, "actions": []}, set()),
    ("schedule-30m", {"schedule": {"every": "30m"}, "actions": []}, set()),
    ("schedule-weekly", {"schedule": {"every": "7d", "at": "00:00"}, "actions": []}, set()),
    (
        "schedule-cron",
        {"schedule": {"cron": "*/15 9-17 * * 1-5", "timezone": "Europe/London"}, "actions": []},
        set(),
    ),
    ("top-condition", {"condition": {"greaterThan": ["@input.order_total", 10000]}, "actions": []}, set()),
    (
        "core-concepts-length",
        {"condition": {"greaterThan": ["@input.invoices.length", 0]}, "actions": []},
        set(),
    ),
    (
        "filter-onFalse",
        {
            "actions": [
                {
                    "type": "send_notification",
                    "filter": {"condition": {"greaterThan": ["@input.amount", 5000]}},
                    "properties": {"channel": "urgent", "message": "High-value: ${{input.amount}}"},
                    "onFalse": {
                        "type": "send_notification",
                        "properties": {"channel": "standard", "message": "Processed: ${{input.amount}}"},
                    },
                }
            ]
        },
        {"send_notification"},
    ),
    (
        "foreach-gmail",
        {
            "actions": [
                {
                    "type": "loop",
                    "properties": {
                        "mode": "foreach",
                        "items_path": "@input.customers",
                        "item_variable_name": "customer",
                        "actions_to_execute": [
                            {
                                "type": "gmail_send",
                                "properties": {
                                    "__oauth_account__": "ops@company.com",
                                    "to": "@customer.email",
                                    "subject": "Monthly Statement for {{customer.name}}",
                                    "body": "Dear {{customer.name}},\n\nPlease find your statement attached.",
                                },
                            }
                        ],
                        "max_concurrency": 10,
                        "failure_strategy": "continue_on_error",
                        "collect_results": True,
                        "result_key": "emailResults",
                    },
                }
            ]
        },
        {"gmail_send"},
    ),
    (
        "approval",
        {
            "actions": [
                {
                    "type": "PbotApproval",
                    "properties": {
                        "comment": "Please review this expense for ${{input.amount}}",
                        "request_payload": {
                            "expense_id": "@input.id",
                            "amount": "@input.amount",
                            "category": "@input.category",
                            "submitted_by": "@input.employee_name",
                        },
                    },
                }
            ]
        },
        set(),
    ),
    (
        "form",
        {
            "actions": [
                {
                    "type": "PbotForm",
                    "properties": {
                        "expected_keys": ["shipping_address", "delivery_date", "special_instructions"],
                        "ttl_seconds": 86400,
                        "reminder_intervals": [3600, 7200],
                    },
                }
            ]
        },
        set(),
    ),
    (
        "custom-table-ops",
        {
            "actions": [
                {
                    "type": "custom-table",
                    "properties": {
                        "table": "reconciliation_log",
                        "operation": "write",
                        "keys": ["run_id", "invoice_id"],
                        "values": ["@__run_id", "@input.invoice_id"],
                        "fields": {
                            "amount": "@input.amount",
                            "status": "processed",
                            "matched": True,
                            "processed_at": "@now",
                        },
                    },
                },
                {
                    "type": "custom-table",
                    "properties": {
                        "table": "reconciliation_log",
                        "operation": "read",
                        "keys": ["invoice_id"],
                        "values": ["@input.invoice_id"],
                    },
                    "outputKey": "previous_runs",
                },
                {
                    "type": "custom-table",
                    "properties": {
                        "table": "reconciliation_log",
                        "operation": "update",
                        "keys": ["run_id"],
                        "values": ["@__run_id"],
                        "fields": {"status": "approved"},
                    },
                },
            ]
        },
        set(),
    ),
    (
        "oauth-tool-and-doc-matcher",
        {
            "actions": [
                {
                    "type": "gmail_send",
                    "properties": {
                        "__oauth_account__": "ops@company.com",
                        "to": "@input.email",
                        "subject": "Update",
                    },
                },
                {
                    "type": "matcher",
                    "properties": {
                        "left": "doc:doc-123",
                        "right": [{"invoice_id": "A"}],
                        "matchOn": ["invoice_id"],
                        "fuzzyThreshold": 85,
                        "descriptionKey": "memo",
                        "rules": [],
                    },
                },
            ]
        },
        {"gmail_send"},
    ),
    (
        "lenient-bits",
        {
            "description": "free text",
            "metadata": {"owner": "@not-checked..here", "tags": ["a"]},
            "condition": None,
            "actions": [
                {
                    "type": "notify",
                    "name": "Notify",
                    "id": "step-1",
                    "description": "prompt with a JSON sample",
                    "condition": {"and": [{"hasKey": "@input.x"}, {"matches": ["@input.x", "^[A-Z]{3}-\\d+$"]}]},
                    "properties": {
                        "text": 'Reply {"a": {"b": 1}} to ops@acme.com',
                        "nested": [{"v": "@input.x.0"}],
                    },
                },
                {"type": "notify"},
                {"type": "custom-table", "properties": {"table": "t", "operation": "read"}},
            ],
        },
        {"notify"},
    ),
]


@pytest.mark.parametrize(("name", "definition", "types"), DOC_EXAMPLES, ids=[t[0] for t in DOC_EXAMPLES])
def test_documented_examples_validate(name: str, definition: dict[str, Any], types: set[str]) -> None:
    validate_definition(definition, step_types=types)


def test_step_types_may_be_a_predicate() -> None:
    validate_definition(T1_FIRST_WORKFLOW, step_types=lambda name: name.startswith("update_"))
    with pytest.raises(DefinitionError):
        validate_definition(T1_FIRST_WORKFLOW, step_types=lambda name: False)


def test_validation_does_not_mutate_the_definition() -> None:
    before = copy.deepcopy(T8_CLAIMS_ADJUDICATION)
    validate_definition(T8_CLAIMS_ADJUDICATION, step_types=set(), allow_react=True)
    assert before == T8_CLAIMS_ADJUDICATION


# --------------------------------------------------------------------------- invalid definitions


def wf(*steps: Any, **top: Any) -> dict[str, Any]:
    return {"actions": list(steps), **top}


def step(type_: str = "act", **fields: Any) -> dict[str, Any]:
    return {"type": type_, **fields}


def cond(condition: Any) -> dict[str, Any]:
    return step("act", filter={"condition": condition})


MATCHER_OK: dict[str, Any] = {"left": "@input.a", "right": "@input.b", "matchOn": ["id"]}
FOREACH_OK: dict[str, Any] = {
    "mode": "foreach",
    "items_path": "@input.items",
    "item_variable_name": "item",
    "actions_to_execute": [step()],
}
REACT_OK: dict[str, Any] = {"mode": "react", "objective": "Do it", "tools": []}


def deep_not(levels: int) -> dict[str, Any]:
    condition: dict[str, Any] = {"equal": [1, 1]}
    for _ in range(levels):
        condition = {"not": condition}
    return condition


INVALID: list[tuple[str, Any, str, str]] = [
    ("not-an-object", [], "definition", "must be an object"),
    ("unknown-top-key", wf(steps=[]), "definition.steps", "unknown definition key 'steps'"),
    ("missing-actions", {"condition": {"equal": [1, 1]}}, "definition.actions", "missing required 'actions'"),
    ("actions-not-list", {"actions": {}}, "definition.actions", "must be a list"),
    ("step-not-object", wf("act"), "definition.actions[0]", "a step must be an object"),
    ("missing-type", wf({"properties": {}}), "definition.actions[0].type", "missing step type"),
    (
        "unknown-type",
        wf(step(), step(), step("sendMail")),
        "definition.actions[2].type",
        "unknown step type 'sendMail': register it with POST /actions or use a primitive "
        "(matcher, loop, PbotApproval, PbotForm, custom-table)",
    ),
    (
        "unknown-step-key",
        wf(step(onfalse=step())),
        "definition.actions[0].onfalse",
        "did you mean 'onFalse'?",
    ),
    (
        "bad-output-key",
        wf(step(outputKey="my-key")),
        "definition.actions[0].outputKey",
        "must be an identifier",
    ),
    (
        "properties-not-object",
        wf(step(properties=[])),
        "definition.actions[0].properties",
        "must be an object",
    ),
    (
        "bad-operator",
        wf(cond({"greaterThen": ["@input.a", 1]})),
        "definition.actions[0].filter.condition",
        "unknown operator 'greaterThen' (expected one of",
    ),
    (
        "wrong-arity",
        wf(cond({"greaterThan": ["@input.a", 1, 2]})),
        "definition.actions[0].filter.condition.greaterThan",
        "takes a list of 2 operands [left, right], got 3",
    ),
    (
        "two-operator-keys",
        wf(cond({"equal": [1, 1], "notEqual": [1, 2]})),
        "definition.actions[0].filter.condition",
        "exactly one operator key",
    ),
    ("empty-condition", wf(condition={}), "definition.condition", "empty condition"),
    (
        "bad-length-operand",
        wf(step(), cond({"greaterThan": [{"length": "@input..x"}, 0]})),
        "definition.actions[1].filter.condition.greaterThan[0].length",
        "malformed reference '@input..x'",
    ),
    (
        "object-operand",
        wf(cond({"equal": [{"lenght": "@x"}, 0]})),
        "definition.actions[0].filter.condition.equal[0]",
        'must be {"length": <operand>}',
    ),
    ("empty-and", wf(cond({"and": []})), "definition.actions[0].filter.condition.and", "non-empty list"),
    (
        "bad-operator-inside-or",
        wf(cond({"or": [{"equal": [1, 1]}, {"equals": [1, 1]}]})),
        "definition.actions[0].filter.condition.or[1]",
        "did you mean 'equal'?",
    ),
    (
        "not-takes-object",
        wf(cond({"not": [{"equal": [1, 1]}]})),
        "definition.actions[0].filter.condition.not",
        "got array",
    ),
    (
        "haskey-not-string",
        wf(cond({"hasKey": ["a"]})),
        "definition.actions[0].filter.condition.hasKey",
        "path string",
    ),
    (
        "haskey-malformed",
        wf(cond({"hasKey": "@input."})),
        "definition.actions[0].filter.condition.hasKey",
        "malformed path",
    ),
    (
        "in-needs-array",
        wf(cond({"in": ["@input.s", "abc"]})),
        "definition.actions[0].filter.condition.in[1]",
        "must be an array or an @reference",
    ),
    (
        "bad-regex",
        wf(cond({"matches": ["@input.email", "[a-z"]})),
        "definition.actions[0].filter.condition.matches[1]",
        "invalid regular expression '[a-z'",
    ),
    (
        "regex-nested-too-deeply",
        wf(cond({"matches": ["@input.email", "(" * 900]})),
        "definition.actions[0].filter.condition.matches[1]",
        "too complex",
    ),
    (
        "regex-too-long",
        wf(cond({"matches": ["@input.email", "(" * 3000]})),
        "definition.actions[0].filter.condition.matches[1]",
        "too long: at most 1000 characters",
    ),
    (
        "filter-without-condition",
        wf(step(filter={})),
        "definition.actions[0].filter.condition",
        "must contain a 'condition'",
    ),
    (
        "filter-and-condition",
        wf(step(filter={"condition": {"equal": [1, 1]}}, condition={"equal": [1, 1]})),
        "definition.actions[0].condition",
        "not both",
    ),
    ("onFalse-without-filter", wf(step(onFalse=step())), "definition.actions[0].onFalse", "needs a 'filter'"),
    (
        "nested-onFalse",
        wf(
            step(
                filter={"condition": {"equal": [1, 2]}},
                onFalse=step(filter={"condition": {"equal": [1, 3]}}, onFalse=step("nope")),
            )
        ),
        "definition.actions[0].onFalse.onFalse.type",
        "unknown step type 'nope'",
    ),
    (
        "malformed-reference-in-properties",
        wf(step(properties={"payload": {"ids": ["@input.ok", "@input..x"]}})),
        "definition.actions[0].properties.payload.ids[1]",
        "malformed reference '@input..x'",
    ),
    (
        "reference-with-space",
        wf(step(properties={"to": "@ foo"})),
        "definition.actions[0].properties.to",
        "malformed reference '@ foo'",
    ),
    (
        "unbalanced-template",
        wf(step(properties={"message": "Hello {{customer.name"})),
        "definition.actions[0].properties.message",
        "unbalanced template",
    ),
    (
        "empty-template",
        wf(step(properties={"message": "Hello {{ }}"})),
        "definition.actions[0].properties.message",
        "empty template placeholder",
    ),
    (
        "at-in-template",
        wf(step(properties={"message": "Hello {{@input.name}}"})),
        "definition.actions[0].properties.message",
        "template paths take no '@'",
    ),
    ("schedule-not-object", wf(schedule="1d"), "definition.schedule", "must be an object"),
    ("schedule-missing-every", wf(schedule={"at": "02:00"}), "definition.schedule", "needs 'every'"),
    ("schedule-bad-every", wf(schedule={"every": "2w"}), "definition.schedule.every", "must look like"),
    ("schedule-zero-every", wf(schedule={"every": "0h"}), "definition.schedule.every", "positive"),
    (
        "schedule-every-too-many-digits",
        wf(schedule={"every": "9" * 5000 + "m"}),
        "definition.schedule.every",
        "at most 6 digits",
    ),
    ("schedule-every-7-digits", wf(schedule={"every": "1000000h"}), "definition.schedule.every", "at most 6 digits"),
    (
        "schedule-at-with-6h",
        wf(schedule={"every": "6h", "at": "02:00"}),
        "definition.schedule.at",
        "1d or longer",
    ),
    ("schedule-bad-at", wf(schedule={"every": "1d", "at": "25:00"}), "definition.schedule.at", "HH:MM"),
    (
        "schedule-bad-timezone",
        wf(schedule={"every": "1d", "timezone": "Mars/Olympus_Mons"}),
        "definition.schedule.timezone",
        "unknown timezone 'Mars/Olympus_Mons'",
    ),
    (
        "schedule-timezone-deep-path",
        wf(schedule={"every": "1d", "timezone": "a/" * 3000 + "b"}),
        "definition.schedule.timezone",
        "unknown timezone",
    ),
    (
        "schedule-timezone-directory",
        wf(schedule={"every": "1d", "timezone": "America"}),
        "definition.schedule.timezone",
        "unknown timezone",
    ),
    ("schedule-cron-fields", wf(schedule={"cron": "0 2 * *"}), "definition.schedule.cron", "5 fields"),
    (
        "schedule-cron-field",
        wf(schedule={"cron": "0 2 * * MON"}),
        "definition.schedule.cron",
        "invalid cron field 'MON'",
    ),
    (
        "schedule-unknown-key",
        wf(schedule={"every": "1h", "tz": "UTC"}),
        "definition.schedule.tz",
        "unknown schedule key",
    ),
    (
        "matcher-missing-left",
        wf(step("matcher", properties={"right": "@input.b", "matchOn": ["id"]})),
        "definition.actions[0].properties.left",
        "missing required property 'left'",
    ),
    (
        "matcher-left-number",
        wf(step("matcher", properties={**MATCHER_OK, "left": 3})),
        "definition.actions[0].properties.left",
        "must be an array, an @reference or a 'doc:<id>' string",
    ),
    (
        "matcher-empty-matchOn",
        wf(step("matcher", properties={**MATCHER_OK, "matchOn": []})),
        "definition.actions[0].properties.matchOn",
        "non-empty list of strings",
    ),
    (
        "matcher-negative-tolerance",
        wf(step("matcher", properties={**MATCHER_OK, "tolerance": -0.1})),
        "definition.actions[0].properties.tolerance",
        ">= 0",
    ),
    (
        "matcher-fuzzy-range",
        wf(step("matcher", properties={**MATCHER_OK, "fuzzyThreshold": 150})),
        "definition.actions[0].properties.fuzzyThreshold",
        "between 0 and 100",
    ),
    (
        "matcher-date-window-float",
        wf(step("matcher", properties={**MATCHER_OK, "dateWindowDays": 1.5})),
        "definition.actions[0].properties.dateWindowDays",
        "must be an integer",
    ),
    (
        "matcher-output-key",
        wf(step("matcher", properties={**MATCHER_OK, "outputMatched": "matched pairs"})),
        "definition.actions[0].properties.outputMatched",
        "must be an identifier",
    ),
    (
        "loop-bad-mode",
        wf(step("loop", properties={**FOREACH_OK, "mode": "parallel"})),
        "definition.actions[0].properties.mode",
        "unknown loop mode 'parallel'",
    ),
    (
        "foreach-missing-items_path",
        wf(step("loop", properties={k: v for k, v in FOREACH_OK.items() if k != "items_path"})),
        "definition.actions[0].properties.items_path",
        "missing required property 'items_path'",
    ),
    (
        "foreach-items-not-reference",
        wf(step("loop", properties={**FOREACH_OK, "items_path": "input.items"})),
        "definition.actions[0].properties.items_path",
        "must be an @reference",
    ),
    (
        "foreach-variable-name",
        wf(step("loop", properties={**FOREACH_OK, "item_variable_name": "my item"})),
        "definition.actions[0].properties.item_variable_name",
        "must be an identifier",
    ),
    (
        "foreach-empty-body",
        wf(step("loop", properties={**FOREACH_OK, "actions_to_execute": []})),
        "definition.actions[0].properties.actions_to_execute",
        "non-empty list of steps",
    ),
    (
        "foreach-nested-unknown-type",
        wf(step("loop", properties={**FOREACH_OK, "actions_to_execute": [step(), step("ghost")]})),
        "definition.actions[0].properties.actions_to_execute[1].type",
        "unknown step type 'ghost'",
    ),
    (
        "foreach-concurrency",
        wf(step("loop", properties={**FOREACH_OK, "max_concurrency": 0})),
        "definition.actions[0].properties.max_concurrency",
        ">= 1",
    ),
    (
        "foreach-failure-strategy",
        wf(step("loop", properties={**FOREACH_OK, "failure_strategy": "continue"})),
        "definition.actions[0].properties.failure_strategy",
        "must be one of continue_on_error, stop_on_error",
    ),
    (
        "react-disabled",
        wf(step("loop", properties=REACT_OK)),
        "definition.actions[0].properties.mode",
        "loop mode 'react' (agents) is not available yet",
    ),
    (
        "approval-missing-comment",
        wf(step("PbotApproval", properties={"request_payload": {"id": "@input.id"}})),
        "definition.actions[0].properties.comment",
        "missing required property 'comment'",
    ),
    (
        "approval-payload-not-object",
        wf(step("PbotApproval", properties={"comment": "ok", "request_payload": "@input"})),
        "definition.actions[0].properties.request_payload",
        "must be an object",
    ),
    (
        "form-missing-expected_keys",
        wf(step("PbotForm", properties={"ttl_seconds": 60})),
        "definition.actions[0].properties.expected_keys",
        "missing required property 'expected_keys'",
    ),
    (
        "form-empty-expected_keys",
        wf(step("PbotForm", properties={"expected_keys": []})),
        "definition.actions[0].properties.expected_keys",
        "non-empty list of strings",
    ),
    (
        "form-bad-reminder",
        wf(step("PbotForm", properties={"expected_keys": ["a"], "reminder_intervals": [3600, -1]})),
        "definition.actions[0].properties.reminder_intervals[1]",
        "positive numbers",
    ),
    (
        "form-ttl-zero",
        wf(step("PbotForm", properties={"expected_keys": ["a"], "ttl_seconds": 0})),
        "definition.actions[0].properties.ttl_seconds",
        "> 0",
    ),
    (
        "table-missing-table",
        wf(step("custom-table", properties={"operation": "read"})),
        "definition.actions[0].properties.table",
        "missing required property 'table'",
    ),
    (
        "table-bad-operation",
        wf(step("custom-table", properties={"table": "t", "operation": "delete"})),
        "definition.actions[0].properties.operation",
        "must be one of read, update, upsert, write",
    ),
    (
        "table-keys-values-length",
        wf(
            step(
                "custom-table",
                properties={"table": "t", "operation": "read", "keys": ["a", "b"], "values": [1]},
            )
        ),
        "definition.actions[0].properties.values",
        "same length",
    ),
    (
        "table-update-without-fields",
        wf(step("custom-table", properties={"table": "t", "operation": "update", "keys": ["a"], "values": [1]})),
        "definition.actions[0].properties.fields",
        "needs non-empty 'fields'",
    ),
    (
        "table-upsert-without-keys",
        wf(step("custom-table", properties={"table": "t", "operation": "upsert", "fields": {"a": 1}})),
        "definition.actions[0].properties.keys",
        "needs 'keys'/'values'",
    ),
    (
        "table-write-nothing",
        wf(step("custom-table", properties={"table": "t", "operation": "write"})),
        "definition.actions[0].properties",
        "needs 'keys'/'values' or 'fields'",
    ),
    (
        "table-name-too-long",  # the name rule of server/domain/custom_tables.py (NAME), as CreateTable applies it
        wf(step("custom-table", properties={"table": "t" * 64, "operation": "read"})),
        "definition.actions[0].properties.table",
        "at most 63",
    ),
    (
        "table-reserved-field",
        wf(step("custom-table", properties={"table": "t", "operation": "write", "fields": {"updated_at": 1}})),
        "definition.actions[0].properties.fields.updated_at",
        "set by the server",
    ),
    (
        "table-limit-too-large",
        wf(step("custom-table", properties={"table": "t", "operation": "read", "limit": MAX_READ_ROWS + 1})),
        "definition.actions[0].properties.limit",
        str(MAX_READ_ROWS),
    ),
    (
        "top-condition-reference",
        wf(condition={"equal": ["@input.", 1]}),
        "definition.condition.equal[0]",
        "malformed reference '@input.'",
    ),
    (
        "too-deep",
        wf(condition=deep_not(40)),
        "definition.condition" + ".not" * (MAX_DEPTH - 1),
        "nesting too deep",
    ),
    (
        "too-many-steps",
        wf(*[step() for _ in range(MAX_STEPS + 1)]),
        f"definition.actions[{MAX_STEPS}]",
        "too many steps",
    ),
    (
        "int-beyond-float-range",
        wf(step("matcher", properties={**MATCHER_OK, "tolerance": -(10**400)})),
        "definition.actions[0].properties.tolerance",
        "'tolerance' must be a number >= 0",
    ),
    (
        "not-json",
        wf(step(properties={"when": {1, 2}})),
        "definition.actions[0].properties.when",
        "not a JSON value",
    ),
]


@pytest.mark.parametrize(("name", "definition", "path", "fragment"), INVALID, ids=[t[0] for t in INVALID])
def test_invalid_definitions(name: str, definition: Any, path: str, fragment: str) -> None:
    with pytest.raises(DefinitionError) as info:
        validate_definition(definition, step_types={"act"})
    assert info.value.path == path, str(info.value)
    assert fragment in info.value.message, str(info.value)
    assert str(info.value) == f"{path}: {info.value.message}"
    assert isinstance(info.value, ValueError)


INVALID_REACT: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "missing-objective",
        wf(step("loop", properties={"mode": "react", "tools": []})),
        "definition.actions[0].properties.objective",
        "missing required property 'objective'",
    ),
    (
        "missing-tools",
        wf(step("loop", properties={"mode": "react", "objective": "x"})),
        "definition.actions[0].properties.tools",
        "missing required property 'tools'",
    ),
    (
        "tool-type",
        wf(step("loop", properties={**REACT_OK, "tools": [{"type": "function", "name": "x"}]})),
        "definition.actions[0].properties.tools[0].type",
        "unknown tool type 'function'",
    ),
    (
        "workflow-tool-needs-id",
        wf(step("loop", properties={**REACT_OK, "tools": [{"type": "workflow"}]})),
        "definition.actions[0].properties.tools[0]",
        "needs a non-empty 'id' or 'name'",
    ),
    (
        "on-stuck-action",
        wf(step("loop", properties={**REACT_OK, "on_stuck": {"iterations": 3, "action": "panic"}})),
        "definition.actions[0].properties.on_stuck.action",
        "must be one of escalate, fail, retry_with_hint",
    ),
    (
        "on-stuck-iterations",
        wf(step("loop", properties={**REACT_OK, "on_stuck": {"iterations": 0}})),
        "definition.actions[0].properties.on_stuck.iterations",
        ">= 1",
    ),
    (
        "max-iterations",
        wf(step("loop", properties={**REACT_OK, "max_iterations": "ten"})),
        "definition.actions[0].properties.max_iterations",
        "must be an integer",
    ),
    (
        "objective-template",
        wf(step("loop", properties={**REACT_OK, "objective": "Handle {{input.issue"})),
        "definition.actions[0].properties.objective",
        "unbalanced template",
    ),
]


@pytest.mark.parametrize(("name", "definition", "path", "fragment"), INVALID_REACT, ids=[t[0] for t in INVALID_REACT])
def test_invalid_react_definitions(name: str, definition: dict[str, Any], path: str, fragment: str) -> None:
    with pytest.raises(DefinitionError) as info:
        validate_definition(definition, step_types={"act"}, allow_react=True)
    assert info.value.path == path, str(info.value)
    assert fragment in info.value.message, str(info.value)


def test_react_mode_is_enabled_by_flag() -> None:
    validate_definition(wf(step("loop", properties=REACT_OK)), step_types=(), allow_react=True)


def test_foreach_is_the_default_loop_mode() -> None:
    props = {k: v for k, v in FOREACH_OK.items() if k != "mode"}
    validate_definition(wf(step("loop", properties=props)), step_types={"act"})


def test_primitive_names_win_over_registered_actions() -> None:
    # A registered action named like a primitive does not relax the primitive's rules.
    with pytest.raises(DefinitionError) as info:
        validate_definition(wf(step("matcher", properties={"matchOn": ["id"]})), step_types={"matcher"})
    assert info.value.path == "definition.actions[0].properties.left"
    # ...while a registered matcher *action* needs no left/right in the step.
    validate_definition(wf(step("match_invoices", properties={"threshold": 2})), step_types={"match_invoices"})


# --------------------------------------------------------------------------- parsers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("@input.items.0.id", ["input", "items", 0, "id"]),
        ("@input", ["input"]),
        ("@__run_id", ["__run_id"]),
        ("@onboarding_decision.answer.decision", ["onboarding_decision", "answer", "decision"]),
        ("@input.invoices.length", ["input", "invoices", "length"]),
        ("@input.order-id.007", ["input", "order-id", "007"]),
        ("ops@acme.com", None),
        ("doc:abc", None),
        ("", None),
    ],
)
def test_parse_reference(text: str, expected: list[str | int] | None) -> None:
    assert parse_reference(text) == expected


@pytest.mark.parametrize("text", ["@", "@input..x", "@ foo", "@input.", "@.x", "@0.x", "@input[0]", "@a b"])
def test_parse_reference_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError):
        parse_reference(text)


def test_parse_path() -> None:
    assert parse_path("claim.a.claim_id") == ["claim", "a", "claim_id"]
    with pytest.raises(ValueError):
        parse_path("")


def test_long_digit_segments_stay_names() -> None:
    """int() is super-linear (and refuses > 4300 digits): only up to 18 digits become array indexes."""
    assert parse_path("a." + "9" * 18) == ["a", 10**18 - 1]
    assert parse_path("a." + "9" * 19) == ["a", "9" * 19]
    assert parse_path("a." + "9" * 5000 + ".b") == ["a", "9" * 5000, "b"]


def test_schedule_every_takes_up_to_six_digits() -> None:
    validate_definition(wf(schedule={"every": "999999m"}), step_types={"act"})
    validate_definition(wf(schedule={"every": "000001d"}), step_types={"act"})


def test_huge_integers_are_plain_numbers() -> None:
    validate_definition(
        wf(step("matcher", properties={**MATCHER_OK, "tolerance": 10**400, "dateWindowDays": 10**400})),
        step_types={"act"},
    )


def test_split_template() -> None:
    assert split_template("Dear {{ customer.name }}, ${{input.amount}}!") == [
        "Dear ",
        TemplateField("{{ customer.name }}", ("customer", "name")),
        ", $",
        TemplateField("{{input.amount}}", ("input", "amount")),
        "!",
    ]
    assert split_template("no templates }} here") == ["no templates }} here"]
    assert split_template("") == []
    for bad in ("{{a", "{{}}", "{{ a {{ b }}", "{{a..b}}", "{{@a}}"):
        with pytest.raises(ValueError):
            split_template(bad)


def test_validate_condition_standalone() -> None:
    validate_condition({"in": ["@input.status", ["active", "pending"]]})
    validate_condition({"in": ["@input.status", "@allowed"]})
    validate_condition({"matches": ["@input.code", "@input.pattern"]})
    with pytest.raises(DefinitionError) as info:
        validate_condition({"not": {"lessThan": [1]}}, "filter.condition")
    assert info.value.path == "filter.condition.not.lessThan"


def test_public_constants() -> None:
    assert frozenset({"matcher", "loop", "PbotApproval", "PbotForm", "custom-table"}) == PRIMITIVES
    assert (
        frozenset(
            [
                *("equal", "notEqual", "greaterThan", "lessThan", "greaterOrEqual", "lessOrEqual"),
                *("hasKey", "in", "matches", "and", "or", "not"),
            ]
        )
        == CONDITION_OPERATORS
    )
