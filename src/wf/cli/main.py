"""Entry point of the ``wf`` command. The commands themselves arrive with issue 3."""

from __future__ import annotations

import sys

import wf


def main() -> None:
    if sys.argv[1:] in (["--version"], ["version"]):
        print(f"wf {wf.__version__}")
        return
    print("wf: the command line is not built yet; only `wf --version` works", file=sys.stderr)
    sys.exit(2)
