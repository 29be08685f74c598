"""The hub tests' orchestrator fixture, which stops every workflow a test starts."""

from tests.hub.conftest import run

__all__ = ["run"]
