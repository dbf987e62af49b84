"""`.env.example` documents every setting (regenerate with `hft config example`)."""

from __future__ import annotations

from hft.commands.config import env_example
from hft.config import REPO_ROOT, Settings


def test_env_example_lists_every_setting_and_is_current() -> None:
    text = (REPO_ROOT / ".env.example").read_text()
    for name in Settings.model_fields:
        assert f"HFT_{name.upper()}=" in text, f"HFT_{name.upper()} missing from .env.example"
    assert text == env_example(), ".env.example is stale: run `hft config example`"
