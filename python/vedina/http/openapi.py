"""The OpenAPI 3.1 document, built from the app's routes and their annotations.

Each route becomes one operation: its path and path parameters from the template, its summary,
description and tags from the route, its permission from the ``requires`` guard, and the rest
from the :func:`vedina.http.operation.doc` annotation next to it (schemas from the msgspec Structs,
under ``components/schemas``). Every error answer refers to one ``Error`` schema, narrowed to the
``code`` values the operation can answer (also listed in ``x-error-codes``). HEAD is documented for
every GET (the app answers it with GET's headers). A route without an annotation still appears,
marked ``x-undocumented`` (tests/ops/test_openapi.py fails on it); the app never refuses to start.

>>> document = build(app.router.get_routes(), version="1.0")
>>> document["paths"]["/api/movies/{id}"]["get"]["responses"]["200"]
"""

from __future__ import annotations

import copy
import inspect
import re
from http import HTTPStatus
from typing import Any, Literal

import msgspec

from vedina.errors import AppError
from vedina.http.operation import HEADERS, Operation, operation_of, requirement_of
from vedina.http.routes import CATCH_ALL, method_name
from vedina.security.csrf import UNSAFE_METHODS
from vedina.security.rbac import API_KEY_SCOPES, ROLE_PERMISSIONS

REF = "#/components/schemas/{name}"
JSON = "application/json"
_PATH_PARAM = re.compile(r":([A-Za-z_][A-Za-z0-9_]*)")
# Path parameters that are ids (path_int: 1..2^63-1) unless the annotation says otherwise.
_ID = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
_EXTRA_PHRASES = {460: "Checksum Mismatch"}

SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
               "description": "An access token from POST /api/auth/login (15 minutes)."},
    "cookie": {"type": "apiKey", "in": "cookie", "name": "vedina_access",
               "description": "A cookie session (login with session=cookie); unsafe methods also send "
                              "X-CSRF-Token with the vedina_csrf cookie's value."},
    "sigv4": {"type": "apiKey", "in": "header", "name": "Authorization",
              "description": "API keys: AWS Signature Version 4 (AWS4-HMAC-SHA256), service `vedina`, "
                             "region SIGV4_REGION."},
    "webhookSignature": {"type": "apiKey", "in": "header", "name": "Vedina-Signature",
                         "description": "t=<unix time>,v1=<hex HMAC-SHA256 of `t.body`> with the provider's "
                                        "secret (WEBHOOK_SECRETS); Stripe-Signature is accepted too."},
    "playbackToken": {"type": "apiKey", "in": "query", "name": "t",
                      "description": "A signed media URL's token (from GET /api/movies/{id}/playback)."},
}


class ErrorDetail(msgspec.Struct, kw_only=True):
    code: str
    message: str
    details: Any
    status: Literal["fail", "error"]  # fail: the client's (4xx), error: the server's (5xx)


class Error(msgspec.Struct, kw_only=True):
    """Every error answer: ``{"error": {"code", "message", "details", "status"}}`` (vedina.errors)."""

    error: ErrorDetail


def openapi_path(template: str) -> str:
    """``/api/movies/:id`` -> ``/api/movies/{id}``."""
    return _PATH_PARAM.sub(r"{\1}", template)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return _EXTRA_PHRASES.get(status, "Error")


def _error_pair(item: Any) -> tuple[int, str]:
    if isinstance(item, type) and issubclass(item, AppError):
        return item.status, item.code
    status, _, code = str(item).partition(" ")
    return int(status), code


class _Schemas:
    """Every type the document names, turned into JSON Schema in one msgspec call."""

    def __init__(self) -> None:
        self._types: list[Any] = []
        self._refs: list[tuple[Any, Any, int]] = []  # (container, key, type index)

    def put(self, container: Any, key: Any, kind: Any) -> None:
        self._refs.append((container, key, len(self._types)))
        self._types.append(kind)

    def resolve(self) -> dict[str, Any]:
        schemas, components = msgspec.json.schema_components(self._types, ref_template=REF)
        for container, key, index in self._refs:
            container[key] = schemas[index]
        return components


