"""`cpis la add` without `--repeat-window-hours`: the LA gets the default window named
in cpis.rules, the only place it is declared (the table has no default of its own)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpis import cli, rules


def test_an_la_added_without_a_window_gets_the_rules_default(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With the rule's default changed to 6 hours, `la add` stores 6: `la update` (which
    shows the LA as stored) says so."""
    monkeypatch.setenv("CPIS_DATABASE_URL", database_url)
    monkeypatch.setenv("CPIS_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(rules, "DEFAULT_NOTIFY_REPEAT_HOURS", 6)
    # Left unconfigured: configured, structlog caches module loggers bound to this
    # test's captured stderr, which later tests would then write to once it is closed.
    monkeypatch.setattr(cli, "configure_logging", lambda **_: None)
    main = cli.main
    assert main(["migrate"]) == 0  # this database's keys, in tmp_path
    add = ["--ods", "XLA07", "--name", "Seventhshire"]
    phones = ["--office-phone", "01632 960007", "--edt-phone", "01632 960107"]
    assert main(["la", "add", *add, *phones]) == 0
    capsys.readouterr()
    assert main(["la", "update", "--ods", "XLA07", "--name", "Seventhshire Council"]) == 0
    assert "repeat window 6 h" in capsys.readouterr().out
