"""The OpenAPI 3.1 document, built from the route table and the pydantic models.

``/openapi.json`` is OpenAPI 3.1. The bundled Swagger UI (4.x) reads only 3.0, so ``/docs``
loads a 3.0 rendering of the same document (``anyOf [X, null]`` → ``nullable``).
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

from .. import __version__
from ..export import get_exporter
from . import models as m
from .endpoint import Endpoint

__all__ = ["build_openapi", "downgrade_to_30"]

_ERROR = {"$ref": "#/components/schemas/ErrorResponse"}
_PROJECT_ID = {"type": "string", "minLength": 1, "maxLength": 128}


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ERROR}},
    }
    if headers:
        out["headers"] = headers
    return out


def _collect(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(
        ref_template="#/components/schemas/{model}", mode="serialization"
    )
    for name, sub in schema.pop("$defs", {}).items():
        schemas.setdefault(name, sub)
    schemas.setdefault(model.__name__, schema)
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _rejections(ep: Endpoint) -> list[str]:
    """What a 422 from this operation can mean, by ``error.code`` (the route's own reasons
    come first, from its ``statuses``)."""
    out = []
    if ep.body is not None:
        out.append("`invalid_body`: the body does not match the schema.")
    if ep.query and "`invalid_query`" not in ep.statuses.get(422, ""):
        out.append("`invalid_query`: a query parameter is not valid.")
    if ep.idempotent:
        out.append(
            "`invalid_idempotency_key`: the Idempotency-Key header is malformed; "
            "`idempotency_key_reused`: the key was already used with another body."
        )
    return out


def _operation(ep: Endpoint, schemas: dict[str, Any], formats: list[str]) -> dict[str, Any]:
    params: list[dict[str, Any]] = []
    if ep.per_project:
        params.append(
            {
                "name": "id",
                "in": "path",
                "required": True,
                "schema": _PROJECT_ID,
                "description": "The project's folder name under the served root.",
            }
        )
    for name, schema in ep.path_params.items():
        if name == "format":
            schema = {"type": "string", "enum": formats}
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    for name, schema, description in ep.query:
        params.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "schema": schema,
                "description": description,
            }
        )
    if ep.idempotent:
        params.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,200}$"},
                "description": "Same key + same body → one execution, same answer; "
                "same key + another body → 422.",
            }
        )
    responses: dict[str, Any] = {}
    success: dict[str, Any] = {"description": "OK"}
    if ep.response is not None:
        success["content"] = {"application/json": {"schema": _collect(ep.response, schemas)}}
    elif ep.media_type:
        success["content"] = {ep.media_type: {"schema": {"type": "string"}}}
    else:  # a download: the media type of whichever format was asked for
        binary = {"type": "string", "format": "binary"}
        success["content"] = {get_exporter(f).media_type: {"schema": binary} for f in formats}
    responses[str(ep.success)] = success
    rejections = _rejections(ep)
    for status, description in ep.statuses.items():
        if status == 200 and ep.response is not None:
            responses["200"] = {**success, "description": description}
        elif status == 422:
            rejections.insert(0, description)
        elif status >= 400:
            responses[str(status)] = _error(description)
    if rejections:
        responses["422"] = _error(" ".join(rejections))
    if ep.per_project:  # opening the project reads its novel.toml, which a person may have broken
        unopenable = "the project's novel.toml does not validate (the message names the key)."
        conflict = responses.get("409", {}).get("description")
        responses["409"] = _error(
            f"{conflict} Or {unopenable}" if conflict else unopenable[0].upper() + unopenable[1:]
        )
    responses.setdefault(
        "401",
        _error(
            "No key or a wrong key (the same answer either way), or a key sent in the URL.",
            {"WWW-Authenticate": {"schema": {"type": "string"}, "required": True}},
        ),
    )
    if ep.write:
        responses.setdefault("403", _error("The key is read-only."))
    if ep.per_project:
        responses.setdefault(
            "404", _error("No such project, or the key is bound to another project.")
        )
    if ep.body is not None:
        responses.setdefault("400", _error("The body is not valid JSON."))
        responses.setdefault("413", _error("The body is over the size limit."))
        responses.setdefault("415", _error("The body is not application/json."))
    responses.setdefault(
        "429",
        _error(
            "Rate limit for this key; wait Retry-After seconds.",
            {"Retry-After": {"schema": {"type": "integer"}, "required": True}},
        ),
    )
    op: dict[str, Any] = {
        "operationId": ep.handler.__name__,
        "summary": ep.summary,
        "tags": [ep.tag],
        "parameters": params,
        "responses": responses,
        "security": [{"bearerAuth": []}, {"apiKeyAuth": []}],
    }
    if ep.write:
        op["description"] = "Needs a key with scope `write`."
    if ep.body is not None:
        required = ep.body is m.ExportBody
        op["requestBody"] = {
            "required": required,
            "content": {"application/json": {"schema": _collect(ep.body, schemas)}},
        }
    return op


def build_openapi(endpoints: list[Endpoint], formats: list[str]) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    _collect(m.ErrorResponse, schemas)
    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        paths.setdefault(ep.path, {})[ep.method.lower()] = _operation(ep, schemas, formats)
    export_body = schemas.get("ExportBody")
    if export_body is not None:
        export_body["properties"]["formats"]["items"] = {"type": "string", "enum": formats}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "novelkit sidecar",
            "version": __version__,
            "description": (
                "Drive novelkit projects over HTTP. Every route needs an API key "
                "(`novelkit keys create ROOT --scope read|write [--project ID]`). "
                'Errors are `{"error": {"code", "message"}}`. The live WebSocket '
                "`/api/v2/projects/{id}/ws` is described in the `x-websocket` section and "
                "novelkit/server/websocket.md."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Authorization: Bearer KEY",
                },
                "apiKeyAuth": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
        "security": [{"bearerAuth": []}, {"apiKeyAuth": []}],
        "x-websocket": {
            "path": "/api/v2/projects/{id}/ws",
            "query": {
                "since": "replay persisted events with seq > since, then live",
                "ticket": "single-use ticket from POST /api/v2/ws-ticket",
            },
            "subprotocols": ["novelkit.v1", "novelkit.key.<KEY>"],
            "server_messages": [
                "status_update",
                "job",
                "stage",
                "unit",
                "progress",
                "call",
                "retry",
                "log",
                "artefact",
                "export",
                "delta",
                "pong",
                "resync",
                "error",
            ],
            "client_messages": [{"type": "ping"}, {"type": "get_status"}],
        },
    }


def downgrade_to_30(document: dict[str, Any]) -> dict[str, Any]:
    """The same document as OpenAPI 3.0.3, for Swagger UI 4."""

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: fix(v) for k, v in node.items()}
            for key in ("anyOf", "oneOf"):
                options = node.get(key)
                if isinstance(options, list) and {"type": "null"} in options:
                    rest = [o for o in options if o != {"type": "null"}]
                    del node[key]
                    if len(rest) == 1:
                        target = rest[0]
                        if "$ref" in target:
                            node["allOf"] = [target]
                        else:
                            node.update(target)
                    else:
                        node[key] = rest
                    node["nullable"] = True
            if "const" in node:
                node["enum"] = [node.pop("const")]
            return node
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    out: dict[str, Any] = fix(copy.deepcopy(document))
    out["openapi"] = "3.0.3"
    return out
