"""Notification bodies as sent: the FHIR bundles of ``cpis.fhir.subscriptions``,
serialised, and their detached signatures."""

from __future__ import annotations

import uuid

import orjson

from cpis.adapters.keys import KeyMaterial
from cpis.adapters.signing import DetachedSigner
from cpis.fhir.notifications import notification_bundle
from cpis.fhir.subscriptions import topic_url
from cpis.model.notifications import ControlKind, Delivery, NotificationEvent, Payload, Subscription
from cpis.ports.clock import Clock

_MESH_NAMESPACE = uuid.UUID("8f0c6c1e-2b8a-4f55-9d0e-6c1a3f1f7a10")


class Renderer:
    def __init__(self, *, base: str, keys: KeyMaterial, clock: Clock) -> None:
        self._base = base
        self._clock = clock
        self._signer = DetachedSigner(keys.signing_key)

    def _mesh_subscription(self, d: Delivery) -> Subscription:
        """MESH deliveries have no FHIR Subscription; describe the mailbox as one so the
        body has the same shape on every channel."""
        now = self._clock.now()
        return Subscription(
            id=uuid.uuid5(_MESH_NAMESPACE, f"{d.la_ods}:{d.target}"),
            la_ods=d.la_ods,
            client_id="mesh",
            status="active",
            topic=topic_url(self._base),
            reason="MESH delivery",
            endpoint=f"mesh:{d.target}",
            headers=(),
            payload="full-resource",
            heartbeat_seconds=None,
            timeout_seconds=10,
            end_at=None,
            events_since_start=0,
            last_sent_at=None,
            error=None,
            version=1,
            created_at=now,
            updated_at=now,
        )

    def event(self, d: Delivery, payload: Payload) -> bytes:
        sub = d.subscription if d.subscription is not None else self._mesh_subscription(d)
        occurred_at = d.created_at
        if d.event is not None:
            occurred_at = d.event.occurred_at
        elif d.nhs_number_change is not None and d.noted_at is not None:
            occurred_at = d.noted_at  # when the index check noticed the change
        event = NotificationEvent(
            number=d.event_number or 0,
            notification_id=d.notification_id,
            occurred_at=occurred_at,
            access_event=d.event,
            plan_ids=d.plan_ids,
            nhs_number_change=d.nhs_number_change,
        )
        bundle = notification_bundle(
            "event-notification",
            sub,
            [event],
            base=self._base,
            now=self._clock.now(),
            payload=payload,
        )
        return orjson.dumps(bundle)

    def control(self, sub: Subscription, kind: ControlKind) -> bytes:
        bundle = notification_bundle(kind, sub, base=self._base, now=self._clock.now())
        return orjson.dumps(bundle)

    def sign(self, body: bytes) -> str:
        return self._signer.sign_detached(body)
