"""Process tests reuse the engine tests' documents and fixtures."""

from ..engine.conftest import journal, run

__all__ = ["journal", "run"]
