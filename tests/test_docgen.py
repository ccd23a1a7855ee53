"""The committed configuration reference matches the schema (wsfleet.docgen)."""

from __future__ import annotations

from pathlib import Path

from wsfleet.config import schema_sections
from wsfleet.docgen import render_config_reference

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "reference" / "config.md"


def test_committed_reference_is_in_sync_with_the_schema() -> None:
    committed = REFERENCE.read_text(encoding="utf-8") if REFERENCE.exists() else ""
    assert committed == render_config_reference(), (
        "docs/reference/config.md is out of date with src/wsfleet/settings.py; run `make docs`"
    )


def test_reference_documents_every_option() -> None:
    text = render_config_reference()
    for section in schema_sections():
        for spec in section.fields:
            assert f"| `{spec.name}` |" in text, spec.path
            if spec.env:
                assert f"`{spec.env}`" in text
    assert '| `log_format` | string | `"json"` | `json`, `text` |' in text
    assert "| `port` | integer | `8000` | 0 to 65535 |" in text
    assert "| `ping_interval` | duration | `25s` | ≥ 1s |" in text
    assert "wsfleet check-config" in text
