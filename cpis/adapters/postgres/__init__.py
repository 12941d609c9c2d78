"""PostgreSQL, through asyncpg: the one package that imports it (an import-linter
contract in pyproject.toml keeps it so).

Rows (``asyncpg.Record``) never leave it: each store here turns them into the
domain's values (:mod:`cpis.model`) before it returns. Personal data is hashed
and sealed here, on its way in, through the :class:`~cpis.ports.vault.Vault`;
callers pass and receive plain domain values. Connection failures are
translated to :class:`cpis.errors.Unavailable` at this edge, so the web layer
answers 503 with Retry-After instead of 500.

What is exported below is the whole surface; the modules behind it are private,
one concern each:

- ``_connection``: the pool and its connections' set-up, which failures mean
  "unavailable", and the bases the stores share;
- ``_schema``: migrations and SQL functions;
- ``_database``: :class:`PgDatabase` and :class:`PgTransaction`, the
  :class:`~cpis.ports.database.Database` port, made of ``_plans``,
  ``_plan_bulk``, ``_access_events``, ``_uploads``, ``_reference`` and
  ``_audit_log``'s append;
- ``_audit_log`` and ``_audit_check``: the audit log's lines, and its seals made
  and checked (:class:`PgAuditLog`; the format is :mod:`cpis.adapters.audit_log`'s);
- ``_at_rest``: how staff data and sealed text are kept;
- the other stores, each over the pool: ``_outbox``, ``_inbox`` and
  ``_subscriptions`` (notifications), ``_index_check``, ``_person_index`` (the
  local person index), ``_mesh_inbox``, ``_retention``, and ``_service_state``
  (what every process on one database must agree on), and ``_web_sessions``
  (people signed in to the web pages, and their organisations' providers).
"""

from cpis.adapters.postgres._at_rest import (
    Viewer,
    open_user_id,
    open_viewer,
    practitioner_role_id,
    seal_viewer,
    user_key,
)
from cpis.adapters.postgres._audit_log import PgAuditLog
from cpis.adapters.postgres._connection import Pool, create_pool, open_pool
from cpis.adapters.postgres._database import PgDatabase, PgTransaction
from cpis.adapters.postgres._index_check import PgIndexCheckStore, inactive_notification_id
from cpis.adapters.postgres._mesh_inbox import PgMeshSenders, PgPollLock
from cpis.adapters.postgres._outbox import PgOutboxStore
from cpis.adapters.postgres._person_index import (
    LocalPersonIndex,
    load_person_index,
    local_index_size,
)
from cpis.adapters.postgres._retention import PgRetention
from cpis.adapters.postgres._schema import migrate
from cpis.adapters.postgres._service_state import (
    agree_on_keys,
    keys_recorded,
    record_person_index,
    recorded_person_index,
)
from cpis.adapters.postgres._subscriptions import PgSubscriptionStore
from cpis.adapters.postgres._web_sessions import PgWebSessions

__all__ = [
    "LocalPersonIndex",
    "PgAuditLog",
    "PgDatabase",
    "PgIndexCheckStore",
    "PgMeshSenders",
    "PgOutboxStore",
    "PgPollLock",
    "PgRetention",
    "PgSubscriptionStore",
    "PgTransaction",
    "PgWebSessions",
    "Pool",
    "Viewer",
    "agree_on_keys",
    "create_pool",
    "inactive_notification_id",
    "keys_recorded",
    "load_person_index",
    "local_index_size",
    "migrate",
    "open_pool",
    "open_user_id",
    "open_viewer",
    "practitioner_role_id",
    "record_person_index",
    "recorded_person_index",
    "seal_viewer",
    "user_key",
]
