"""Cloudflare's ``wrangler`` (pinned in package-lock.json here), installed once a session with
``npm ci --ignore-scripts`` into tests/cloudflare_clients/node_modules and run as a user runs it,
with the variables docs/how-to/cloudflare-tools.md gives.

No lifecycle scripts run: wrangler's ``workflows`` commands need no workerd (its binary still
comes from the registry, as an optional package wrangler loads at start-up: ``--omit=optional``
breaks wrangler). Without node, npm or the install the tests skip with one line, unless ``CI``
or ``WF_REQUIRE_WRANGLER=1`` is set (.ci/run): then they fail."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from bench.npm import node_and_npm, npm_ci

from tests.cloudflare_clients.conftest import Target

PROJECT = Path(__file__).resolve().parent
CLI = PROJECT / "node_modules" / "wrangler" / "bin" / "wrangler.js"

# wrangler's own traffic, off: usage metrics (sparrow.cloudflare.com, through any proxy), error
# reports (Sentry, on a crash), and the npm update check, which runs with the banner (a direct
# GET to the npm registry, ignoring proxies). The registry is also pointed at a closed loopback
# port, for the update check wrangler makes after a crash ("is there a newer version").
QUIET = {
    "WRANGLER_SEND_METRICS": "false",
    "WRANGLER_SEND_ERROR_REPORTS": "false",
    "WRANGLER_HIDE_BANNER": "true",
    "npm_registry": "http://127.0.0.1:9/",
}
# Passed through from the caller's environment; everything else (CLOUDFLARE_*, proxies, CI…)
# is left out, so what wrangler sees is what the test says.
KEPT = ("PATH", "LANG", "LC_ALL", "SYSTEMROOT")


def _required() -> bool:
    return os.environ.get("CI", "") not in ("", "0", "false") or os.environ.get(
        "WF_REQUIRE_WRANGLER", ""
    ) not in ("", "0")


@dataclass
class Wrangler:
    node: str
    home: Path  # HOME and working directory: wrangler's config, logs and caches go there

    def env(self, target: Target, *, quiet: bool = True) -> dict[str, str]:
        env = {k: os.environ[k] for k in KEPT if k in os.environ}
        env |= {
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "TMPDIR": str(self.home),  # the update check's cache lives in the temp folder
            "NO_COLOR": "1",
            "CLOUDFLARE_API_BASE_URL": target.base_url,
            "CLOUDFLARE_ACCOUNT_ID": target.account,
            "CLOUDFLARE_API_TOKEN": target.token,
        }
        return env | QUIET if quiet else env

    def run(self, target: Target, *args: str, env: dict[str, str] | None = None) -> str:
        """``wrangler <args>`` against ``target``: it must exit 0; its output (stdout)."""
        done = subprocess.run(
            [self.node, str(CLI), *args],
            cwd=self.home,
            env=env if env is not None else self.env(target),
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        shown = " ".join(args)
        assert done.returncode == 0, f"wrangler {shown}: exit {done.returncode}\n{done.stderr}"
        return done.stdout


def install(home: Path) -> Wrangler:
    """wrangler, installed if needed; skips (or fails when required) with the reason."""
    try:
        node, npm, _ = node_and_npm()
        npm_ci(PROJECT, npm, "--ignore-scripts")
        if not CLI.exists():
            raise RuntimeError(f"npm ci left no {CLI.relative_to(PROJECT.parent.parent)}")
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        reason = f"wrangler is not available ({exc})"
        if _required():
            pytest.fail(f"{reason}, and CI or WF_REQUIRE_WRANGLER is set", pytrace=False)
        pytest.skip(reason)
    home.mkdir(parents=True, exist_ok=True)
    return Wrangler(node, home)
