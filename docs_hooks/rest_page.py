"""The REST API reference, rendered offline from the OpenAPI document wf serves at
``/api/openapi.json`` (wf.devserver.openapi): every path and method with its parameters, body
and responses, then every schema. The document itself is shipped in the site as openapi.json."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from docs_hooks.markdown import code, table, text

SHIPPED_PATH = "reference/openapi.json"  # in the built site; rest.md links to it
METHODS = ("get", "post", "put", "patch", "delete")
Schema = dict[str, Any]


def document() -> dict[str, Any]:
    """wf serve's document: wf dev's routes and wf serve's own (marked as such on the page)."""
    from wf.devserver.openapi import document as build

    return build(serve=True)


def document_text() -> str:
    return json.dumps(document(), ensure_ascii=False, indent=1)


def dev_paths() -> set[str]:
    from wf.devserver.openapi import document as build

    return set(build(serve=False)["paths"])


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, Schema]]:
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def schema_anchor(name: str) -> str:
    return f"schema-{name}"


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _resolve(doc: dict[str, Any], node: Schema) -> Schema:
    """A ``$ref`` to components/parameters or components/responses, followed."""
    ref = node.get("$ref")
    if not isinstance(ref, str):
        return node
    _, _, section, name = ref.split("/")
    resolved: Schema = doc["components"][section][name]
    return resolved


