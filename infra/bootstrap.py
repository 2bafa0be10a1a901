#!/usr/bin/env python3
"""Set up a fresh machine that has only Python 3.11+, then run the service or the test suite.

    python3 infra/bootstrap.py up      # the service on embedded servers, demo data on first start
    python3 infra/bootstrap.py test    # install everything, run the whole test suite

It creates `.venv` beside the project (once), installs the project with its test and load-test
extras into it (again only when pyproject.toml changed), and hands over to `atelier` or pytest.
Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / ".atelier-installed"


def log(message: str) -> None:
    print(f"[bootstrap] {message}", file=sys.stderr, flush=True)


def create_venv() -> None:
    """Debian's python3 ships without ensurepip until python3-venv is installed; as root we add it."""
    try:
        venv.create(VENV, with_pip=True)
        return
    except (subprocess.CalledProcessError, OSError) as exc:
        shutil.rmtree(VENV, ignore_errors=True)
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            raise SystemExit(f"cannot create a virtual environment ({exc}); install python3-venv") from exc
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    log(f"installing python{version}-venv with apt-get")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", f"python{version}-venv"], check=True)
    venv.create(VENV, with_pip=True)


def install() -> None:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == digest:
        return
    if not (BIN / "python").exists():
        log("creating .venv")
        create_venv()
    log("installing the project and its dependencies into .venv")
    pip = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "install", "-e", f"{ROOT}[test,load]"], check=True)
    STAMP.write_text(digest)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("up", "test", "install"):
        print(__doc__, file=sys.stderr)
        return 2
    install()
    command, rest = argv[0], argv[1:]
    os.chdir(ROOT)
    if command == "install":
        return 0
    if command == "up":
        os.execv(str(BIN / "atelier"), [str(BIN / "atelier"), "up", *rest])
    result = subprocess.run([str(BIN / "python"), "-m", "pytest", *rest])
    if result.returncode == 5:
        log("pytest collected no tests: that is a failure, not a pass")
        return 1
    return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
