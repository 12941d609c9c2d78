"""``cpis/web/openapi.json`` on its own: valid OpenAPI 3.1, and one source for each rule.

The router check and the fuzzing are in ``tests/e2e/test_openapi*.py``; here,
what needs no server: the document is valid, every operation is named and
answers errors as the service does, and the upload file schema and the plan
body are exactly those of ``schemas/upload.schema.json``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import schemathesis

from cpis.formats.plan_fields import PLAN_FIELDS
from cpis.web.openapi import BASE_URL_VARIABLE, DOCUMENT, load_document

UPLOAD_SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "upload.schema.json"
# upload.schema.json's $defs, and the name each has among the document's components.
UPLOAD_DEFS = {
    "planId": "PlanId",
    "date": "NullableDate",
    "name": "NullableName",
    "upsert": "UploadUpsert",
    "delete": "UploadDelete",
}
METHODS = ("get", "put", "post", "delete", "patch")


def raw() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    return document


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def components_refs(node: Any) -> Any:
    """``node`` with upload.schema.json's ``#/$defs/x`` refs pointed at the components."""
    if isinstance(node, dict):
        out = {k: components_refs(v) for k, v in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            out["$ref"] = "#/components/schemas/" + UPLOAD_DEFS[ref.removeprefix("#/$defs/")]
        return out
    if isinstance(node, list):
        return [components_refs(v) for v in node]
    return node


def undescribed(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        name: {k: v for k, v in rule.items() if k != "description"}
        for name, rule in properties.items()
    }


def test_the_file_and_the_served_document_are_valid_openapi_3_1() -> None:
    """Both the file (server URL a variable) and what is served (a concrete URL) pass
    OpenAPI 3.1's own schema."""
    schemathesis.openapi.from_dict(raw()).validate()
    served = load_document("https://cpis.example.nhs.uk/cpis")
    schemathesis.openapi.from_dict(served).validate()
    assert served["servers"] == [
        {"url": "https://cpis.example.nhs.uk/cpis", "description": "This deployment"}
    ]
    assert BASE_URL_VARIABLE not in json.dumps(served)


def test_every_operation_is_named_and_says_how_it_answers() -> None:
    """Unique operationIds; every response has a description and, but for 204, a media
    type; every error is an OperationOutcome except the token endpoint's (RFC 6749) and an
    upload refused whole (its acknowledgement)."""
    document = raw()
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids)) == 31
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            response = resolve(document, response)
            assert response["description"], (method, path, status)
            assert "TraceID" in response["headers"], (method, path, status)
            if status == "204":
                assert "content" not in response
                continue
            media = set(response["content"])
            if int(status) < 400:
                continue
            if operation["operationId"] == "oauth_token" and status in ("400", "401"):
                assert media == {"application/json"}
            elif operation["operationId"] == "la_upload" and status in ("400", "409", "503"):
                assert "application/json" in media
            elif operation["operationId"] == "readyz":
                assert media == {"application/json"}  # for probes, not FHIR clients
            else:
                assert media == {"application/fhir+json"}, (method, path, status)
                schema = response["content"]["application/fhir+json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/OperationOutcome"}


def test_the_upload_schema_is_schemas_upload_schema_json() -> None:
    """The JSON upload body and its records are upload.schema.json's, word for word, with
    its $defs as components: the file format has one definition."""
    upload = json.loads(UPLOAD_SCHEMA.read_text(encoding="utf-8"))
    schemas = raw()["components"]["schemas"]
    top = {k: v for k, v in upload.items() if k not in ("$schema", "$id", "$defs")}
    assert schemas["UploadFile"] == components_refs(top)
    for name, component in UPLOAD_DEFS.items():
        assert schemas[component] == components_refs(upload["$defs"][name]), name


def test_the_plan_body_is_an_upsert_record_without_action_and_plan_id() -> None:
    """PUT /la/v1/plans/{plan_id} takes an upload upsert's fields and rules (one rule set
    for both ways in, cpis.formats.plan_fields.check_plan_fields); only descriptions differ."""
    schemas = raw()["components"]["schemas"]
    upsert = copy.deepcopy(schemas["UploadUpsert"])
    for key in ("action", "plan_id"):
        del upsert["properties"][key]
        upsert["required"].remove(key)
    body = schemas["PlanFields"]
    assert undescribed(body["properties"]) == undescribed(upsert["properties"])
    assert body["required"] == upsert["required"]
    assert body["additionalProperties"] is False
    assert tuple(body["properties"]) == PLAN_FIELDS
