"""The chart renderer of the chart tests, for the schema checks of what the chart renders."""

from tests.helm.conftest import helm, render

__all__ = ["helm", "render"]
