"""A self-signed certificate for the tests that speak HTTPS (the daemon's TLS, pods' transfers)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import NoReturn

import pytest


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for ``localhost`` and ``127.0.0.1``, and its key (PEM), in ``folder``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        missing("the openssl command is not installed")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", "1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


def missing(why: str) -> NoReturn:
    """Skip for want of a host tool, or fail in CI (``HAFLOW_REQUIRE_DOCKER``), where .ci/run installs it."""
    if os.environ.get("HAFLOW_REQUIRE_DOCKER"):
        pytest.fail(f"HAFLOW_REQUIRE_DOCKER is set but {why}")
    pytest.skip(why)
