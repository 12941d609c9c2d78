"""The service navigation: which pages each role has, in order. Each page module
adds its own (:func:`offer`); the first a role has is its home after sign-in."""

from __future__ import annotations

from typing import Any

from cpis.model.web import WebRole, WebSession

_NAV: dict[WebRole, list[tuple[str, str]]] = {role: [] for role in WebRole}


def offer(label: str, path: str, *roles: WebRole) -> None:
    """Put a page (``path`` under the base URL) in the navigation of ``roles``."""
    for role in roles:
        if (label, path) not in _NAV[role]:
            _NAV[role].append((label, path))


def home_of(role: WebRole) -> str:
    return _NAV[role][0][1] if _NAV[role] else "/"


def nav_for(session: WebSession | None, current: str) -> dict[str, Any]:
    """The template context for the navigation of whoever is signed in."""
    items = list(_NAV[session.user.role]) if session is not None else []
    return {"nav": items, "current": current}
