"""The OpenAPI 3.1 document, built from the route table, and a docs page that reads it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._http import RouteSpec
from ._schemas import COMPONENTS, ERROR, ref

__all__ = ["DOCS_PAGE", "openapi_document"]

_ERRORS = {
    "307": "the session runs on another server (Location)",
    "401": "no or wrong credentials",
    "403": "the key's role may not do this",
    "404": "no such resource",
    "409": "the resource is not in a state that allows this",
    "422": "invalid request",
    "429": "rate limited (see Retry-After)",
    "500": "server error",
    "504": "the backend did not answer in time",
}


def _operation(spec: RouteSpec) -> dict[str, Any]:
    success: dict[str, Any] = {"description": spec.summary}
    if spec.response is not None:
        success["content"] = {"application/json": {"schema": spec.response}}
    elif spec.raw:
        success["content"] = {spec.raw: {"schema": {"type": "string"}}}
    error = {"content": {"application/json": {"schema": ref(ERROR)}}}
    responses = {str(spec.status): success}
    for code, text in _ERRORS.items():
        if spec.perm == "public" and code in ("401", "403", "429"):
            continue
        responses[code] = {"description": text, **error}
    op: dict[str, Any] = {
        "summary": spec.summary,
        "operationId": f"{spec.method.lower()}_{spec.path.strip('/').replace('/', '_')}".replace(
            "{", ""
        ).replace("}", ""),
        "responses": responses,
        "parameters": list(spec.params),
    }
    if spec.perm != "public":
        op["security"] = [{"apiKey": []}, {"bearer": []}]
        op["x-virtrio-permission"] = spec.perm
    if spec.request is not None:
        media = (
            "application/octet-stream"
            if spec.request.get("format") == "binary"
            else "application/json"
        )
        op["requestBody"] = {"required": False, "content": {media: {"schema": spec.request}}}
    return op


def openapi_document(routes: Iterable[RouteSpec]) -> dict[str, Any]:
    """The OpenAPI document of ``routes``."""
    paths: dict[str, dict[str, Any]] = {}
    for spec in routes:
        paths.setdefault(spec.path, {})[spec.method.lower()] = _operation(spec)
    return {
        "openapi": "3.1.0",
        "info": {"title": "virtrio emulation-session server", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": COMPONENTS,
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            },
        },
    }


DOCS_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>virtrio API</title>
<style>body{font:14px sans-serif;margin:2em}code{background:#eee;padding:1px 4px}
li{margin:.3em 0}</style></head>
<body><h1>virtrio emulation-session server</h1>
<p>The machine-readable document: <a href="/api/v1/openapi.json">/api/v1/openapi.json</a>.
Authenticate with <code>X-API-Key</code> or <code>Authorization: Bearer</code>.
WebSockets: <code>/api/v1/sessions/{id}/console</code> and
<code>/api/v1/sessions/{id}/events</code>.</p>
<ul id="routes"></ul>
<script>
fetch('/api/v1/openapi.json').then(r => r.json()).then(doc => {
  const list = document.getElementById('routes');
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const item = document.createElement('li');
      item.textContent = method.toUpperCase() + ' ' + path + ' \\u2014 ' + op.summary +
        (op['x-virtrio-permission'] ? ' [' + op['x-virtrio-permission'] + ']' : '');
      list.appendChild(item);
    }
  }
});
</script></body></html>
"""
