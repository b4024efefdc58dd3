"""Headless Chromium for the report tests: the DOM after plotly has drawn (``--dump-dom``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

CHROMIUM = shutil.which("chromium")
SKIP_REASON = "headless Chromium not installed (apt-get install chromium)"


def rendered_dom(page: Path, profile: Path) -> str:
    """The page's DOM after 5 s of virtual time, in a throw-away profile folder."""
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        page.as_uri(),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
