"""Workflow runtime: what runs actions (outbound HTTP, ...)."""
