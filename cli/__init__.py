"""The `hyphae` command: composes server/ (gRPC) and gateway/ (REST) into processes.

This is the one package allowed to import both sides; server/ never imports gateway/ and gateway/ reaches the
services only over gRPC, so the gateway can run in its own process (`hyphae gateway`).
"""
