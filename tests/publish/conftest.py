"""Fixtures of the publishing tests: `hub`, the stand-in Hub of hub_stub.py (a local HTTP server that
keeps what it receives)."""

from tests.publish.hub_stub import hub  # noqa: F401  (a fixture)
