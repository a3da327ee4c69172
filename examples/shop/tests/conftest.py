from pathlib import Path

import pytest
import workflows


@pytest.fixture(autouse=True)
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """The steps write orders.jsonl and outbox.jsonl beside workflows.py: in tests, they
    write into tmp_path instead (wf_env runs the module the tests imported)."""
    paths = {"orders": tmp_path / "orders.jsonl", "outbox": tmp_path / "outbox.jsonl"}
    monkeypatch.setattr(workflows, "ORDERS", paths["orders"])
    monkeypatch.setattr(workflows, "OUTBOX", paths["outbox"])
    return paths
