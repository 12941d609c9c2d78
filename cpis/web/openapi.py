"""``GET /openapi.json``: the OpenAPI 3.1 document of every route but the health-facing FHIR API.

The document is written by hand in ``cpis/web/openapi.json`` (package data, read
through :mod:`importlib.resources`) from the routes (LA plans, uploads,
notifications, the LA-facing FHIR Subscription routes, the token endpoint, the
JWKS and the operational endpoints); the FHIR API has its CapabilityStatement
instead. ``tests/e2e/test_openapi.py`` holds it to the
router both ways and runs schemathesis against the live service with it.

JSON, not YAML: the service reads it, and the standard library reads JSON.
The file names its server ``{CPIS_PUBLIC_BASE_URL}`` (an OpenAPI server
variable); served, that text is this deployment's public base URL wherever it
appears, so ``servers`` and the examples (a Subscription's topic) name the
service being read. No authentication: it says nothing a client could not learn
by calling the service.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

import orjson
from aiohttp import web

from cpis.web.state import SERVICES

DOCUMENT: Traversable = files("cpis.web") / "openapi.json"
BASE_URL_VARIABLE = "{CPIS_PUBLIC_BASE_URL}"


def _substituted(node: Any, base_url: str) -> Any:
    if isinstance(node, str):
        return node.replace(BASE_URL_VARIABLE, base_url)
    if isinstance(node, dict):
        return {key: _substituted(value, base_url) for key, value in node.items()}
    if isinstance(node, list):
        return [_substituted(value, base_url) for value in node]
    return node


def load_document(public_base_url: str, path: Traversable = DOCUMENT) -> dict[str, Any]:
    """The document as served for a deployment whose base URL is ``public_base_url``."""
    document: dict[str, Any] = _substituted(orjson.loads(path.read_bytes()), public_base_url)
    document["servers"] = [{"url": public_base_url, "description": "This deployment"}]
    return document


def add_routes(app: web.Application, *, prefix: str) -> None:
    # Read and rendered once, when the app is built: the answer never changes.
    body = orjson.dumps(load_document(app[SERVICES].settings.public_base_url))

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app.router.add_get(prefix + "/openapi.json", openapi, name="openapi")
