"""The dev server's app imports aiohttp and wf's engine, never the CLI's libraries."""

from __future__ import annotations

import subprocess
import sys


def test_api_does_not_import_typer_or_rich() -> None:
    code = (
        "import sys\n"
        "import wf.devserver.api, wf.devserver.security, wf.devserver.openapi\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'rich', 'click'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""
