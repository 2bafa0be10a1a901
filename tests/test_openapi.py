"""The OpenAPI document is valid, its examples obey its schemas, and it agrees with the apps' routes.

That every documented read answers through the real stack with bodies that validate is proved
in tests/test_stack.py, which runs the stack once for all its checks.
"""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from infra.nginx import STATIC_DIR

DOCUMENT = json.loads((STATIC_DIR / "openapi.json").read_text())
# Served by nginx itself, not by an app.
NGINX_ROUTES = {("GET", "/openapi.json"), ("GET", "/docs")}


def validator_for(schema: dict) -> jsonschema.Validator:
    """A validator for one schema of the document, resolving its $refs inside the document."""
    registry = Registry().with_resource("urn:atelier-openapi", Resource.from_contents(DOCUMENT, DRAFT202012))
    return jsonschema.Draft202012Validator(_absolute_refs(schema), registry=registry,
                                           format_checker=jsonschema.FormatChecker())


def _absolute_refs(node):
    if isinstance(node, dict):
        return {k: ("urn:atelier-openapi" + v if k == "$ref" and v.startswith("#") else _absolute_refs(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_absolute_refs(v) for v in node]
    return node


def deref(node: dict) -> dict:
    while "$ref" in node:
        target = DOCUMENT
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def documented_operations() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in DOCUMENT["paths"].items()
            for method in item if method in ("get", "post", "put", "delete", "patch")}


def response_schema(method: str, path: str, status: int = 200) -> dict:
    response = deref(DOCUMENT["paths"][path][method.lower()]["responses"][str(status)])
    return response["content"]["application/json"]["schema"]


def test_the_document_is_valid_openapi_3_1():
    assert DOCUMENT["openapi"].startswith("3.1")
    validate_openapi(DOCUMENT)


def examples():
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            for status, response in operation["responses"].items():
                for media in deref(response).get("content", {}).values():
                    if "example" in media:
                        yield pytest.param(media["schema"], media["example"], id=f"{method.upper()} {path} {status}")


@pytest.mark.parametrize(("schema", "example"), list(examples()))
def test_every_example_validates_against_its_schema(schema, example):
    validator_for(schema).validate(example)


def test_every_read_has_an_example():
    missing = [f"GET {path}" for path, item in DOCUMENT["paths"].items()
               if "get" in item and path not in ("/healthz", "/readyz", "/metrics")
               and "example" not in deref(item["get"]["responses"]["200"])["content"]["application/json"]]
    assert missing == []


def test_a_schema_rejects_what_the_contract_forbids():
    """The schemas are strict enough to catch drift: an exposed email or a numeric price fails."""
    review = deref(DOCUMENT["components"]["schemas"]["Review"])
    good = deref(DOCUMENT["paths"]["/reviews"]["get"]["responses"]["200"])["content"]["application/json"]["example"]
    leaked = json.loads(json.dumps(good))
    leaked["results"][0]["reviewer_email"] = "a@b.c"
    with pytest.raises(jsonschema.ValidationError):
        validator_for(response_schema("GET", "/reviews")).validate(leaked)
    assert "reviewer_email" not in review["properties"]
    product = deref(DOCUMENT["paths"]["/products/{product_id}"]["get"]["responses"]["200"])["content"]["application/json"]["example"]
    with pytest.raises(jsonschema.ValidationError):
        validator_for(response_schema("GET", "/products/{product_id}")).validate(dict(product, default_price=140))


def app_routes(app) -> set[tuple[str, str]]:
    """(method, path template) for every route an aiohttp app serves, trailing-slash twins folded."""
    routes = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "OPTIONS", "*"):
            continue
        path = route.resource.canonical
        if path != "/" and path.endswith("/"):
            path = path.rstrip("/")
        routes.add((route.method, path))
    return templates(routes)


def templates(operations: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Parameter names are the document's business: `/reviews/{review_id}` and `/reviews/{target_id}` match."""
    return {(method, re.sub(r"\{[^}]*\}", "{}", path)) for method, path in operations}


def test_every_app_route_is_documented_and_every_documented_route_has_an_app(settings):
    from reader.app import create_app as create_reader
    from writer.app import create_app as create_writer

    served = app_routes(create_reader(settings)) | app_routes(create_writer(settings)) | templates(NGINX_ROUTES)
    documented = templates(documented_operations() | NGINX_ROUTES)
    assert sorted(served - documented) == [], "served but not documented"
    assert sorted(documented - served) == [], "documented but served by no app"