def type_of(schema: Schema) -> str:
    """A schema as a short Markdown phrase: ``string``, ``array of [Step](#...)``, ``"a" or
    "b"``."""
    if "$ref" in schema:
        name = _ref_name(schema["$ref"])
        return f"[{name}](#{schema_anchor(name)})"
    for key in ("oneOf", "anyOf"):
        if key in schema and all(isinstance(s, dict) for s in schema[key]):
            return " or ".join(type_of(s) for s in schema[key])
    if "allOf" in schema:
        return " and ".join(type_of(s) for s in schema["allOf"])
    if "const" in schema:
        return code(json.dumps(schema["const"]))
    if "enum" in schema:
        return " or ".join(code(json.dumps(v)) for v in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        items = schema.get("items") or {}
        return f"array of {type_of(items)}" if items else "array"
    if isinstance(kind, list):
        return " or ".join(kind)
    if isinstance(kind, str):
        shown = kind
        if "format" in schema:
            shown += f" ({schema['format']})"
        return shown
    return "any"


def _limits(schema: Schema) -> str:
    parts = []
    for key, label in (
        ("minimum", "≥"),
        ("maximum", "≤"),
        ("minLength", "length ≥"),
        ("maxLength", "length ≤"),
        ("minItems", "items ≥"),
        ("maxItems", "items ≤"),
    ):
        if key in schema:
            parts.append(f"{label} {schema[key]:,}")
    if "pattern" in schema:  # a long one (durations) is left to openapi.json
        pattern = schema["pattern"]
        parts.append(f"pattern {code(pattern)}" if len(pattern) <= 60 else "a pattern")
    if "default" in schema:
        parts.append(f"default {code(json.dumps(schema['default']))}")
    return ", ".join(parts)


def _parameters(doc: dict[str, Any], operation: Schema) -> str:
    rows = []
    for node in operation.get("parameters", []):
        param = _resolve(doc, node)
        schema = param.get("schema", {})
        required = "yes" if param.get("required") else ""
        notes = "; ".join(p for p in (text(param.get("description", "")), _limits(schema)) if p)
        rows.append((code(param["name"]), param["in"], type_of(schema), required, notes))
    if not rows:
        return ""
    return table(("Parameter", "In", "Type", "Required", "Description"), rows)


def _body(operation: Schema) -> str:
    body = operation.get("requestBody")
    if not body:
        return ""
    lines = []
    for media, content in body.get("content", {}).items():
        schema = content.get("schema", {})
        required = "required" if body.get("required") else "optional"
        lines.append(f"**Body** ({code(media)}, {required}): {type_of(schema)}")
    if body.get("description"):
        lines.append(f"— {text(body['description'])}")
    return " ".join(lines)


def _result(schema: Schema) -> str:
    """What a reply's ``result`` holds, out of its ``allOf: [Envelope, {result: ...}]`` schema."""
    for part in schema.get("allOf", []):
        properties = part.get("properties", {})
        if "result" in properties:
            shown = f"envelope, result: {type_of(properties['result'])}"
            if "result_info" in properties:
                shown += ", with result_info"
            return shown
    return type_of(schema)


def _responses(doc: dict[str, Any], operation: Schema) -> str:
    rows = []
    for status, node in operation.get("responses", {}).items():
        response = _resolve(doc, node)
        shapes = []
        for media, content in response.get("content", {}).items():
            schema = content.get("schema", {})
            shown = _result(schema)
            if media != "application/json":
                shown = f"{code(media)}: {shown}"
            events = content.get("x-events")
            if isinstance(events, dict):
                shown += "; events " + ", ".join(
                    f"{code(name)} {type_of(s)}" for name, s in events.items()
                )
            shapes.append(shown)
        rows.append((status, text(response.get("description", "")), "; ".join(shapes)))
    return table(("Status", "When", "Body"), rows)


def _operation(doc: dict[str, Any], path: str, method: str, op: Schema, serve_only: bool) -> str:
    parts = [f"### {method.upper()} {path} {{#{op['operationId']}}}", "", text(op["summary"])]
    if op.get("description"):
        parts += ["", text(op["description"])]
    if serve_only:
        parts += ["", "Only on `wf serve`."]
    for block in (_parameters(doc, op), _body(op), _responses(doc, op)):
        if block:
            parts += ["", block]
    return "\n".join(parts)


def _schema(name: str, schema: Schema) -> str:
    parts = [f"### {name} {{#{schema_anchor(name)}}}"]
    if schema.get("description"):
        parts += ["", text(schema["description"])]
    properties = schema.get("properties")
    if isinstance(properties, dict) and properties:
        required = set(schema.get("required", []))
        rows = [
            (
                code(prop),
                type_of(sub),
                "yes" if prop in required else "",
                "; ".join(p for p in (text(sub.get("description", "")), _limits(sub)) if p),
            )
            for prop, sub in properties.items()
        ]
        parts += ["", table(("Field", "Type", "Required", "Description"), rows)]
        if schema.get("additionalProperties") is False:
            parts += ["", "Other fields are refused."]
    else:
        parts += ["", f"Type: {type_of(schema)}."]
        limits = _limits(schema)
        if limits:
            parts[-1] = parts[-1][:-1] + f"; {limits}."
    return "\n".join(parts)


def _is_mirror(path: str) -> bool:
    return path.startswith("/client/v4/accounts/{account_id}/")


def render() -> str:
    doc = document()
    on_dev = dev_paths()
    sections = ["## Endpoints"]
    for path, method, op in operations(doc):
        if _is_mirror(path) or path.startswith("/client/v4/"):
            continue
        sections.append(_operation(doc, path, method, op, path not in on_dev))
    mirrors = [
        (code(f"{method.upper()} {path}"), text(op["summary"]))
        for path, method, op in operations(doc)
        if path.startswith("/client/v4/")
    ]
    sections += [
        "## Cloudflare's paths",
        "Every `/api/workflows…` endpoint is served again under Cloudflare's "
        "`/client/v4/accounts/{account_id}/workflows…`, with the same parameters, body and "
        "replies, so that wrangler and Cloudflare's SDKs can talk to wf. A few account routes "
        "answer what those clients ask first.",
        table(("Endpoint", "Summary"), mirrors),
        "## Schemas",
    ]
    for name, schema in doc["components"]["schemas"].items():
        sections.append(_schema(name, schema))
    return "\n\n".join(sections)
