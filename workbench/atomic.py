"""Atomic file writes: everything the workbench saves (sweep tables, reports, figures,
the ceilings cache) is written to a temporary file in the target's folder and renamed
over the target, so an interrupted write never leaves a half-written file."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path, suffix: str = ".tmp"):
    """Yield a temporary path beside `path` (folders created) to write to; when the block
    ends normally it becomes `path` (mode 0644, os.replace); otherwise it is removed and
    `path` is left as it was. `suffix`: the temporary name's, for writers that pick the
    format by suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
