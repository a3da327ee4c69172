"""The server's state folder: database, token, bundles."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from wf.errors import WfError

TOKEN_BYTES = 32


class ServeError(WfError):
    """wf serve cannot start or go on: its state folder, token, workers or metrics port."""

    code = "serve.error"


@dataclass(frozen=True)
class StateDir:
    root: Path

    @property
    def database(self) -> Path:
        return self.root / "wf.db"

    @property
    def token_file(self) -> Path:
        return self.root / "token"

    @property
    def bundles(self) -> Path:
        return self.root / "bundles"

    def bundle(self, version_id: str) -> Path:
        return self.bundles / version_id

    def prepare(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            # The database holds secrets: only this user may look inside, even in a folder
            # that existed before.
            self.root.chmod(0o700)
            self.bundles.mkdir(exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ServeError(f"cannot create {self.root}: {exc.strerror}") from None

    def read_token(self) -> str | None:
        try:
            token = self.token_file.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise ServeError(f"cannot read {self.token_file}: {exc}") from None
        return token or None

    def new_token(self) -> str:
        """Write a fresh token, readable by this user only (0600), replacing any old one."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        temporary = self.token_file.with_name(".token.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, (token + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(temporary, 0o600)
        os.replace(temporary, self.token_file)
        return token
