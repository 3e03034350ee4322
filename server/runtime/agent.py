"""The ReAct loop of a `loop` step in `mode: "react"` (standalone agents are runs of exactly such a step).

Each iteration: ask the model (prompt = objective + tools + history), read its decision, run the tool, append the
observation. Every model call and tool call is a journal row (server/store/agents.py) written before the call and
completed after it, each in its own transaction fenced by the run's lease. The loop is deterministic given the
journal: a resumed run (after a crash, or after a person answered a pause) replays the recorded answers in order and
only calls what has no recorded result — with the same idempotency key (`<step key>:<seq>`) as the first attempt.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hyphae.actions.v1 import action_pb2

from server import jsonvalue
from server.domain import agent as react
from server.domain import evaluate
from server.runtime import knowledge_tool, launch, llm, mcp_tools, outbound
from server.store import TenantRepository
from server.store import agents as store
from server.store import runs as run_store
from server.store.db import connect

if TYPE_CHECKING:
    from server.runtime.executor import Executor

log = logging.getLogger("hyphae.agent")
CHILD_POLL_SECONDS = 0.25
# A workflow tool waits this long for its child holding the worker slot (most children are quick); then it parks the
# run (kind child_run) and gives the slot back, so runs waiting for children can never starve the children.
CHILD_GRACE_SECONDS = 1.0
FINAL = set(run_store.FINAL)


class AgentFailed(Exception):
    """The agent cannot finish; the message starts with its stop reason (max_iterations_reached, stuck, timeout,
    llm_error...)."""


@dataclass
class Paused(Exception):
    """The agent waits: for a person (kind `agent`; the payload names the journal row the answer completes), or for
    a child run to end (kind `child_run`; the run is queued again when it does, see interrupts.wake_parents)."""

    payload: dict[str, Any]
    kind: str = "agent"


@dataclass(frozen=True)
class Result:
    output: dict[str, Any]  # {answer, confidence, summary}


def _reply_json(reply: llm.ChatReply) -> dict[str, Any]:
    return {
        "content": reply.content,
        "tool_calls": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in reply.tool_calls],
        "finish_reason": reply.finish_reason,
        "usage": {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens},
    }


def _reply(value: dict[str, Any]) -> llm.ChatReply:
    return llm.ChatReply(
        content=str(value.get("content") or ""),
        tool_calls=[llm.ToolCall(c["id"], c["name"], c["arguments"]) for c in value.get("tool_calls") or []],
        finish_reason=str(value.get("finish_reason") or ""),
    )


class ReactRunner:
    def __init__(
        self, executor: Executor, lease: run_store.Lease, key: str, properties: dict[str, Any], context: dict[str, Any]
    ) -> None:
        self.executor = executor
        self.lease = lease
        self.key = key  # the step's idempotency key: the journal's scope
        self.settings = react.settings(properties)
        self.context = context
        self.rows: dict[int, Any] = {}
        self.memory: dict[str, Any] = {}
        self.llm_settings: dict[str, str] = {}
        self.actions: dict[str, action_pb2.Action] = {}  # the org's registered actions, read once per execution

    async def run(self) -> Result:
        try:
            if self.settings.timeout_ms is None:
                return await self._loop()
            async with asyncio.timeout(self.settings.timeout_ms / 1000):
                return await self._loop()
        except TimeoutError:
            raise AgentFailed(
                f"timeout: the agent did not finish within timeout_ms={self.settings.timeout_ms}"
            ) from None

    # --- the loop ----------------------------------------------------------------------------------------------

    async def _loop(self) -> Result:
        async with connect(self.executor.engine) as connection:
            self.rows = await store.load(connection, self.lease, self.key)
        self.llm_settings = await self.executor._config(self.lease.org_id, llm.SETTINGS_KEYS)
        objective = evaluate.stringify(evaluate.resolve(self.settings.objective, self.context))
        tools = await self._tools()
        by_name = {tool.name: tool for tool in tools}
        specs = react.function_specs(tools)
        previous = self.context.get("__previous_agent")
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": react.system_prompt(objective, tools, previous)},
            {"role": "user", "content": objective},
        ]
        history: list[react.Decision] = []
        stuck_from = 0
        seq = 0
        on_stuck = self.settings.on_stuck
        for iteration in range(1, self.settings.max_iterations + 1):
            decision: react.Decision | None = None
            problem = ""
            for attempt in range(2):  # one repair retry for a reply that is not a decision
                reply = await self._model(seq, iteration, messages, specs)
                seq += 1
                try:
                    decision = react.decide(reply, bool(specs))
                except react.BadReply as exc:
                    problem = str(exc)
                    messages.append(react.assistant_message(reply, None))
                    if attempt == 0:
                        messages.append({"role": "user", "content": f"{react.REPAIR_PROMPT} ({problem})"})
                    continue
                messages.append(react.assistant_message(reply, decision))
                break
            if decision is None:
                invalid = react.Decision("", "", {})
                observation: Any = {"error": f"invalid reply after one repair: {problem}"}
                await self._record_only(seq, iteration, invalid, observation)
                seq += 1
                messages.append(react.observation_message(invalid, observation))
                continue
            if decision.action == react.COMPLETE:
                result = react.completion(decision.action_input)
                await self._record_only(seq, iteration, decision, {"completed": True})
                return Result(output=result)
            if decision.action == react.STORE_MEMORY:  # pure: applied again on replay
                self.memory[str(decision.action_input.get("key"))] = decision.action_input.get("value")
            observation, _ = await self._tool(seq, iteration, decision, by_name)
            seq += 1
            messages.append(react.observation_message(decision, observation))
            history.append(decision)
            reason = react.stuck(history[stuck_from:], on_stuck.iterations)
            if not reason:
                continue
            if on_stuck.action == "fail":
                raise AgentFailed(f"stuck: {reason} (on_stuck.action = fail)")
            if on_stuck.action == "retry_with_hint":
                hint = on_stuck.hint or "Try a different approach, or call __complete__ with your best answer."
                messages.append({"role": "user", "content": f"You seem stuck: {reason}. Hint: {hint}"})
            else:  # escalate: a person sees the trace and answers; the answer becomes context
                request = {"reason": "stuck", "detail": reason, "question": f"The agent is stuck: {reason}"}
                guidance = await self._pause(seq, iteration, request)
                seq += 1
                messages.append({"role": "user", "content": f"Human guidance: {react.observation_text(guidance)}"})
            stuck_from = len(history)
        raise AgentFailed(
            f"max_iterations_reached: the agent did not call __complete__ within {self.settings.max_iterations} "
            "iterations"
        )

    # --- journaled calls ---------------------------------------------------------------------------------------

    async def _begin(self, seq: int, iteration: int, kind: str, request: Any) -> None:
        async with connect(self.executor.engine) as connection:
            await run_store.hold(connection, self.lease)
            await store.begin(connection, self.lease, self.key, seq, iteration=iteration, kind=kind, request=request)

    async def _end(self, seq: int, response: Any, success: bool, prompt: int = 0, completion: int = 0) -> None:
        async with connect(self.executor.engine) as connection:
            await run_store.hold(connection, self.lease)
            await store.end(
                connection,
                self.lease,
                self.key,
                seq,
                response=response,
                success=success,
                prompt_tokens=prompt,
                completion_tokens=completion,
            )

    def _recorded(self, seq: int) -> dict[str, Any] | None:
        row = self.rows.get(seq)
        if row is None or row.response is None:
            return None
        value: dict[str, Any] = json.loads(row.response)
        return value

    async def _model(
        self, seq: int, iteration: int, messages: list[dict[str, Any]], specs: list[dict[str, Any]]
    ) -> llm.ChatReply:
        recorded = self._recorded(seq)
        if recorded is not None:
            if "error" in recorded:
                raise AgentFailed(f"llm_error: {recorded['error']}")
            return _reply(recorded)
        defaults = self.executor.llm_defaults
        model = self.settings.model or defaults.model
        if seq not in self.rows:
            # the messages this call adds to the history (the earlier ones are in the earlier rows)
            request = {"model": model, "message_count": len(messages), "messages": messages[-2:]}
            await self._begin(seq, iteration, "model", evaluate.redact(request, self.llm_settings.values()))
        try:
            reply = await llm.chat(
                self.executor.client,
                self.executor.policy,
                base_url=self.llm_settings.get("settings:llm_base_url") or defaults.base_url,
                api_key=self.llm_settings.get("api:llm_api_key") or defaults.api_key,
                model=model,
                messages=messages,
                tools=specs,
                temperature=self.settings.temperature,
                idempotency_key=f"{self.key}:{seq}",
            )
        except (llm.LlmError, outbound.OutboundError) as exc:
            message = str(evaluate.redact(str(exc), self.llm_settings.values()))
            await self._end(seq, {"error": message}, False)
            raise AgentFailed(f"llm_error: {message}") from None
        await self._end(seq, _reply_json(reply), True, reply.prompt_tokens, reply.completion_tokens)
        return reply

    @staticmethod
    def _request(decision: react.Decision) -> dict[str, Any]:
        return {"thought": decision.thought, "action": decision.action, "action_input": decision.action_input}

    async def _record_only(self, seq: int, iteration: int, decision: react.Decision, observation: Any) -> None:
        """A step with nothing to call (completion, an invalid reply): recorded for the trace."""
        if self._recorded(seq) is not None:
            return
        if seq not in self.rows:
            await self._begin(seq, iteration, "tool", self._request(decision))
        await self._end(seq, {"observation": observation}, bool(decision.action))

    async def _pause(self, seq: int, iteration: int, request: dict[str, Any]) -> Any:
        """The person's answer if this pause was answered, else Paused (the run parks at this step)."""
        recorded = self._recorded(seq)
        if recorded is not None:
            return recorded.get("observation")
        if seq not in self.rows:
            await self._begin(seq, iteration, "pause", request)
        action_input = request.get("action_input") if isinstance(request.get("action_input"), dict) else request
        assert isinstance(action_input, dict)
        payload = {
            "scope": self.key,
            "seq": seq,
            "reason": str(request.get("reason") or "pause_for_human"),
            "question": action_input.get("question") or action_input.get("message") or "",
            "context": action_input.get("context") or action_input.get("context_summary"),
            "options": action_input.get("options"),
        }
        raise Paused({k: v for k, v in payload.items() if v is not None})

    async def _tool(
        self, seq: int, iteration: int, decision: react.Decision, tools: dict[str, react.Tool]
    ) -> tuple[Any, bool]:
        if decision.action == react.PAUSE:
            return await self._pause(seq, iteration, self._request(decision)), True
        recorded = self._recorded(seq)
        if recorded is not None:
            row = self.rows[seq]
            return recorded.get("observation"), bool(row.success)
        tool = tools.get(decision.action)
        request = self._request(decision)
        if tool is not None and (tool.kind == "workflow" or tool.name == react.RUN_WORKFLOW):
            observation, success = await self._workflow(seq, iteration, decision, tool, request)
        else:
            if seq not in self.rows:
                await self._begin(seq, iteration, "tool", request)
            observation, success = await self._call(seq, decision, tool, tools)
        observation = evaluate.redact(observation, self.llm_settings.values())
        await self._end(seq, {"observation": observation}, success)
        return observation, success

    async def _call(
        self, seq: int, decision: react.Decision, tool: react.Tool | None, tools: dict[str, react.Tool]
    ) -> tuple[Any, bool]:
        """A built-in or an action tool; a failure is an observation for the model, not a crash."""
        if tool is None:
            return {"error": f"unknown tool {decision.action!r}; use one of: {', '.join(tools)}"}, False
        arguments = decision.action_input
        if tool.name == react.STORE_MEMORY:
            return {"stored": str(arguments.get("key"))}, True
        if tool.name == react.RETRIEVE_MEMORY:
            key = str(arguments.get("key"))
            if key not in self.memory:
                return {"error": f"nothing stored under {key!r}", "keys": sorted(self.memory)}, False
            return {"key": key, "value": self.memory[key]}, True
        if tool.name == react.LOG_PROGRESS:
            return {"logged": True}, True
        if tool.name == react.KNOWLEDGE_SEARCH:
            return await knowledge_tool.run(self.executor.engine, self.lease.org_id, arguments, self.executor.embedder)
        if tool.kind == "mcp":
            timeout = tool.timeout_ms / 1000 if tool.timeout_ms else None
            try:
                return await mcp_tools.call_tool(tool.ref, tool.remote, arguments, self.executor.policy, timeout)
            except mcp_tools.McpFailed as exc:
                return {"error": str(exc)}, False
        action = self.actions.get(tool.name)
        if action is None:
            return {"error": f"action {tool.name!r} is not registered (POST /actions)"}, False
        idempotency_key = f"{self.key}:{seq}"
        try:
            if action.kind == action_pb2.ACTION_KIND_HTTP:
                output = await self.executor._http(self.lease, idempotency_key, action, arguments, self.context)
            elif action.kind == action_pb2.ACTION_KIND_LLM:
                output = await self.executor._llm(self.lease, idempotency_key, action, arguments, self.context)
            elif action.kind == action_pb2.ACTION_KIND_DB:
                output = await self.executor._db(self.lease, action, arguments, self.context)
            else:
                return {"error": f"action {tool.name!r} of this kind cannot be used as an agent tool"}, False
        except run_store.LeaseLost:
            raise
        except Exception as exc:  # the model sees what went wrong and may try something else
            from server.runtime.executor import StepFailed  # (executor imports this module)

            if not isinstance(exc, StepFailed | ValueError | outbound.OutboundError):
                log.exception("agent tool %s failed unexpectedly", tool.name)
                return {"error": "internal error while running the tool (logged)"}, False
            return {"error": str(exc)}, False
        return output, True

    async def _workflow(
        self, seq: int, iteration: int, decision: react.Decision, tool: react.Tool, request: dict[str, Any]
    ) -> tuple[Any, bool]:
        """Start the child run (recorded with the journal row in one transaction, so it starts once) and, unless
        `wait` is false, wait for it to end."""
        arguments = dict(decision.action_input)
        wait = arguments.pop("wait", True) is not False
        if tool.name == react.RUN_WORKFLOW:
            ref = str(arguments.get("workflow_id") or arguments.get("workflow_name") or "")
            child_input = arguments.get("input") or {}
        else:
            ref = tool.ref
            child_input = arguments["input"] if set(arguments) == {"input"} else arguments
        if not isinstance(child_input, dict):
            child_input = {"value": child_input}
        row = self.rows.get(seq)
        child_run_id = json.loads(row.request).get("child_run_id") if row is not None else None
        if child_run_id is None:
            async with connect(self.executor.engine) as connection:
                await run_store.hold(connection, self.lease)
                repo = TenantRepository(connection, self.lease.org_id)
                workflow = await store.workflow_by_ref(repo, ref) if ref else None
                if workflow is None:
                    await store.begin(
                        connection, self.lease, self.key, seq, iteration=iteration, kind="tool", request=request
                    )
                    return {"error": f"workflow {ref!r} not found"}, False
                raw = jsonvalue.dumps(child_input)
                _, child_run_id = await launch.start_run(repo, workflow.id, child_input, raw)
                await store.begin(
                    connection,
                    self.lease,
                    self.key,
                    seq,
                    iteration=iteration,
                    kind="tool",
                    request={**request, "child_run_id": child_run_id},
                )
        if not wait:
            return {"run_id": child_run_id, "status": "running"}, True
        deadline = asyncio.get_running_loop().time() + CHILD_GRACE_SECONDS
        while True:
            async with connect(self.executor.engine) as connection:
                child = await run_store.get(TenantRepository(connection, self.lease.org_id), child_run_id)
            if child.status in FINAL:
                break
            if asyncio.get_running_loop().time() >= deadline:
                raise Paused({"scope": self.key, "seq": seq, "child_run_id": child_run_id}, kind="child_run")
            await asyncio.sleep(CHILD_POLL_SECONDS)
        context = {k: v for k, v in json.loads(child.context).items() if not k.startswith("__")}
        result = {
            "run_id": child_run_id,
            "status": child.status,
            "output": json.loads(child.output) if child.output is not None else None,
            "context": context,
        }
        if child.error:
            result["error"] = child.error
        return result, child.status == "completed"

    # --- tools -------------------------------------------------------------------------------------------------

    async def _tools(self) -> list[react.Tool]:
        """Built-ins, then the declared tools (actions by name; workflows by id or name, exposed by their name)."""
        tools = react.builtin_tools()
        names = {tool.name for tool in tools}
        actions = self.actions = await self.executor.load_actions(self.lease.org_id)
        for declared in self.settings.declared:
            if isinstance(declared, str):
                kind, ref = ("action" if declared in actions else "workflow"), declared
            else:
                kind = str(declared.get("type") or "action")
                ref = str(declared.get("id") or declared.get("name") or "") if kind == "workflow" else ""
                ref = ref or str(declared.get("name") or "")
            if isinstance(declared, dict) and kind == "mcp":
                tools.extend(await self._mcp_tools(declared, names))
                continue
            if ref in names:
                continue
            if kind == "action":
                action = actions.get(ref)
                description = declared.get("description") if isinstance(declared, dict) else None
                tool = react.Tool(ref, "action", str(description or (action.description if action else "")))
            else:
                async with connect(self.executor.engine) as connection:
                    workflow = await store.workflow_by_ref(TenantRepository(connection, self.lease.org_id), ref)
                if workflow is None:
                    raise AgentFailed(f"tool_error: workflow tool {ref!r} not found")
                parameters = {
                    "type": "object",
                    "properties": {"input": {"type": "object"}, "wait": {"type": "boolean"}},
                }
                tool = react.Tool(
                    workflow.name, "workflow", workflow.description or f"Run the workflow {workflow.name}", workflow.id
                )
                tool = react.Tool(tool.name, tool.kind, tool.description, tool.ref, parameters)
            names.add(tool.name)
            tools.append(tool)
        return tools

    async def _mcp_tools(self, declared: dict[str, Any], names: set[str]) -> list[react.Tool]:
        """The tools an MCP server offers (those in allowed_tools, if given), named `<prefix>__<tool>`."""
        url = mcp_tools.server_ref(declared)  # a URL, or the stdio command line
        prefix = str(declared.get("name") or "mcp")
        allowed = declared.get("allowed_tools")
        timeout_ms = declared.get("timeout_ms")
        timeout_ms = int(timeout_ms) if isinstance(timeout_ms, int) else None
        try:
            remote = await mcp_tools.list_tools(url, self.executor.policy, timeout_ms / 1000 if timeout_ms else None)
        except mcp_tools.McpFailed as exc:
            raise AgentFailed(f"tool_error: {exc}") from None
        tools = []
        for item in remote:
            name = f"{prefix}__{item.name}"
            if (isinstance(allowed, list) and item.name not in allowed) or name in names:
                continue
            names.add(name)
            tools.append(react.Tool(name, "mcp", item.description, url, item.input_schema, item.name, timeout_ms))
        return tools
