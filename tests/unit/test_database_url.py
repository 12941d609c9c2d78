"""A multi-host CPIS_DATABASE_URL is tried one host at a time (issue 13, item 2):
:func:`single_host_urls` splits it keeping everything else."""

from __future__ import annotations

import pytest

from cpis.adapters.postgres._connection import single_host_urls


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://cpis:pw@h1:5432,h2:5433,h3/cpis?target_session_attrs=read-write",
            [
                "postgresql://cpis:pw@h1:5432/cpis?target_session_attrs=read-write",
                "postgresql://cpis:pw@h2:5433/cpis?target_session_attrs=read-write",
                "postgresql://cpis:pw@h3/cpis?target_session_attrs=read-write",
            ],
        ),
        (
            "postgres://u@[::1]:5432,[fe80::2]:6432/db",
            ["postgres://u@[::1]:5432/db", "postgres://u@[fe80::2]:6432/db"],
        ),
        # No user, no database: the query follows the hosts directly.
        (
            "postgresql://h1,h2?sslmode=require",
            ["postgresql://h1?sslmode=require", "postgresql://h2?sslmode=require"],
        ),
        # A password holding an (unescaped) "@" or ",": the hosts follow the last "@".
        (
            "postgresql://u:a@b,c@h1,h2/db",
            ["postgresql://u:a@b,c@h1/db", "postgresql://u:a@b,c@h2/db"],
        ),
    ],
)
def test_a_multi_host_url_becomes_one_url_per_host(url: str, expected: list[str]) -> None:
    """Each host keeps its port; user, password, database and query are kept."""
    assert single_host_urls(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://cpis:pw@db.example:5432/cpis",
        "postgresql:///cpis?host=/var/run/postgresql",  # no host part: a socket
        "postgresql://u@[::1]/db",
        "not a url",
    ],
)
def test_any_other_url_is_left_alone(url: str) -> None:
    assert single_host_urls(url) == [url]
