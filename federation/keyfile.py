"""Private key files: created with mode 0600 and never overwritten silently.

Kept out of ``federation.core`` because it does file I/O; the key encodings themselves live in
:mod:`federation.core.keys`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from federation.core.keys import SigningKey
from federation.errors import ConfigError


def save_private_key(path: Path, key: SigningKey, *, overwrite: bool = False) -> None:
    """Write ``key`` to ``path`` with mode 0600, created atomically with that mode.

    ``O_EXCL`` refuses to replace an existing key unless asked, because losing a log key means
    the member can never extend its log again.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} exists; refusing to overwrite a private key") from None
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(key.skey() + "\n")


def load_private_key(path: Path) -> SigningKey:
    """Read a private key file; refuses files readable by group or others."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"private key file {path} does not exist", field="key") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"private key file {path} is accessible by others (mode {stat.S_IMODE(mode):o});"
            " run chmod 600",
            code="insecure_key_file",
        )
    return SigningKey.parse(path.read_text())
