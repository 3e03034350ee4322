"""A tiny MCP server over stdio for the tests: `python mcp_stdio_server.py <log file>`; each tool call appends a line
to the log file, so the test counts calls made by the processes the worker spawned."""

from __future__ import annotations

import sys
from pathlib import Path

from mcp.server import MCPServer

LOG = Path(sys.argv[1])
server = MCPServer("notes")


@server.tool()
def lookup(customer_id: str) -> dict[str, str]:
    """Look up a customer's notes by id"""
    with LOG.open("a") as log:
        log.write(f"lookup {customer_id}\n")
    return {"id": customer_id, "tier": "silver"}


if __name__ == "__main__":
    server.run("stdio")
