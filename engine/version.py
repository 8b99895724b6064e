"""The package's name and installed version, for the keys of caches (ceilings, schedules)."""
from __future__ import annotations

from importlib import metadata

PACKAGE_NAME = "roofline-workbench"


def package_version() -> str:
    """The installed package's version ("0+unknown" when run from a checkout that is not installed)."""
    try:
        return metadata.version(PACKAGE_NAME)
    except metadata.PackageNotFoundError:
        return "0+unknown"
