"""ServiceError: one line, URL credentials redacted, whatever the scheme."""

from __future__ import annotations

from bot.service import ServiceError, redact


def test_messages_are_one_line_without_credentials() -> None:
    error = ServiceError("database postgresql+asyncpg://mood:hunter2@db.test/mood:\n"
                         "  connection refused (see https://u:pw@x.test/a?token=abc123xyz&b=1)")
    text = str(error)
    assert "\n" not in text and "  " not in text
    for secret in ("hunter2", "pw@", "abc123xyz"):
        assert secret not in text
    assert "postgresql+asyncpg://***@db.test/mood" in text and "b=1" in text


def test_redact_leaves_plain_text_alone() -> None:
    assert redact("Radiohead - Creep") == "Radiohead - Creep"
    assert redact("https://www.deezer.com/track/3135556") == (
        "https://www.deezer.com/track/3135556")
