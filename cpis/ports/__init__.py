"""The ports: Protocols the use cases, the web layer and the workers depend on, one
module per aggregate. Adapters (``cpis/adapters``) implement them; ``app.py`` wires
real ones, and tests wire real ones too (PostgreSQL is always real) or small fakes
of their own. Every value they pass is a :mod:`cpis.model` value.

- :mod:`cpis.ports.clock`: ``Clock``, the time;
- :mod:`cpis.ports.vault`: ``Vault``, keyed hashing and sealing of personal data;
- :mod:`cpis.ports.plans`: ``PlanStore`` (plans, their LAs, the organisations
  that look them up) and ``Retention``;
- :mod:`cpis.ports.access`: ``AccessEventStore`` (the 25 visits),
  ``AuditLog`` and ``AuditSealer`` (the security audit log);
- :mod:`cpis.ports.uploads`: ``UploadStore`` (sequences and acknowledgements)
  and the MESH upload inbox: ``Mailbox``, ``Senders``, ``PollLock``;
- :mod:`cpis.ports.person_index`: ``PersonIndex`` and ``IndexCheckStore``;
- :mod:`cpis.ports.notifications`: the outbox's ``DeliveryStore`` and its
  channels, the LA's ``InboxStore`` and ``SubscriptionStore``;
- :mod:`cpis.ports.tokens`: ``TokenAuthority`` and ``ClientRegistry``;
- :mod:`cpis.ports.registry`: ``Registry``, what the operator registers (LAs,
  organisations, clients);
- :mod:`cpis.ports.database`: ``Transaction``, every store above that works in
  one transaction, and ``Database``, which opens them.

Import each from its module; this package re-exports nothing.
"""
