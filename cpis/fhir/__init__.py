"""FHIR R4 for the health-facing API: plain-dict resource builders and search parsing.

The request path serialises plain dicts with orjson, so nothing here builds
pydantic models; the tests check every shape against ``fhir.resources`` and the
official FHIR R4 JSON schema instead.
"""
