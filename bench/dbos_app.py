"""W2-http's DBOS server: a FastAPI app served by uvicorn, the way DBOS's documentation serves
workflows over HTTP. Run with bench/.venv-dbos's Python by ``bench.dbos_side W2-http``.

    POST /instances       starts the three-step workflow; answers {"id": ...}
    GET  /instances/{id}  answers {"status": "PENDING" | "SUCCESS" | "ERROR" | ...}

The endpoints are plain ``def`` (FastAPI runs them on its thread pool), and the workflow is the
``sync`` style, DBOS's faster one in W2.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any

from bench import dbos_side


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dbos_app")
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--durability", choices=sorted(dbos_side.PRAGMAS), default="default")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database", help="postgresql://...: DBOS's system database")
    args = parser.parse_args(argv)
    fastapi: Any = importlib.import_module("fastapi")
    uvicorn: Any = importlib.import_module("uvicorn")
    dbos_side.configure(args.db, args.durability, url=args.database)
    dbos = dbos_side.DBOS
    three = dbos_side.W["three_sync"]
    app = fastapi.FastAPI()

    def health() -> dict[str, str]:
        return {"status": "ok"}

    def create() -> dict[str, str]:
        return {"id": dbos.start_workflow(three).workflow_id}

    def get(instance_id: str) -> dict[str, Any]:
        status = dbos.get_workflow_status(instance_id)
        return {"status": None if status is None else status.status}

    app.add_api_route("/health", health, methods=["GET"])
    app.add_api_route("/instances", create, methods=["POST"])
    app.add_api_route("/instances/{instance_id}", get, methods=["GET"])
    dbos.launch()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
