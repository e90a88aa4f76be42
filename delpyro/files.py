"""Writing files so that nothing is lost: every file delpyro writes goes through :func:`replacing`.

A file is written to a temporary file beside its target, flushed to disk (``fsync``), given the user's
normal permissions (what the umask allows, as ``open`` would give; a temporary file starts private), and
renamed over the target in one step. So a save that fails or is killed half way leaves the old file whole,
and a save never truncates a file that is still being read (a memory-mapped array of poses keeps its old
contents until it is closed). Temporary files that an interrupted save left behind (their process is
gone) are removed by the next save of the same file.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> with replacing(folder / "a.txt") as temporary:
...     _ = temporary.write_text("hello")
>>> (folder / "a.txt").read_text(), sorted(p.name for p in folder.iterdir())
('hello', ['a.txt'])
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

__all__ = ["replacing", "write_bytes", "write_text"]

_SUFFIX = ".delpyro-tmp"


def _temporary_name(target: Path) -> Path:
    """``.<name>.<pid>.<random>.delpyro-tmp`` beside the target (hidden, and named after its writer)."""
    return target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}{_SUFFIX}")


def _writer_is_gone(pid: int) -> bool:
    if pid == os.getpid():
        return True  # an earlier save of this process, interrupted (a save in progress holds no old name)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _remove_leftovers(target: Path) -> None:
    """Remove temporary files of ``target`` whose writing process is gone."""
    prefix = f".{target.name}."
    for path in target.parent.glob(f"{prefix}*{_SUFFIX}"):
        pid_text = path.name[len(prefix) :].split(".")[0]
        if pid_text.isdigit() and _writer_is_gone(int(pid_text)):
            with contextlib.suppress(OSError):
                path.unlink()


def _normal_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary path to write ``path``'s new contents to; on leaving the block without an error it is
    flushed, given normal permissions and renamed over ``path`` (on an error it is removed, and ``path`` is
    untouched). The folder is created when missing."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(target)
    temporary = _temporary_name(target)
    try:
        yield temporary
        if not temporary.exists():
            raise FileNotFoundError(f"{target}: nothing was written")
        _fsync(temporary)
        os.chmod(temporary, _normal_mode())
        os.replace(temporary, target)
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()
    with contextlib.suppress(OSError):  # the rename itself, on disk
        _fsync(target.parent)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` as :func:`replacing` does."""
    with replacing(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` as :func:`replacing` does."""
    return write_bytes(path, text.encode("utf-8"))
