"""The package's name and installed version, for the keys of caches (ceilings, schedules)."""
from __future__ import annotations

import functools
import hashlib
from importlib import metadata
from pathlib import Path

PACKAGE_NAME = "roofline-workbench"


def package_version() -> str:
    """The installed package's version ("0+unknown" when run from a checkout that is not installed)."""
    try:
        return metadata.version(PACKAGE_NAME)
    except metadata.PackageNotFoundError:
        return "0+unknown"


@functools.lru_cache(maxsize=1)
def kernels_digest() -> str:
    """12 hex digits of sha256 over engine/kernels/*.py: a tuned schedule's timings belong to
    the kernels it was measured with (a new micro-tile makes yesterday's best tiles stale)."""
    hasher = hashlib.sha256()
    for path in sorted((Path(__file__).resolve().parent / "kernels").glob("*.py")):
        hasher.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return hasher.hexdigest()[:12]


def engine_version() -> str:
    """The package version and the kernels' digest, "0.1.0+kernels.1a2b3c4d5e6f": what a
    tuned schedule is keyed on."""
    return f"{package_version()}+kernels.{kernels_digest()}"
