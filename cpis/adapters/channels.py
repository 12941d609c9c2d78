"""The delivery channels the dispatcher sends through: rest-hook and MESH.

Composes the HTTP and MESH adapters with the notification renderer and the
body signer that ``app.py`` gives it; translates their failures into
:class:`~cpis.errors.DeliveryFailed` with a reason an operator
can act on and no personal data.
"""

from __future__ import annotations

from collections.abc import Callable

from cpis.adapters.mesh import MeshClient
from cpis.adapters.signing import SIGNATURE_HEADER
from cpis.adapters.webhook import WebhookSender
from cpis.errors import DeliveryFailed, MeshError
from cpis.model.notifications import ControlKind, Delivery, Payload, Subscription

RenderEvent = Callable[[Delivery, Payload], bytes]  # (delivery, payload content) -> body
RenderControl = Callable[[Subscription, ControlKind], bytes]  # (subscription, kind) -> body
Sign = Callable[[bytes], str]

# The MESH subject line per outbox kind: what an LA's mailbox client shows before
# the body is parsed. Never anything about the child.
_MESH_SUBJECTS = {
    "access": "CP-IS attendance notification",
    "nhs-number-inactive": "CP-IS NHS number inactive notification",
}


def _channel_headers(sub: Subscription) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw in sub.headers:
        name, sep, value = raw.partition(":")
        if sep and name.strip():
            headers[name.strip()] = value.strip()
    return headers


class Channels:
    def __init__(
        self,
        *,
        webhook: WebhookSender,
        mesh: MeshClient | None,
        render_event: RenderEvent,
        render_control: RenderControl,
        sign: Sign,
    ) -> None:
        self._webhook = webhook
        self._mesh = mesh
        self._render_event = render_event
        self._render_control = render_control
        self._sign = sign

    async def _post(self, sub: Subscription, body: bytes) -> None:
        headers = _channel_headers(sub)
        headers["Content-Type"] = "application/fhir+json"
        headers[SIGNATURE_HEADER] = self._sign(body)
        await self._webhook.post(
            sub.endpoint, body, headers=headers, timeout_s=float(sub.timeout_seconds)
        )

    async def rest_hook(self, delivery: Delivery) -> None:
        sub = delivery.subscription
        if sub is None or sub.status not in ("active", "error"):
            raise DeliveryFailed("the subscription is off or gone", retryable=False)
        body = self._render_event(delivery, sub.payload)
        await self._post(sub, body)

    async def control(self, sub: Subscription, kind: ControlKind) -> None:
        await self._post(sub, self._render_control(sub, kind))

    async def mesh(self, delivery: Delivery) -> None:
        if self._mesh is None:
            raise DeliveryFailed("this service has no MESH mailbox configured (CPIS_MESH_*)")
        body = self._render_event(delivery, "full-resource")
        try:
            await self._mesh.send_message(
                recipient=delivery.target,
                workflow_id=delivery.mesh_workflow_id or "CPIS_NOTIFICATION",
                body=body,
                subject=_MESH_SUBJECTS.get(delivery.kind, _MESH_SUBJECTS["access"]),
                local_id=str(delivery.notification_id),
                content_type="application/fhir+json",
            )
        except MeshError as exc:
            raise DeliveryFailed(f"MESH: {exc}", retryable=exc.retryable) from None

    async def close(self) -> None:
        await self._webhook.close()
        if self._mesh is not None:
            await self._mesh.close()
