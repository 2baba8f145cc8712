"""/openapi.json tells the truth: every route is in it with its schemas, permission and error codes,
and real answers over a live server match the schemas documented for their route and status."""

from __future__ import annotations

import copy
import inspect
import logging
import re
import uuid

import httpx
import jsonschema
import pytest
from openapi_spec_validator import validate as validate_openapi

from tests.conftest import signed_in
from vedina.config import load_settings
from vedina.errors import ValidationFailed, error_body
from vedina.http.openapi import openapi_path
from vedina.http.operation import requirement_of
from vedina.http.routes import CATCH_ALL, method_name

# The document's own routes (the page, its assets, the document) are not in it.
SELF = {"/openapi.json", "/docs", "/docs/assets/:name"}
ERROR_REF = "#/components/schemas/Error"


@pytest.fixture(scope="module")
def app():
    logging.disable(logging.INFO)  # Robyn logs every added route
    try:
        from vedina.app import create_app

        return create_app(load_settings({"LOG_LEVEL": "warning"}))
    finally:
        logging.disable(logging.NOTSET)


@pytest.fixture(scope="module")
def served(live_servers) -> dict:
    """The document as the server hands it out (granian, embedded profile)."""
    answer = httpx.get(live_servers("granian", "embedded").base_url + "/openapi.json", timeout=10)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    return answer.json()


def _routes(app):
    for route in app.router.get_routes():
        if route.route != CATCH_ALL and route.route not in SELF:
            yield method_name(route.route_type), route


def _original(handler):
    """The handler under ``requires``/``tus`` wrappers (they keep it in a closure named ``handler``)."""
    handler = inspect.unwrap(handler)
    while "handler" in inspect.getclosurevars(handler).nonlocals:
        handler = inspect.unwrap(inspect.getclosurevars(handler).nonlocals["handler"])
    return handler


# -- (a) every route, fully documented -------------------------------------------------------


def test_every_route_in_the_route_table_is_in_the_document_with_its_documentation(app, served):
    missing, incomplete = [], []
    for method, route in _routes(app):
        operation = served["paths"].get(openapi_path(route.route), {}).get(method.lower())
        where = f"{method} {route.route}"
        if operation is None:
            missing.append(where)
            continue
        if operation.get("x-undocumented") or not operation.get("x-permission") or "security" not in operation:
            incomplete.append(f"{where}: no annotation or permission")
            continue
        statuses = [int(s) for s in operation["responses"]]
        if not any(200 <= s < 400 for s in statuses):
            incomplete.append(f"{where}: no success answer")
        for status, response in operation["responses"].items():
            body = str(response.get("content")) if method != "HEAD" else ERROR_REF  # HEAD answers carry no body
            if int(status) >= 400 and not (response.get("x-error-codes") and ERROR_REF in body):
                incomplete.append(f"{where}: {status} without codes or the Error schema")
        source = inspect.getsource(_original(route.function.handler))
        decoded = re.search(r"decode_body\(request, (\w+)", source)
        if decoded and decoded.group(1) not in str(operation.get("requestBody", {}).get("content")):
            incomplete.append(f"{where}: decodes {decoded.group(1)}, documents {operation.get('requestBody')}")
        read = set(re.findall(r"(?:query_int\(request|query_params\.get\()\s*,?\s*\"(\w+)\"", source))
        documented = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        if read - documented:
            incomplete.append(f"{where}: reads query parameters {sorted(read - documented)} it does not document")
        path_params = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        if path_params != set(re.findall(r":(\w+)", route.route)):
            incomplete.append(f"{where}: path parameters {path_params}")
    assert not missing, f"routes missing from /openapi.json: {missing}"
    assert not incomplete, "\n".join(incomplete)


def test_every_get_has_its_head_and_nothing_else_is_documented(app, served):
    served_operations = {(path, method.upper()) for path, item in served["paths"].items() for method in item}
    routed = {(openapi_path(route.route), method) for method, route in _routes(app)}
    assert served_operations == routed


def test_the_permission_is_the_one_the_route_guard_checks(app, served):
    for method, route in _routes(app):
        operation = served["paths"][openapi_path(route.route)][method.lower()]
        required = requirement_of(route.function.handler)
        if required is None:
            assert operation["x-permission"].get("public") or operation["x-permission"].get("access"), route.route
            continue
        assert operation["x-permission"]["permissions"] == list(required)
        assert "admin" in operation["x-permission"]["roles"] and {"bearer": []} in operation["security"]
        assert {"401", "403"} <= set(operation["responses"])


