"""Every error the service raises on purpose.

    CpisError                         base; ``status`` and ``code`` map to an OperationOutcome
    ├── InvalidSearch                 400 INVALID_SEARCH_DATA       (bad NHS number, parameter)
    ├── PreconditionFailed            400 PRECONDITION_FAILED       (required header missing/bad)
    ├── InvalidRequest                400/422 INVALID_VALUE         (bad body; names the field)
    ├── InvalidGrant                  400 INVALID_VALUE             (token exchange: bad ID token)
    ├── Unauthenticated               401 ACCESS_DENIED, issue code ``login``
    ├── Forbidden                     403 ACCESS_DENIED
    ├── NotFound                      404 RESOURCE_NOT_FOUND
    ├── MethodNotAllowed              405 UNSUPPORTED_SERVICE
    ├── NotAcceptable                 406 UNSUPPORTED_VALUE         (a format not served)
    ├── RequestTimeout                408 FAILURE_TO_PROCESS_MESSAGE (the body came too slowly)
    ├── VersionMismatch               412 RESOURCE_VERSION_MISMATCH (If-Match does not match)
    ├── PayloadTooLarge               413 VALIDATION_ERROR, issue code ``too-long``
    ├── UnsupportedMediaType          415 UNSUPPORTED_VALUE         (a body not in JSON)
    ├── RateLimited                   429 UNABLE_TO_CALL_SERVICE, issue code ``throttled``
    └── Unavailable                   503 UNABLE_TO_CALL_SERVICE    (unreachable; Retry-After)
        └── PersonIndexUnavailable    503 (the person index cannot answer: uploads get CPF05)

Outside that tree, :class:`StartupError`: a command cannot start (no data
directory, keys that are not the database's, a database that cannot be
reached, a port in use). It never reaches HTTP: the command line prints its
message as one line and exits non-zero.

The codes are UK Core's ``UKCore-SpineErrorOrWarningCode`` (version 1.0.0, a
complete code system), with its displays, as the CP-IS producer guide's error
page uses them: 400 ``invalid`` INVALID_SEARCH_DATA, 400 ``invalid``
PRECONDITION_FAILED, 403 ``forbidden`` ACCESS_DENIED. For the statuses that
page does not list, the nearest code of that system is used (it has no code
for "not acceptable", "too large" or "too many requests"): the HTTP status and
the FHIR issue code say exactly what happened; an unexpected failure is 500
FAILURE_TO_PROCESS_MESSAGE.

Messages are shown to callers as OperationOutcome diagnostics, so they must
never contain personal data: name the field or header, never echo its value.
"""

from __future__ import annotations


class CpisError(Exception):
    status = 500
    code = "FAILURE_TO_PROCESS_MESSAGE"
    issue_code = "exception"
    display = "Failure to process message"

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
    issue_code = "invalid"
    display = "Precondition failed"


class InvalidRequest(CpisError):
    status = 422
    code = "INVALID_VALUE"
    issue_code = "invalid"
    display = "Invalid value"

    def __init__(self, message: str, *, expression: str | None = None, status: int = 422) -> None:
        super().__init__(message, expression=expression)
        self.status = status


class InvalidGrant(CpisError):
    """A subject token offered for exchange is not acceptable (RFC 6749 ``invalid_grant``);
    the token endpoint answers it in OAuth's error shape, not as an OperationOutcome."""

    status = 400
    code = "INVALID_VALUE"
    issue_code = "invalid"
    display = "Invalid value"


class Unauthenticated(CpisError):
    status = 401
    code = "ACCESS_DENIED"
    issue_code = "login"
    display = "Access has been denied to process this request"


class Forbidden(CpisError):
    status = 403
    code = "ACCESS_DENIED"
    issue_code = "forbidden"
    display = "Access has been denied to process this request"


class NotFound(CpisError):
    status = 404
    code = "RESOURCE_NOT_FOUND"
    issue_code = "not-found"
    display = "Resource not found"


class MethodNotAllowed(CpisError):
    status = 405
    code = "UNSUPPORTED_SERVICE"
    issue_code = "not-supported"
    display = "Unsupported service"


class NotAcceptable(CpisError):
    status = 406
    code = "UNSUPPORTED_VALUE"
    issue_code = "not-supported"
    display = "Unsupported value"


class RequestTimeout(CpisError):
    """The request's body did not arrive in time; the connection is closed after the answer."""

    status = 408
    code = "FAILURE_TO_PROCESS_MESSAGE"
    issue_code = "timeout"
    display = "Failure to process message"


class VersionMismatch(CpisError):
    status = 412
    code = "RESOURCE_VERSION_MISMATCH"
    issue_code = "conflict"
    display = "Resource version mismatch"


class PayloadTooLarge(CpisError):
    status = 413
    code = "VALIDATION_ERROR"
    issue_code = "too-long"
    display = "Validation error"


class UnsupportedMediaType(CpisError):
    status = 415
    code = "UNSUPPORTED_VALUE"
    issue_code = "not-supported"
    display = "Unsupported value"


class RateLimited(CpisError):
    status = 429
    code = "UNABLE_TO_CALL_SERVICE"
    issue_code = "throttled"
    display = "Unable to call service"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(CpisError):
    status = 503
    code = "UNABLE_TO_CALL_SERVICE"
    issue_code = "transient"
    display = "Unable to call service"

    def __init__(self, message: str, *, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PersonIndexUnavailable(Unavailable):
    """The person index (PDS or the local index) could not answer; try again later."""


class StartupError(Exception):
    """A command cannot start; the message is the one line the operator reads (what is
    wrong, where, and what to do), and carries no secret and no personal data."""
