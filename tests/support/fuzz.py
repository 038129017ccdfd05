"""The schemathesis fuzz of the collector's API: every operation of its OpenAPI document
called with generated (valid and invalid) parameters, never answering a 5xx."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error


def operations_of(app: FastAPI) -> list[Any]:
    """The operations of ``app``'s OpenAPI document."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    return [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]


def fuzz(operations: list[Any], headers: dict[str, str], examples: Callable[[str], int]) -> None:
    """Call each of ``operations`` with ``headers`` on ``examples(path)`` generated cases;
    a 5xx fails."""
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=examples(operation.path), deadline=None, database=None,
            suppress_health_check=list(HealthCheck),
        )  # fmt: skip
        def check(case: Any) -> None:
            response = case.call(headers=headers)
            case.validate_response(response, checks=[not_a_server_error])

        check()
