"""Schemathesis hooks for tests/test_server_schema.py (loaded with SCHEMATHESIS_HOOKS).

- ``after_call`` logs each answer (operation, status, error code) to the file named by
  ``NOVELKIT_ST_LOG``, so the test can check that every operation was reached.
- ``documented_rejection`` is a check: a 422 names an ``error.code`` that the operation's 422
  description in the schema lists, and a schema-valid request is never rejected for a reason
  the schema could have expressed (only for a state-dependent one, such as a reused
  Idempotency-Key or chapters the project's outline does not have).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import schemathesis

# 422 codes that mean "the request does not match the schema": never for schema-valid data
SCHEMA_LEVEL = {
    "invalid_body",
    "invalid_query",
    "invalid_idempotency_key",
    "unknown_stage",
    "unknown_format",
}


@schemathesis.hook
def after_call(ctx: Any, case: Any, response: Any) -> None:
    path = os.environ.get("NOVELKIT_ST_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            code = None
            if response.status_code >= 400:
                code = response.json().get("error", {}).get("code")
            record = {"operation": case.operation.label, "status": response.status_code}
            record["code"] = code
            log.write(json.dumps(record) + "\n")


@schemathesis.check
def documented_rejection(ctx: Any, response: Any, case: Any) -> bool | None:
    if response.status_code != 422:
        return None
    code = response.json()["error"]["code"]
    description = case.operation.definition.raw["responses"]["422"]["description"]
    documented = re.findall(r"`([a-z_]+)`", description)
    assert code in documented, (
        f"{case.operation.label} answered 422 {code!r}; its schema documents {documented}"
    )
    meta = case.meta
    if meta is not None and meta.generation.mode.is_positive:
        assert code not in SCHEMA_LEVEL, (
            f"{case.operation.label} rejected schema-valid data with 422 {code!r}: "
            "the schema should say what the server refuses"
        )
    return None