def _permission(required: tuple[str, ...] | None, operation: Operation | None, method: str) -> tuple[dict, list]:
    """(``x-permission``, ``security``) of an operation."""
    if required is not None:
        roles = sorted(str(role) for role, granted in ROLE_PERMISSIONS.items()
                       if not required or granted & set(required))
        api_keys = not required or bool(API_KEY_SCOPES & set(required))
        schemes = ["bearer", "cookie"] + (["sigv4"] if api_keys else [])
        permission = {"permissions": list(required), "any_of": True, "roles": roles, "api_keys": api_keys,
                      "csrf": method in UNSAFE_METHODS}
        return permission, [{scheme: []} for scheme in schemes]
    if operation is not None and operation.public:
        # Credentials are optional: editors see drafts, profiles bring their age limit.
        return {"public": True}, [{}, {"bearer": []}, {"cookie": []}, {"sigv4": []}]
    if operation is not None and operation.access:
        return {"access": operation.access}, [{scheme: []} for scheme in operation.security] or [{}]
    return {}, []


def _parameters(template: str, operation: Operation, schemas: _Schemas) -> list[dict]:
    parameters = []
    for name in _PATH_PARAM.findall(template):
        parameter = {"name": name, "in": "path", "required": True}
        if name in operation.path:
            schemas.put(parameter, "schema", operation.path[name])
        else:
            parameter["schema"] = dict(_ID) if name == "id" or name.endswith("_id") else {"type": "string"}
        parameters.append(parameter)
    for name, kind in operation.query.items():
        parameter = {"name": name, "in": "query", "required": name in operation.required}
        schemas.put(parameter, "schema", kind)
        parameters.append(parameter)
    for name in operation.headers:
        header = HEADERS[name]
        parameters.append({"name": name, "in": "header", "required": name in operation.required,
                           "description": header.description, "schema": dict(header.schema)})
    return parameters


def _errors(template: str, operation: Operation, required: tuple[str, ...] | None) -> dict[int, set[str]]:
    codes: dict[int, set[str]] = {500: {"internal_error"}, 503: {"service_unavailable"}, 429: {"rate_limited"}}

    def add(*pairs: str | type) -> None:
        for status, code in map(_error_pair, pairs):
            codes.setdefault(status, set()).add(code)

    if required is not None:
        add("401 unauthorized", "403 forbidden")
    if _PATH_PARAM.search(template):
        add("404 not_found", "422 validation_failed")
    if operation.query:
        add("422 validation_failed")
    if operation.body is not None:
        add("413 payload_too_large", "415 unsupported_media_type")
        if not isinstance(operation.body, str):
            add("400 bad_request", "422 validation_failed")
    for name in operation.headers:
        add(*HEADERS[name].errors)
    if "If-Match" in operation.required:
        add("428 precondition_required")
    add(*operation.errors)
    return codes


def _content(answer: Any, schemas: _Schemas) -> dict[str, Any] | None:
    if answer is None:
        return None
    if isinstance(answer, (str, tuple)):
        kinds = (answer,) if isinstance(answer, str) else answer
        return {kind: {"schema": {"type": "string"}} for kind in kinds}
    media: dict[str, Any] = {}
    if isinstance(answer, list):  # one of several shapes (untagged Structs: msgspec cannot union them)
        media["schema"] = {"anyOf": [{} for _ in answer]}
        for index, kind in enumerate(answer):
            schemas.put(media["schema"]["anyOf"], index, kind)
    else:
        schemas.put(media, "schema", answer)
    return {JSON: media}


def _tags(route: Any) -> list[str]:
    # Robyn adds the method's name (``get``) to every route's tags: not a group of ours.
    return [tag for tag in route.openapi_tags or [] if tag.upper() != method_name(route.route_type)]


