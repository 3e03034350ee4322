"""A scripted, OpenAI-compatible fake model server (deterministic, free): tests and `hyphae serve --demo` use it."""

from server.fakemodel.app import FakeModel, FakeModelServer
from server.fakemodel.scenarios import DEMO_SCENARIOS, ScenarioError, ScenarioFile, load, parse

__all__ = ["DEMO_SCENARIOS", "FakeModel", "FakeModelServer", "ScenarioError", "ScenarioFile", "load", "parse"]
