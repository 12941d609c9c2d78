"""Every error the service raises on purpose.

    CpisError                         base; ``status`` and ``code`` map to an OperationOutcome
    ├── InvalidSearch                 400 INVALID_SEARCH_DATA  (bad NHS number, bad parameter)
    ├── PreconditionFailed            400 PRECONDITION_FAILED  (required header missing/malformed)
    ├── InvalidRequest                400/422 INVALID_REQUEST   (bad body; names the field)
    ├── Unauthenticated               401 ACCESS_DENIED, issue code ``login``
    ├── Forbidden                     403 ACCESS_DENIED
    ├── NotFound                      404 RESOURCE_NOT_FOUND
    ├── MethodNotAllowed              405 METHOD_NOT_ALLOWED
    ├── NotAcceptable                 406 NOT_ACCEPTABLE
    ├── Conflict                      409 CONFLICT
    ├── VersionMismatch               412 PRECONDITION_FAILED  (If-Match does not match)
    ├── PayloadTooLarge               413 PAYLOAD_TOO_LARGE
    ├── UnsupportedMediaType          415 UNSUPPORTED_MEDIA_TYPE
    ├── RateLimited                   429 TOO_MANY_REQUESTS
    └── Unavailable                   503 SERVICE_UNAVAILABLE  (database unreachable; Retry-After)
        └── PersonIndexUnavailable    503 (the person index cannot answer: uploads get CPF05)

Messages are shown to callers as OperationOutcome diagnostics, so they must
never contain personal data: name the field or header, never echo its value.
"""

from __future__ import annotations


class CpisError(Exception):
    status = 500
    code = "INTERNAL_SERVER_ERROR"
    issue_code = "exception"
    display = "Internal server error"

    def __init__(self, message: str, *, expression: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.expression = expression


class InvalidSearch(CpisError):
    status = 400
    code = "INVALID_SEARCH_DATA"
    issue_code = "invalid"
    display = "Invalid search data"


class PreconditionFailed(CpisError):
    status = 400
    code = "PRECONDITION_FAILED"
    issue_code = "required"
    display = "Precondition failed"


class InvalidRequest(CpisError):
    status = 422
    code = "INVALID_VALUE"
    issue_code = "invalid"
    display = "Invalid value"

    def __init__(self, message: str, *, expression: str | None = None, status: int = 422) -> None:
        super().__init__(message, expression=expression)
        self.status = status


class Unauthenticated(CpisError):
    status = 401
    code = "ACCESS_DENIED"
    issue_code = "login"
    display = "Access denied"


class Forbidden(CpisError):
    status = 403
    code = "ACCESS_DENIED"
    issue_code = "forbidden"
    display = "Access denied"


class NotFound(CpisError):
    status = 404
    code = "RESOURCE_NOT_FOUND"
    issue_code = "not-found"
    display = "Resource not found"


class MethodNotAllowed(CpisError):
    status = 405
    code = "METHOD_NOT_ALLOWED"
    issue_code = "not-supported"
    display = "Method not allowed"


class NotAcceptable(CpisError):
    status = 406
    code = "NOT_ACCEPTABLE"
    issue_code = "not-supported"
    display = "Not acceptable"


class Conflict(CpisError):
    status = 409
    code = "CONFLICT"
    issue_code = "conflict"
    display = "Conflict"


class VersionMismatch(CpisError):
    status = 412
    code = "PRECONDITION_FAILED"
    issue_code = "conflict"
    display = "Precondition failed"


class PayloadTooLarge(CpisError):
    status = 413
    code = "PAYLOAD_TOO_LARGE"
    issue_code = "too-long"
    display = "Payload too large"


class UnsupportedMediaType(CpisError):
    status = 415
    code = "UNSUPPORTED_MEDIA_TYPE"
    issue_code = "not-supported"
    display = "Unsupported media type"


class RateLimited(CpisError):
    status = 429
    code = "TOO_MANY_REQUESTS"
    issue_code = "throttled"
    display = "Too many requests"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(CpisError):
    status = 503
    code = "SERVICE_UNAVAILABLE"
    issue_code = "transient"
    display = "Service unavailable"

    def __init__(self, message: str, *, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PersonIndexUnavailable(Unavailable):
    """The person index (PDS or the local index) could not answer; try again later."""