def test_the_movie_list_documents_exactly_the_query_parameters_it_accepts():
    from vedina.api import movies

    assert set(movies.QUERY_DOC) == movies._QUERY_PARAMS


def test_every_schema_is_valid_json_schema_and_the_document_is_valid_openapi(served):
    for name, schema in served["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema)
    for item in served["paths"].values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                jsonschema.Draft202012Validator.check_schema(parameter["schema"])
            for response in operation["responses"].values():
                for media in response.get("content", {}).values():
                    jsonschema.Draft202012Validator.check_schema(media["schema"])
    validate_openapi(served)
    ids = [op["operationId"] for item in served["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_error_answers_have_the_documented_error_shape(served):
    status, body, _ = error_body(ValidationFailed("bad", details={"field": "title"}))
    _validate(served, {"$ref": ERROR_REF}, body)
    _, crash, _ = error_body(RuntimeError("secret stack"))
    _validate(served, {"$ref": ERROR_REF}, crash)


# -- checking an answer against the document -------------------------------------------------


def _closed(schema):
    """Objects admit only their documented properties (an undocumented field is a mismatch)."""
    if isinstance(schema, dict):
        schema = {key: _closed(value) for key, value in schema.items()}
        if schema.get("type") == "object" and "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [_closed(item) for item in schema]
    return schema


def _validate(document, schema, body) -> None:
    root = {"components": {"schemas": _closed(copy.deepcopy(document["components"]["schemas"]))}}
    jsonschema.Draft202012Validator({**schema, **root}).validate(body)


def _template(document, path: str) -> str | None:
    found = []
    for template in document["paths"]:
        pattern = "^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path):
            found.append(template)
    return min(found, key=lambda t: t.count("{"), default=None)  # a literal segment wins over a parameter


def check_answer(document, method: str, path: str, query: set[str], status: int, content_type: str, body: bytes):
    """Raise AssertionError / jsonschema.ValidationError when the answer is not what the document says."""
    template = _template(document, path)
    assert template is not None, f"{method} {path} is not documented"
    operation = document["paths"][template].get(method.lower())
    assert operation is not None, f"{method} {template} is not documented"
    documented_query = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
    assert query <= documented_query, f"{method} {template}: undocumented query {query - documented_query}"
    response = operation["responses"].get(str(status))
    assert response is not None, f"{method} {template} answered {status}, documented {list(operation['responses'])}"
    content = response.get("content")
    if not content or method == "HEAD":
        assert not body, f"{method} {template} {status}: a body where none is documented"
        return
    kind = content_type.split(";")[0].strip()
    if "application/json" in content:
        assert kind == "application/json", f"{method} {template} {status}: {content_type}"
        _validate(document, content["application/json"]["schema"], httpx.Response(200, content=body).json())
        return
    assert any(kind == k.split(";")[0] or (k.endswith("/*") and kind.startswith(k[:-1])) for k in content), \
        f"{method} {template} {status}: {content_type} not among {list(content)}"


def test_a_deliberately_wrong_schema_or_answer_fails_the_check(served):
    good = b'{"id": 7, "version": 2}'
    check_answer(served, "POST", "/api/movies", set(), 201, "application/json", good)
    with pytest.raises(jsonschema.ValidationError):  # a wrong type
        check_answer(served, "POST", "/api/movies", set(), 201, "application/json", b'{"id": "7", "version": 2}')
    with pytest.raises(jsonschema.ValidationError):  # an undocumented field
        check_answer(served, "POST", "/api/movies", set(), 201, "application/json", b'{"id": 7, "version": 2, "x": 1}')
    wrong = copy.deepcopy(served)
    wrong["components"]["schemas"]["MovieVersion"]["properties"]["version"] = {"type": "string"}
    with pytest.raises(jsonschema.ValidationError):  # the document is wrong, the answer right
        check_answer(wrong, "POST", "/api/movies", set(), 201, "application/json", good)
    not_found = b'{"error": {"code": "not_found", "message": "m", "details": null, "status": "fail"}}'
    check_answer(served, "GET", "/api/movies/5", set(), 404, "application/json", not_found)
    with pytest.raises(jsonschema.ValidationError):  # a code the operation does not list
        check_answer(served, "GET", "/api/movies/5", set(), 404, "application/json", not_found.replace(b"not_found", b"gone"))
    with pytest.raises(AssertionError):  # a status not documented
        check_answer(served, "GET", "/api/movies/5", set(), 418, "application/json", b"{}")
    with pytest.raises(AssertionError):  # a query parameter not documented
        check_answer(served, "GET", "/api/genres", {"sort"}, 200, "application/json", b'{"items": []}')
    with pytest.raises(AssertionError):  # the wrong content type
        check_answer(served, "GET", "/api/sitemap.xml", set(), 200, "application/json", b"{}")


# -- (b) a real flow, every answer checked ---------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.exchanges: list[tuple] = []

    def __call__(self, response: httpx.Response) -> None:
        response.read()
        request = response.request
        self.exchanges.append((request.method, request.url.path, set(request.url.params.keys()), response.status_code,
                               response.headers.get("content-type", ""), response.content))

    def attach(self, client: httpx.Client) -> httpx.Client:
        client.event_hooks["response"].append(self)
        return client


@pytest.mark.parametrize("profile", ["embedded", "real"])
def test_real_answers_match_the_documented_schemas(profile, live_servers, served):
    from tests.conftest import require_profile

    require_profile(profile)
    live = live_servers("granian", profile)
    env, recorder = live.env, Recorder()
    anonymous = recorder.attach(httpx.Client(base_url=live.base_url, timeout=30))
    viewer = recorder.attach(signed_in(live.base_url, env))
    editor = recorder.attach(signed_in(live.base_url, env, role="editor"))
    admin = recorder.attach(signed_in(live.base_url, env, role="admin"))
    unique = uuid.uuid4().hex[:8]

    # operations and catalog reads
    for path in ("/health", "/ready", "/api/genres", "/api/plans", "/api/blog/posts", "/api/sitemap.xml",
                 "/api/blog/feed.rss", "/api/blog/feed.atom", "/api/movies/999999999", "/api/people/999999999"):
        anonymous.get(path)
    movies = anonymous.get("/api/movies", params={"limit": 3, "sort": "newest"}).json()["items"]
    anonymous.get("/api/movies", params={"q": movies[0]["title"].split()[0]})
    anonymous.get("/api/movies", params={"sort": "bogus"})  # 422
    anonymous.get(f"/api/movies/{movies[0]['id']}")
    anonymous.get("/api/people", params={"name": "A", "limit": 5})
    anonymous.head("/api/genres")
    anonymous.options("/api/uploads")
    anonymous.get("/api/media/1")  # 401: no token, no credentials
    anonymous.post("/api/webhooks/simpay", content=b'{"id": "evt_1", "type": "x"}',
                   headers={"content-type": "application/json", "vedina-signature": "t=1,v1=00"})
    anonymous.post("/api/auth/register", json={"email": "not-an-email", "password": "x", "display_name": "X"})

    # a movie by an editor
    genre = editor.post("/api/genres", json={"slug": f"g-{unique}", "name": f"Genre {unique}"})
    assert genre.status_code == 201, genre.text
    person = editor.post("/api/people", json={"name": f"Person {unique}"}).json()
    editor.get(f"/api/people/{person['id']}")
    created = editor.post("/api/movies", json={"title": f"Docs {unique}", "genres": [f"g-{unique}"]})
    assert created.status_code == 201, created.text
    movie_id = created.json()["id"]
    editor.patch(f"/api/movies/{movie_id}", json={"synopsis": "Checked."}, headers={"if-match": '"1"'})
    editor.patch(f"/api/movies/{movie_id}", json={"synopsis": "Stale."}, headers={"if-match": '"1"'})  # 412
    editor.patch(f"/api/movies/{movie_id}", json={"synopsis": "None."})  # 428
    editor.post(f"/api/movies/{movie_id}/publish")
    editor.get(f"/api/movies/{movie_id}")
    viewer.post("/api/movies", json={"title": "Not mine"})  # 403

    # the viewer: account, profiles, progress, ratings, comments
    viewer.get("/api/auth/whoami")
    viewer.get("/api/users/me")
    viewer.get("/api/users/me/sessions")
    viewer.get("/api/profiles")
    kids = viewer.post("/api/profiles", json={"name": f"Kids {unique}", "max_age_rating": "PG"})
    viewer.post("/api/profiles", json={"name": f"Kids {unique}"})  # 409
    viewer.patch(f"/api/profiles/{kids.json()['id']}", json={"name": f"Small {unique}"})
    viewer.put(f"/api/movies/{movie_id}/progress", json={"position_seconds": 60, "duration_seconds": 600})
    viewer.get(f"/api/movies/{movie_id}/progress")
    viewer.put(f"/api/movies/{movie_id}/rating", json={"score": 8})
    viewer.get(f"/api/movies/{movie_id}/rating")
    viewer.put(f"/api/movies/{movie_id}/watchlist")
    viewer.get("/api/users/me/watchlist", params={"limit": 5})
    viewer.get("/api/users/me/continue-watching")
    viewer.get(f"/api/movies/{movie_id}/playback", params={"device_id": "docs-test"})
    viewer.get("/api/playback/sessions")
    comment = viewer.post(f"/api/movies/{movie_id}/comments", json={"body": f"Good *film* {unique}"})
    assert comment.status_code == 201, comment.text
    comment_id = comment.json()["id"]
    viewer.post(f"/api/movies/{movie_id}/comments", json={"body": "reply", "parent_id": comment_id})
    viewer.post(f"/api/movies/{movie_id}/comments", json={"body": f"Good *film* {unique}"})  # 409 duplicate
    viewer.patch(f"/api/comments/{comment_id}", json={"spoiler": True})
    viewer.post(f"/api/comments/{comment_id}/reports", json={"reason": "spam"})  # 409 own_comment
    editor.post(f"/api/comments/{comment_id}/reports", json={"reason": "spam", "note": "checking"})
    anonymous.get(f"/api/movies/{movie_id}/comments", params={"order": "oldest", "limit": 5})
    anonymous.get(f"/api/comments/{comment_id}")
    admin.get("/api/comments/reported")
    admin.post(f"/api/comments/{comment_id}/hide", json={"reason": "checking the docs"})
    admin.get("/api/comments/moderation-log", params={"limit": 5})

    # the blog
    post = editor.post("/api/blog/posts", json={"title": f"Docs post {unique}", "body": "Hello *world*",
                                                "tags": ["docs"], "movie_ids": [movie_id]})
    assert post.status_code == 201, post.text
    post_id = post.json()["id"]
    editor.get(f"/api/blog/editor/posts/{post_id}")
    editor.post(f"/api/blog/posts/{post_id}/publish")
    editor.post(f"/api/blog/posts/{post_id}/publish")  # 409 invalid_transition
    editor.get("/api/blog/editor/posts", params={"limit": 5})
    editor.get(f"/api/blog/editor/posts/{post_id}/revisions")
    anonymous.get("/api/blog/posts", params={"tag": "docs"})
    anonymous.get(f"/api/blog/posts/{post.json()['slug']}")

    # plans and a subscription paid through the provider simulator; admin reads
    plan = admin.post("/api/plans", json={"code": f"docs-{unique}", "name": "Docs", "tier": "premium",
                                          "price_minor": 1999, "currency": "usd", "screens": 2, "max_height": 2160})
    assert plan.status_code == 201, plan.text
    anonymous.get(f"/api/plans/{plan.json()['id']}")
    key = {"idempotency-key": str(uuid.uuid4())}
    subscribed = viewer.post("/api/subscriptions", json={"plan_id": plan.json()["id"], "payment_method": "pm_card_visa"},
                             headers=key)
    assert subscribed.status_code in (201, 202), subscribed.text
    viewer.post("/api/subscriptions", json={"plan_id": plan.json()["id"]})  # 400: no Idempotency-Key
    viewer.get("/api/subscriptions")
    viewer.get("/api/subscriptions/current")
    viewer.get("/api/payments")
    admin.get("/api/users", params={"limit": 5, "role": "viewer"})
    admin.post("/api/api-keys", json={"name": f"docs {unique}", "scopes": ["catalog:read"]})
    admin.get("/api/api-keys", params={"limit": 5})

    statuses = {exchange[3] for exchange in recorder.exchanges}
    assert {200, 201, 204, 401, 403, 404, 409, 412, 422, 428} <= statuses, statuses
    failures = []
    for method, path, query, status, content_type, body in recorder.exchanges:
        try:
            check_answer(served, method, path, query, status, content_type, body)
        except (AssertionError, jsonschema.ValidationError) as exc:
            failures.append(f"{method} {path} -> {status}: {str(exc)[:400]}")
    assert not failures, "\n".join(failures)
    for client in (anonymous, viewer, editor, admin):
        client.close()


def test_swagger_ui_loads_the_same_operations_as_valid_openapi_3_0(live_servers, served):
    """The vendored Swagger UI 4 renders 3.0 only: /docs loads the document converted to 3.0."""
    base = live_servers("granian", "embedded").base_url
    init = httpx.get(base + "/docs/assets/init.js", timeout=10).text
    assert 'url: "/docs/assets/openapi-3.0.json"' in init
    answer = httpx.get(base + "/docs/assets/openapi-3.0.json", timeout=10)
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-cache"
    ui = answer.json()
    assert ui["openapi"] == "3.0.3"
    validate_openapi(ui)
    assert {(p, m) for p, item in ui["paths"].items() for m in item} == \
        {(p, m) for p, item in served["paths"].items() for m in item}
    assert '"null"' not in answer.text  # 3.0 has nullable, not the null type
