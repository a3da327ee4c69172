"""Which Chromium the browser suite drives: Debian's, never one Playwright downloads.

``WF_CHROMIUM`` names an executable; else ``chromium-headless-shell`` (fastest to start) or
``chromium`` on PATH. Without one the browser tests are skipped, unless ``WF_REQUIRE_BROWSER=1``
(CI, through .ci/run, which installs the package), where they fail.
"""

from __future__ import annotations

import os
import shutil

SKIP_REASON = "no Chromium for the browser tests"
HOW_TO = "apt-get install chromium-headless-shell, or set WF_CHROMIUM=/path/to/chromium"


def required() -> bool:
    return os.environ.get("WF_REQUIRE_BROWSER", "") not in ("", "0")


def find_chromium() -> str | None:
    named = os.environ.get("WF_CHROMIUM", "").strip()
    if named:
        return shutil.which(named)  # a path or a name; None when it is not an executable
    return shutil.which("chromium-headless-shell") or shutil.which("chromium")
