"""Running the MariaDB client tools with the app's credentials kept off the command line.

The user, password, host and port go into a temporary option file (mode 0600, removed
afterwards) passed as ``--defaults-extra-file``, which must be the tool's first argument.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from vedina.backup.archive import BackupError
from vedina.config import Settings

_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")


def checked_name(name: str, *, what: str = "database name") -> str:
    """A database name safe to put in SQL unquoted: letters, digits and underscores."""
    if not _NAME.match(name):
        raise BackupError(f"{what} must be 1-64 letters, digits or underscores, got {name!r}")
    return name


def _option_value(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@contextmanager
def option_file(settings: Settings) -> Iterator[str]:
    fd, path = tempfile.mkstemp(prefix="vedina-my-", suffix=".cnf")  # created 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write("[client]\n")
            handle.write(f"user={_option_value(settings.db_user)}\n")
            if settings.db_password:
                handle.write(f"password={_option_value(settings.db_password)}\n")
            handle.write(f"host={_option_value(settings.db_host)}\nport={settings.db_port}\n")
        yield path
    finally:
        os.unlink(path)


def tool(name: str) -> str:
    """The path of a client tool (``mariadb``, ``mariadb-dump``, ``mariadb-binlog``)."""
    found = shutil.which(name) or shutil.which(name.replace("mariadb", "mysql"))
    if found is None:
        raise BackupError(f"{name} is not installed (Debian: apt-get install mariadb-client)")
    return found


def version(name: str) -> str:
    result = subprocess.run([tool(name), "--version"], capture_output=True, text=True, check=False)
    return result.stdout.strip()


def query(options: str, sql: str) -> list[list[str]]:
    """Rows of one statement as text (tab-separated batch output)."""
    result = subprocess.run([tool("mariadb"), f"--defaults-extra-file={options}", "--batch", "--skip-column-names",
                             "-e", sql], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BackupError(f"mariadb: {result.stderr.strip()}")
    return [line.split("\t") for line in result.stdout.splitlines()]


