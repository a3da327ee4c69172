"""Node.js packages installed from a committed lock file: bench/cloudflare (wrangler dev, for the
benchmark) and tests/cloudflare_clients (wrangler's ``workflows`` commands, for the tests)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

MIN_NODE = (20, 3)  # wrangler 4.86's minimum


def npm_installed(project: Path) -> bool:
    """Whether ``project``'s node_modules holds every package of its lock file, at the locked
    version. (Not by file times: a fresh checkout's lock file is newer than any install, and
    ``npm ci`` through a node_modules linked from another checkout empties that one.)"""
    lock = json.loads((project / "package-lock.json").read_text())
    for path, package in lock.get("packages", {}).items():
        if not path.startswith("node_modules/") or package.get("link"):
            continue
        manifest = project / path / "package.json"
        if not manifest.exists() and (package.get("optional") or package.get("peer")):
            continue  # another platform's build, or a peer nothing here asks for
        try:
            version = json.loads(manifest.read_text()).get("version")
        except (OSError, ValueError):
            return False
        if version != package.get("version"):
            return False
    return True


def node_and_npm() -> tuple[str, str, str]:
    """node's and npm's paths and node's version; RuntimeError with one line saying what is
    missing or too old."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise RuntimeError("node and npm are not installed")
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    match = re.match(r"v(\d+)\.(\d+)", version)
    if match is None or (int(match[1]), int(match[2])) < MIN_NODE:
        wanted, found = ".".join(map(str, MIN_NODE)), version or "none"
        raise RuntimeError(f"wrangler 4.86 needs Node.js {wanted} or newer, found {found}")
    return node, npm, version.lstrip("v")


def npm_ci(project: Path, npm: str, *extra: str) -> None:
    """``npm ci`` in ``project`` unless its node_modules already matches the lock file."""
    if npm_installed(project):
        return
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel", "error", *extra],
        cwd=project,
        check=True,
        timeout=900,
    )
