"""Settings numba must see before it compiles anything: imported first by `engine`.

- LANES: the fp32 lanes of a channel block (`engine.kernels.layout.CB`): the host's vector
  width, or $ROOFLINE_LANES (8 or 16) to force the other one, so an AVX2 host tests the
  16-lane layout (two 256-bit operations per block) and an AVX-512 host the 8-lane one.
- NUMBA_CPU_NAME / NUMBA_CPU_FEATURES: the host CPU, and for 16 lanes the features
  without `prefer-256-bit`, so LLVM emits 512-bit FMAs (by default it keeps to ymm).
- NUMBA_SLP_VECTORIZE=1: SLP packing of scalar lanes into vectors (off by default).
- NUMBA_THREADING_LAYER_PRIORITY="omp tbb workqueue": numba picks its threading layer at
  the first parallel launch, TBB first by default. In this project's venv that is OpenMP
  (no libtbb), but a library that brings libtbb (OpenVINO does) loaded before the first
  run made it TBB, whose fork-join per parallel region is slower (bench/README, "Batch 1").
  Not set when the user chose a layer (NUMBA_THREADING_LAYER).
- NUMBA_CACHE_DIR: a user-writable folder when the kernels' folder is read-only
  (`numba_cache_dir`): $XDG_CACHE_HOME or ~/.cache, then roofline-workbench/numba.

A variable the user already set is never overridden.

It also makes numba's on-disk cache notice edits to the files a kernel imports from. numba
keys a cached function on a hash of its own source file only, so after an edit to a helper
in another file (pointwise.micro_tile, which fused_block calls; a constant in _common or layout)
it would load the stale machine code. `install_dependency_stamps` adds to every engine
function's stamp a digest of the engine modules its file imports (transitively): change
one and exactly the kernels that depend on it recompile.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import os
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent           # the `engine` package


def _host_cpu() -> tuple[str, str]:
    import llvmlite.binding as llvm      # here: only this start-up function needs LLVM's host queries

    try:  # llvmlite < 0.45 needs explicit initialisation; newer ones refuse it
        llvm.initialize_native_target()
    except Exception:  # pragma: no cover - depends on llvmlite version
        pass
    return llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()


LANES_VARIABLE = "ROOFLINE_LANES"


def lanes_from(environ, host_has_avx512: bool) -> int:
    """fp32 lanes per channel block: $ROOFLINE_LANES (8 or 16) if set, else the host's
    vector width (16 with AVX-512, 8 otherwise). ValueError for any other value."""
    text = environ.get(LANES_VARIABLE, "").strip()
    if not text:
        return 16 if host_has_avx512 else 8
    if text not in ("8", "16"):
        raise ValueError(f"{LANES_VARIABLE} must be 8 or 16 (fp32 lanes per channel block), got {text!r}")
    return int(text)


def features_for(host_features: str, lanes: int) -> str:
    """LLVM features for kernels built with `lanes`-wide channel blocks: the host's, with
    -prefer-256-bit for 16 lanes (512-bit FMAs where the CPU has them; LLVM keeps to ymm by
    default) and +prefer-256-bit for 8. The flag also keys numba's on-disk cache (its index
    is keyed on the CPU features), so code built for one width is never loaded for the other:
    CB is folded into the kernels as a constant."""
    kept = [f for f in host_features.split(",") if f and f not in ("+prefer-256-bit", "-prefer-256-bit")]
    return ",".join(kept + ["-prefer-256-bit" if lanes == 16 else "+prefer-256-bit"])


HOST_CPU_NAME, _host_features = _host_cpu()
HOST_HAS_AVX512: bool = "+avx512f" in _host_features.split(",")
HOST_LANES: int = 16 if HOST_HAS_AVX512 else 8
LANES: int = lanes_from(os.environ, HOST_HAS_AVX512)      # the width every kernel is built for

os.environ.setdefault("NUMBA_CPU_NAME", HOST_CPU_NAME)
os.environ.setdefault("NUMBA_CPU_FEATURES", features_for(_host_features, LANES))
os.environ.setdefault("NUMBA_SLP_VECTORIZE", "1")
if "NUMBA_THREADING_LAYER" not in os.environ:
    os.environ.setdefault("NUMBA_THREADING_LAYER_PRIORITY", "omp tbb workqueue")
if "numba" in sys.modules:
    # numba read its configuration when it was imported, before these settings existed;
    # without a reload every kernel would be built for ymm even with 16-lane blocks
    sys.modules["numba"].core.config.reload_config()



def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK)


def numba_cache_dir(package_dir: Path = PACKAGE_DIR, environ=os.environ, writable=_writable) -> str | None:
    """The NUMBA_CACHE_DIR to set, or None to keep numba's default (a __pycache__ folder
    next to each kernel file, engine/kernels/__pycache__).

    None when the user set NUMBA_CACHE_DIR, or when numba can write that __pycache__
    folder (or create it: its parent is writable). Otherwise $XDG_CACHE_HOME (default
    ~/.cache) / roofline-workbench / numba. os.access answers for the real user, and with
    EROFS on a read-only filesystem even for root; root on a writable filesystem may write
    anywhere, so the package folder is used then (as numba itself would)."""
    if environ.get("NUMBA_CACHE_DIR"):
        return None
    pycache = package_dir / "kernels" / "__pycache__"
    if writable(pycache if pycache.exists() else pycache.parent):
        return None
    base = Path(environ["XDG_CACHE_HOME"]) if environ.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return str(base / "roofline-workbench" / "numba")


_cache_dir = numba_cache_dir()
if _cache_dir is not None:
    os.environ["NUMBA_CACHE_DIR"] = _cache_dir


# ---------------------------------------------------------------------------- stamps that see imports

def _module_file(name: str, package_dir: Path) -> Path | None:
    """The file of module `name` ("engine.kernels._common") inside `package_dir`, or None."""
    parts = name.split(".")
    if parts[0] != package_dir.name:
        return None
    base = package_dir.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_files(path: Path, package_dir: Path) -> frozenset[Path]:
    """Files of `package_dir` that `path` imports at module level (what its jitted code can
    see as globals); imports inside functions are left out. Parsed once per file version."""
    try:
        stat = path.stat()
    except OSError:
        return frozenset()
    return _imported_files_of_version(path, package_dir, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=None)
def _imported_files_of_version(path: Path, package_dir: Path, mtime_ns: int, size: int) -> frozenset[Path]:
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return frozenset()
    module = ".".join((package_dir.name, *path.relative_to(package_dir).with_suffix("").parts))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: list[str] = []
    statements = list(tree.body)
    while statements:                     # module level, including inside if/try/with blocks
        node = statements.pop()
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names.append(base)
            names += [f"{base}.{alias.name}" for alias in node.names]     # `from pkg import module`
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(node, field, ()):
                    statements += child.body if isinstance(child, ast.ExceptHandler) else [child]
    found = {_module_file(name, package_dir) for name in names}
    return frozenset(file.resolve() for file in found if file is not None and file.resolve() != path.resolve())


def dependency_files(path, package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """Every file of `package_dir` that `path` imports, directly or through another, sorted."""
    path = Path(path).resolve()
    seen: set[Path] = set()
    todo = [path]
    while todo:
        for file in _imported_files(todo.pop(), package_dir):
            if file not in seen and file != path:
                seen.add(file)
                todo.append(file)
    return sorted(seen)


_digests: dict[tuple, str] = {}


def dependency_digest(path, package_dir: Path = PACKAGE_DIR) -> str:
    """sha256 over the names and contents of `dependency_files(path)`; computed once per
    process and file version (the stamps are taken when the kernel modules are imported)."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size, str(package_dir))
    digest = _digests.get(key)
    if digest is None:
        hasher = hashlib.sha256()
        for file in dependency_files(path, package_dir):
            hasher.update(str(file.relative_to(package_dir)).encode() + b"\0" + file.read_bytes() + b"\0")
        digest = _digests[key] = hasher.hexdigest()
    return digest


