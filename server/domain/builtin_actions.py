"""Pre-registered OAuth business tools. A step may use one of these names as its `type` once the org has
connected the provider's OAuth account (`__oauth_account__` picks which account)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BuiltinAction:
    name: str
    provider: str
    description: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ("__oauth_account__",)


CATALOGUE: tuple[BuiltinAction, ...] = (
    BuiltinAction(
        "gmail_send",
        "gmail",
        "Send an email from a connected Gmail account",
        ("to", "subject", "body"),
        ("__oauth_account__", "cc", "bcc", "html"),
    ),
    BuiltinAction(
        "gmail_read",
        "gmail",
        "Read recent messages matching a Gmail search query",
        ("query",),
        ("__oauth_account__", "max_results"),
    ),
    BuiltinAction(
        "slack_send_message",
        "slack",
        "Post a message to a Slack channel",
        ("channel", "text"),
        ("__oauth_account__", "thread_ts"),
    ),
    BuiltinAction(
        "slack_read_channel",
        "slack",
        "Read recent messages of a Slack channel",
        ("channel",),
        ("__oauth_account__", "limit"),
    ),
    BuiltinAction(
        "outlook_send",
        "outlook",
        "Send an email from a connected Outlook account",
        ("to", "subject", "body"),
        ("__oauth_account__", "cc", "bcc", "html"),
    ),
    BuiltinAction(
        "outlook_read",
        "outlook",
        "Read recent messages of a connected Outlook mailbox",
        ("query",),
        ("__oauth_account__", "max_results"),
    ),
)

NAMES = frozenset(action.name for action in CATALOGUE)
