"""Bundle hashing and snapshot zips: the framing, the deterministic writer, the safe reader.

Every path through here hashes exactly the bytes it reads, once, so a snapshot can never disagree
with its digest — not even when a file is edited while it is being read.
"""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile
import zlib
from contextlib import nullcontext
from pathlib import Path
from typing import IO, TYPE_CHECKING

from modelops._bundle_walk import name_problem
from modelops_contracts.errors import BundleError

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

__all__ = ["ContentHasher", "hash_files", "read_snapshot", "write_snapshot"]

BLOCK_SIZE = 1 << 20
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
ZIP_FILE_MODE = stat.S_IFREG | 0o644
_UNIX = 3  # ZipInfo.create_system for Unix, fixed so zips are identical across platforms
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, RuntimeError)


class ContentHasher:
    """SHA-256 over files framed as ``path_utf8, NUL, 8-byte big-endian length, content``.

    The NUL (never in a path) and the explicit length make the byte stream unambiguous, so no two
    different bundles can feed the same bytes.
    """

    def __init__(self) -> None:
        self._sha = hashlib.sha256()

    def start(self, name: str, size: int) -> None:
        """Begin the file ``name`` of ``size`` bytes."""
        self._sha.update(name.encode("utf-8") + b"\0" + size.to_bytes(8, "big"))

    def update(self, block: bytes) -> None:
        """Feed the next block of the current file's content."""
        self._sha.update(block)

    def hexdigest(self) -> str:
        """The 64 hex digits of the digest so far."""
        return self._sha.hexdigest()


def hash_files(files: Sequence[tuple[str, Path]]) -> str:
    """Hex digest of ``files`` (already sorted), streamed in blocks."""
    hasher = ContentHasher()
    for name, path in files:
        with _open_source(path) as src:
            size = os.fstat(src.fileno()).st_size
            hasher.start(name, size)
            for block in _read_exactly(src, size, path):
                hasher.update(block)
    return hasher.hexdigest()


def write_snapshot(out: IO[bytes], files: Sequence[tuple[str, Path]]) -> str:
    """Write ``files`` (already sorted) as a deterministic zip to ``out``; return its hex digest.

    Timestamps, permissions, creator system and compression are fixed, so the same content gives
    the same zip bytes on every machine.
    """
    hasher = ContentHasher()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, path in files:
            with _open_source(path) as src:
                size = os.fstat(src.fileno()).st_size
                hasher.start(name, size)
                with archive.open(_zip_info(name, size), "w") as member:
                    for block in _read_exactly(src, size, path):
                        hasher.update(block)
                        member.write(block)
    return hasher.hexdigest()


def read_snapshot(source: Path | IO[bytes], where: str, target: Path | None = None) -> str:
    """Validate a snapshot zip, optionally extract it under ``target``; return its hex digest.

    Every member is checked before anything is written, so a refused snapshot leaves ``target``
    untouched; the digest is computed from the very bytes written.

    Raises:
        BundleError: the zip is unreadable, or has an unsafe, duplicate, symlink or special member.
        OSError: writing under ``target`` failed.
    """
    try:
        with zipfile.ZipFile(source) as archive:
            members = _checked_members(archive, where)
            hasher = ContentHasher()
            for info in members:
                _copy_member(archive, info, hasher, where, target)
    except _ZIP_ERRORS as exc:
        raise BundleError(f"snapshot {where} is not a readable zip: {exc}") from exc
    return hasher.hexdigest()


def _zip_info(name: str, size: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = _UNIX
    info.external_attr = ZIP_FILE_MODE << 16
    info.file_size = size  # lets ZipFile choose ZIP64 up front for very large files
    return info


def _open_source(path: Path) -> IO[bytes]:
    try:
        return path.open("rb")
    except OSError as exc:
        raise BundleError(f"cannot read bundle file {path}: {exc.strerror or exc}") from exc


def _read_exactly(src: IO[bytes], size: int, path: Path) -> Iterator[bytes]:
    """Yield exactly ``size`` bytes of ``src``; fail if the file grew or shrank meanwhile."""
    remaining = size
    try:
        while remaining:
            block = src.read(min(BLOCK_SIZE, remaining))
            if not block:
                break
            remaining -= len(block)
            yield block
        changed = remaining > 0 or src.read(1) != b""
    except OSError as exc:
        raise BundleError(f"cannot read bundle file {path}: {exc.strerror or exc}") from exc
    if changed:
        raise BundleError(
            f"bundle file {path} changed size while being read",
            hint="retry once nothing is writing to it",
        )


def _checked_members(archive: zipfile.ZipFile, where: str) -> list[zipfile.ZipInfo]:
    """Return the file members sorted by name after refusing anything unsafe or ambiguous."""
    files: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        name = info.filename
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise BundleError(
                f"snapshot {where} has a symlink member {name!r}",
                hint="snapshots hold regular files only",
            )
        is_dir = name.endswith("/")
        problem = name_problem(name[:-1] if is_dir else name)
        if problem is not None:
            raise BundleError(f"snapshot {where} has an unsafe member {name!r}: {problem}")
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise BundleError(f"snapshot {where} has a special-file member {name!r}")
        if is_dir:
            continue  # directories come from the files' parents; empty ones do not count
        if name in files:
            raise BundleError(f"snapshot {where} has the member {name!r} twice")
        files[name] = info
    directories = {name[:i] for name in files for i, ch in enumerate(name) if ch == "/"}
    clash = min(directories & files.keys(), default=None)
    if clash is not None:
        raise BundleError(f"snapshot {where} has {clash!r} as both a file and a directory")
    return [files[name] for name in sorted(files)]


def _copy_member(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    hasher: ContentHasher,
    where: str,
    target: Path | None,
) -> None:
    """Hash one member and, when ``target`` is given, write it to its place under it."""
    hasher.start(info.filename, info.file_size)
    dest = None if target is None else target.joinpath(*info.filename.split("/"))
    if dest is not None:
        dest.parent.mkdir(parents=True, exist_ok=True)
    seen = 0
    with archive.open(info) as src, dest.open("xb") if dest else nullcontext() as out:
        while block := src.read(BLOCK_SIZE):
            seen += len(block)
            if seen > info.file_size:
                break
            hasher.update(block)
            if out is not None:
                out.write(block)
    if seen != info.file_size:
        raise BundleError(f"snapshot {where}: member {info.filename!r} does not match its size")