def _operation(route: Any, method: str, template: str, schemas: _Schemas) -> dict[str, Any]:
    handler = inspect.unwrap(route.function.handler)
    operation, required = operation_of(handler), requirement_of(handler)
    tags = _tags(route)
    answer: dict[str, Any] = {
        "operationId": f"{(tags or ['app'])[0].replace(' ', '_')}_{handler.__name__}" + ("_head" if method == "HEAD" else ""),
        "summary": route.openapi_name or handler.__name__,
        "tags": tags,
    }
    description = inspect.getdoc(handler)
    if description:
        answer["description"] = description
    permission, security = _permission(required, operation, method)
    answer["x-permission"] = permission
    answer["security"] = security
    if operation is None:
        answer["x-undocumented"] = True
        answer["parameters"] = _parameters(template, Operation(answers={}), schemas)
        answer["responses"] = {"default": {"description": "Not documented yet"}}
        return answer
    answer["parameters"] = _parameters(template, operation, schemas)
    if operation.body is not None:
        answer["requestBody"] = {"required": not operation.body_optional, "content": _content(operation.body, schemas)}
    responses: dict[str, Any] = {}
    for status, body in sorted(operation.answers.items()):
        responses[str(status)] = {"description": _phrase(status)}
        content = _content(body, schemas)
        if content is not None:
            responses[str(status)]["content"] = content
    for status, codes in sorted(_errors(template, operation, required).items()):
        listed = sorted(codes)
        schema = {"allOf": [{"$ref": REF.format(name="Error")},
                            {"properties": {"error": {"properties": {"code": {"enum": listed}}}}}]}
        responses[str(status)] = {"description": f"{_phrase(status)}: {', '.join(listed)}", "x-error-codes": listed,
                                  "content": {JSON: {"schema": schema}}}
    answer["responses"] = responses
    return answer


def _head_of(get: dict[str, Any]) -> dict[str, Any]:
    head = copy.deepcopy(get)
    head["operationId"] += "_head"
    head["summary"] = f"{get['summary']} (headers only)"
    head.pop("description", None)
    for response in head["responses"].values():
        response.pop("content", None)
    return head


def build(routes: list[Any], *, version: str, title: str = "Vedina API") -> dict[str, Any]:
    """The document for Robyn ``routes`` (``app.router.get_routes()``)."""
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    tags: dict[str, None] = {}
    for route in routes:
        if route.route == CATCH_ALL:
            continue
        method = method_name(route.route_type)
        item = paths.setdefault(openapi_path(route.route), {})
        item[method.lower()] = _operation(route, method, route.route, schemas)
        tags.update(dict.fromkeys(_tags(route)))
    schemas.put({}, "schema", Error)  # the one error shape every error answer refers to
    components = schemas.resolve()
    for item in paths.values():
        if "get" in item and "head" not in item:
            item["head"] = _head_of(item["get"])
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title, "version": version,
            "description": "Every operation lists its permission (`x-permission`, `security`), its request and "
                           "response schemas, and its error codes (`x-error-codes`; every error has the `Error` "
                           "shape).",
        },
        "tags": [{"name": name} for name in tags],
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": SECURITY_SCHEMES},
    }


def as_openapi_30(document: dict[str, Any]) -> dict[str, Any]:
    """The same document in OpenAPI 3.0.3, for Swagger UI 4 (the newest the vendored package has,
    which renders 3.0 only): JSON Schema 2020-12 constructs rewritten to 3.0's Schema Object."""
    converted = _schema_30(copy.deepcopy(document))
    converted["openapi"] = "3.0.3"
    return converted


def _schema_30(node: Any) -> Any:
    if isinstance(node, list):
        return [_schema_30(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)  # rewritten here, then its children (a parent sees {"type": "null"} as it was)
    for key in ("anyOf", "oneOf"):
        options = node.get(key)
        if isinstance(options, list) and {"type": "null"} in options:
            rest = [option for option in options if option != {"type": "null"}]
            del node[key]
            if len(rest) == 1 and "$ref" not in rest[0]:
                node.update(rest[0])
            else:
                node["allOf" if len(rest) == 1 else key] = rest
            node["nullable"] = True
    if isinstance(node.get("type"), list):
        kinds = [kind for kind in node["type"] if kind != "null"]
        node["nullable"] = len(kinds) < len(node["type"]) or node.get("nullable", False)
        node["type"] = kinds[0] if len(kinds) == 1 else node["type"]
    if node.get("type") == "null":
        node.pop("type")
        node["nullable"] = True
    if "const" in node and not isinstance(node.get("const"), dict):
        node["enum"] = [node.pop("const")]
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), (int, float)) and not isinstance(node.get(bound), bool):
            node[limit], node[bound] = node[bound], True
    if "prefixItems" in node:
        node.pop("prefixItems")
        node.setdefault("items", {})
    if node.get("required") == []:
        node.pop("required")  # 3.0 wants at least one name
    return {key: _schema_30(value) for key, value in node.items()}
