"""Property-based API testing from the service's own OpenAPI schema (schemathesis).

Every generated request must get a documented, schema-conformant answer and never a 5xx.
Schemathesis' positive-data-acceptance check is left out: a schema-valid range such as
``price:50..10`` is still refused (400) because OpenAPI cannot say "low <= high".
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_api_conforms_to_its_schema(server_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{server_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert {op.label for op in operations} >= {"GET /search", "GET /healthz", "GET /readyz"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        check()
