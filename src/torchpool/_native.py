"""The C kernels of ``torchpool/csrc``: compiled on first use with the system's C compiler, cached,
loaded with :mod:`ctypes`.

A kernel is a plain C file (no Python or PyTorch headers, so it compiles in about a second; the
shared ``csrc/vector.h`` is hashed with it). It is
built with ``-O3 -march=native -fopenmp`` into the cache directory (``$TORCHPOOL_CACHE_DIR``, else
``$XDG_CACHE_HOME/torchpool``, else ``~/.cache/torchpool``; a folder of the temporary directory
where that cannot be written) under a name that hashes the source,
the compiler's version, the flags and the CPU, so a changed file, compiler or machine builds
again. Its OpenMP calls run on the OpenMP runtime PyTorch has already loaded (the library's
``libgomp.so.1`` resolves to PyTorch's), so they share PyTorch's threads.

Where there is no compiler (or it fails, or ``TORCHPOOL_NATIVE=0``), :func:`load` returns ``None``
and the ops use their pure-PyTorch path: the same results within rounding, slower.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["build_error", "built_path", "cache_dir", "kernel_names", "load"]

SOURCES = Path(__file__).parent / "csrc"
FLAGS = ("-O3", "-fopenmp", "-fPIC", "-shared", "-fno-math-errno", "-fno-trapping-math")
#: tried in order: the CPU's own vector units first, then the compiler's default target
TARGETS = (("-march=native",), ())

_errors: dict[str, str] = {}
_paths: dict[str, Path] = {}


def cache_dir() -> Path:
    """Where built kernels are kept."""
    if "TORCHPOOL_CACHE_DIR" in os.environ:
        return Path(os.environ["TORCHPOOL_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "torchpool"


def _writable_cache() -> Path:
    """:func:`cache_dir`, created; or, where it cannot be written, a folder in the temporary directory."""
    for folder in (
        cache_dir(),
        Path(tempfile.gettempdir()) / f"torchpool-{os.getuid() if hasattr(os, 'getuid') else 0}",
    ):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if os.access(folder, os.W_OK):
                return folder
        except OSError:
            continue
    raise RuntimeError(f"no writable cache folder ({cache_dir()} nor the temporary directory)")


def _cpu() -> str:
    """The CPU's model and feature flags (a build with ``-march=native`` is for this CPU only)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            lines = [line for line in f if line.startswith(("model name", "flags", "Features"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor() or platform.machine()


def _compiler() -> tuple[str, str] | None:
    """The C compiler (``$CC``, else ``cc``) and its version line, or ``None``."""
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        return None
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return cc, version.stdout.splitlines()[0] if version.stdout else ""


def _build(name: str) -> Path:
    """The kernel ``csrc/<name>.c`` built (or found in the cache); raises ``RuntimeError`` on failure."""
    # the kernel and the headers it may include (csrc/*.h): a change to either builds it again
    source = b"\0".join(path.read_bytes() for path in [SOURCES / f"{name}.c", *sorted(SOURCES.glob("*.h"))])
    found = _compiler()
    if found is None:
        raise RuntimeError(f"no C compiler ({os.environ.get('CC', 'cc')}) found")
    cc, version = found
    errors = []
    for target in TARGETS:
        flags = (*FLAGS, *target)
        key = hashlib.sha256(
            b"\0".join([source, version.encode(), " ".join(flags).encode(), _cpu().encode()])
        )
        path = cache_dir() / f"{name}-{key.hexdigest()[:16]}.so"
        if path.exists():
            return path
        path = _writable_cache() / path.name
        if path.exists():
            return path
        with tempfile.TemporaryDirectory(dir=path.parent) as work:
            built = Path(work) / path.name
            run = subprocess.run(
                [cc, *flags, "-o", str(built), str(SOURCES / f"{name}.c")],
                capture_output=True,
                text=True,
                timeout=300,
            )
            if run.returncode == 0:
                os.replace(built, path)  # atomic: a concurrent build of the same key is harmless
                return path
            errors.append(f"{' '.join(flags)}: {run.stderr.strip()[-500:]}")
    raise RuntimeError("; ".join(errors))


@functools.cache
def load(name: str) -> ctypes.CDLL | None:
    """The kernel library ``csrc/<name>.c``, or ``None`` where it cannot be built (see
    :func:`build_error`) or ``TORCHPOOL_NATIVE=0``."""
    if os.environ.get("TORCHPOOL_NATIVE", "1") == "0":
        _errors[name] = "disabled by TORCHPOOL_NATIVE=0"
        return None
    try:
        path = _build(name)
        library = ctypes.CDLL(str(path))
        _paths[name] = path
        return library
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        _errors[name] = str(error)
        return None


def build_error(name: str) -> str | None:
    """Why :func:`load` returned ``None`` for ``name`` (``None`` if it did not, or was not called)."""
    return _errors.get(name)


def built_path(name: str) -> Path | None:
    """The shared library :func:`load` loaded for ``name`` (``None`` if it did not, or was not called)."""
    return _paths.get(name)


def kernel_names() -> list[str]:
    """The kernels this package ships (``csrc/<name>.c``), sorted."""
    return sorted(path.stem for path in SOURCES.glob("*.c"))