def install_dependency_stamps(package_dir: Path = PACKAGE_DIR,
                              lane_dirs: tuple[Path, ...] = (PACKAGE_DIR.parent / "workbench",)) -> bool:
    """Put a locator in front of numba's own that, for functions defined in `package_dir`,
    keeps numba's choice of cache folder and adds `dependency_digest` to its source stamp;
    for those and for functions defined in `lane_dirs` (the workbench's ceiling kernels,
    which fold in CB too), it adds the lane width to the cache file names, so code built
    for one width is never loaded for the other, whatever the CPU features say.
    Returns False (numba's plain behaviour stays) if numba's cache internals are not the
    ones this was written against (numba 0.60-0.68: (_)CacheImpl._locator_classes)."""
    try:
        from numba.core import caching      # here: numba's private cache internals, checked before use

        base = caching._CacheLocator
        impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl      # renamed in numba 0.61
        defaults = [c for c in impl._locator_classes if not getattr(c, "_dependency_stamps", False)]
    except (ImportError, AttributeError):  # pragma: no cover - depends on numba's version
        return False
    root = str(package_dir.resolve()) + os.sep
    roots = (root, *(str(Path(d).resolve()) + os.sep for d in lane_dirs))

    class DependencyStampLocator(base):
        """numba's locator for the function, with the engine modules its file imports in the stamp."""

        _dependency_stamps = True

        def __init__(self, inner, py_file):
            self._inner, self._py_file = inner, py_file

        def ensure_cache_path(self):
            self._inner.ensure_cache_path()

        def get_cache_path(self):
            return self._inner.get_cache_path()

        def get_source_stamp(self):
            if not os.path.abspath(self._py_file).startswith(root):
                return self._inner.get_source_stamp()
            return self._inner.get_source_stamp(), dependency_digest(self._py_file, package_dir)

        def get_disambiguator(self):
            return f"{self._inner.get_disambiguator()}-{LANES}lanes"

        @classmethod
        def from_function(cls, py_func, py_file):
            if not os.path.abspath(py_file).startswith(roots) or not os.path.isfile(py_file):
                return None
            for locator_class in defaults:
                inner = locator_class.from_function(py_func, py_file)
                if inner is not None:
                    return cls(inner, py_file)
            return None

    impl._locator_classes = [DependencyStampLocator, *defaults]
    return True


install_dependency_stamps()
