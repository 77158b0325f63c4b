"""`.streamlit/config.toml` (issue 12): the Streamlit 1.67 server options that must stay off for
safety are set there explicitly (so a changed default in an upgrade cannot turn one on) and are the
effective configuration Streamlit reads from the project directory (streamlit.config.get_option)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from streamlit import config

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / ".streamlit" / "config.toml"

# option -> the value it must have (README: Security)
REQUIRED: dict[str, Any] = {
    "server.enableAgentApi": False,  # no non-browser client driving the app (agent API / MCP)
    "server.trustedUserHeaders": {},  # no identity taken from request headers
    "server.enableCORS": True,
    "server.corsAllowedOrigins": [],
    "server.enableXsrfProtection": True,
    "server.xsrfCookieSameSite": "lax",
    "server.enableStaticServing": False,
    "global.developmentMode": False,
    "client.showErrorDetails": "none",
    "browser.gatherUsageStats": False,
    "server.address": "localhost",
}


@pytest.fixture
def project_config(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Streamlit's options as `streamlit run` from the project directory reads them, with no
    STREAMLIT_* environment variable; the process's own options are read again afterwards."""
    for name in list(os.environ):
        if name.startswith("STREAMLIT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(ROOT)
    config.get_config_options(force_reparse=True)
    yield
    monkeypatch.undo()
    config.get_config_options(force_reparse=True)


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_safety_option_is_set_in_the_project_config(project_config: None, name: str) -> None:
    # The option exists in this Streamlit (get_option raises for an unknown name) ...
    assert config.get_option(name) == REQUIRED[name], name
    # ... and its value comes from the project's file, not from Streamlit's default.
    assert Path(config.get_where_defined(name)) == CONFIG, (name, config.get_where_defined(name))
