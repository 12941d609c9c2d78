"""Every error the service raises on purpose, in one tree.

    CpisError                         base; ``status`` and ``code`` map to an OperationOutcome
    │                                 (500 FAILURE_TO_PROCESS_MESSAGE unless a subclass says)
    ├── InvalidSearch                 400 INVALID_SEARCH_DATA       (bad NHS number, parameter)
    ├── PreconditionFailed            400 PRECONDITION_FAILED       (required header missing/bad)
    ├── InvalidRequest                400/422 INVALID_VALUE         (bad body; names the field)
    ├── InvalidGrant                  400 INVALID_VALUE             (token exchange: bad ID token)
    ├── SignInFailed                  400 (web sign-in: the provider's answer is not acceptable)
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
    ├── Unavailable                   503 UNABLE_TO_CALL_SERVICE    (unreachable; Retry-After)
    │   └── PersonIndexUnavailable    503 (the person index cannot answer: uploads get CPF05)
    ├── VaultError                    500 (a sealed value cannot be opened: wrong keys or data)
    ├── RemoteError                   another system did not do what was asked; ``retryable``
    │   ├── DeliveryFailed            a notification channel could not deliver (outbox retries)
    │   └── MeshError                 a MESH request failed (``mesh_status``: MESH's answer)
    ├── StartupError                  a command cannot start (data directory, keys, database, port)
    │   └── SettingsError             a ``CPIS_*`` setting or a key file is wrong (a ValueError)
    │       └── MissingKeys           a key file is not there and this command may not make one
    ├── OdsCodeError                  not an ODS code of the kind wanted (a ValueError)
    ├── PhoneNumberError              not a UK number a clinician can ring (a ValueError)
    ├── LaDetailsError                an LA's details cannot be stored (a ValueError)
    ├── IndexFileRejected             a person index load file cannot be loaded (``errors``)
    ├── IndexSearchTimedOut           one person index search ran out of time (not an outage:
    │                                 that record is "not searched", nothing is retried)
    └── TraceFileError                a trace file cannot be read at all

The errors with a status of their own, down to ``PersonIndexUnavailable``, are
what routes raise: the error middleware answers each with its status and code.
``VaultError`` is a 500 wherever it happens (the keys or the data are wrong).
The rest are raised where nothing answers HTTP (the workers, the command line,
the adapters under them): the outbox dispatcher
retries or parks a delivery on :class:`DeliveryFailed`, the MESH upload worker
waits for its next poll on :class:`MeshError`, and the command line prints
any of them as one line and exits non-zero. Should one ever reach a route,
it is a 500 like any other failure. Those that were ``ValueError``s before
they joined the tree still are, so a caller that catches ``ValueError`` still
catches them.

The codes are UK Core's ``UKCore-SpineErrorOrWarningCode`` (version 1.0.0, a
complete code system), with its displays, as the CP-IS producer guide's error
page uses them: 400 ``invalid`` INVALID_SEARCH_DATA, 400 ``invalid``
PRECONDITION_FAILED, 403 ``forbidden`` ACCESS_DENIED. For the statuses that
page does not list, the nearest code of that system is used (it has no code
for "not acceptable", "too large" or "too many requests"): the HTTP status and
the FHIR issue code say exactly what happened; an unexpected failure is 500
FAILURE_TO_PROCESS_MESSAGE.

Messages are shown to callers as OperationOutcome diagnostics, printed by the
command line and kept in logged tracebacks (:mod:`cpis.log`), so they must
never contain personal data: name the field, header, line or column, never
echo its value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cpis.model.persons import FileError


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


class SignInFailed(CpisError):
    """A web sign-in that cannot be completed: the provider refused, its answer does
    not verify, or the person has no role here. The message is shown to the person
    (a web page), so it says what to do, never what the claims held."""

    status = 400
    code = "INVALID_VALUE"
    issue_code = "login"
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


class IndexSearchTimedOut(CpisError):
    """One person index search did not finish within the statement timeout.

    Not :class:`PersonIndexUnavailable`: the index answered others, and the
    same search again would take as long (issue 11). Tracing reports the record
    as not searched, and an upload refuses that one record (CPR07), so the rest
    of the file is decided as usual.
    """


class VaultError(CpisError):
    """A sealed value cannot be opened: unknown key id, damaged, or moved between columns.

    A 500 to the caller: it means the database or the keys are wrong, never
    that the request was. The message never includes the value.
    """


class RemoteError(CpisError):
    """Another system (an LA's endpoint, MESH) did not do what was asked.

    ``reason`` says what failed, for an operator, without personal data;
    ``retryable`` False means asking again cannot help.
    """

    def __init__(self, reason: str, *, retryable: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class DeliveryFailed(RemoteError):
    """A channel (rest-hook, MESH) could not deliver a notification; the dispatcher
    backs off and tries again, or parks it as dead when ``retryable`` is False."""


class MeshError(RemoteError):
    """A MESH request failed.

    ``mesh_status`` is MESH's HTTP status, or ``None`` when MESH never answered
    (connection refused, reset, timed out). ``retryable`` is True when the same
    request may succeed later: no answer, 5xx, or 429; any other 4xx means the
    request itself is wrong (bad credentials, unknown recipient, gone message).

    ``mesh_code`` and ``mesh_description`` are MESH's own error code and text,
    when it sent any; they are kept out of ``str(error)`` because a server's
    error text may echo what was sent, and what is sent may be personal data.
    """

    def __init__(
        self,
        reason: str,
        *,
        mesh_status: int | None = None,
        retryable: bool = True,
        mesh_code: str | None = None,
        mesh_description: str | None = None,
    ) -> None:
        super().__init__(reason, retryable=retryable)
        # Not ``status``: that is the HTTP answer every CpisError maps to.
        self.mesh_status = mesh_status
        self.mesh_code = mesh_code
        self.mesh_description = mesh_description


class StartupError(CpisError):
    """A command cannot start; the message is the one line the operator reads (what is
    wrong, where, and what to do), and carries no secret and no personal data."""


class SettingsError(StartupError, ValueError):
    """A ``CPIS_*`` setting (or a key file one names) is not usable; the message names
    the variable or file, never a secret."""


class MissingKeys(SettingsError):
    """A key file is not there and this command may not make one (issue 9, item 12)."""


class OdsCodeError(CpisError, ValueError):
    """The text does not have the shape of an ODS code of the kind wanted."""


class PhoneNumberError(CpisError, ValueError):
    """The text is not a UK number a clinician can ring; the message says why
    (and does not repeat the number)."""


class LaDetailsError(CpisError, ValueError):
    """A detail of an LA cannot be stored; the message names which and why."""


class IndexFileRejected(CpisError):
    """A person index load file cannot be loaded; nothing of it was. ``errors`` says
    where and why (line and column, never a value)."""

    def __init__(self, errors: tuple[FileError, ...], *, truncated: bool = False) -> None:
        self.errors = errors
        self.truncated = truncated
        more = f" (the first {len(errors)} shown)" if truncated else ""
        head = "; ".join(str(e) for e in errors[:3])
        super().__init__(f"person index file rejected, {len(errors)} error(s){more}: {head}")


class TraceFileError(CpisError):
    """A trace file cannot be read at all; the message names where, never a value."""
