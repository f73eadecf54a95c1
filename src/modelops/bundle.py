"""Model-code bundles: which files a model is, their digest, stored and materialized snapshots.

A bundle is a directory of model code. Its identity is ``sha256:<hex>`` over the sorted
(relative path, content) pairs, so the same code gives the same ``bundle_ref`` on every machine
and task ids stay stable. ``BundleStore.put`` freezes the code as a content-addressed zip;
workers run ``materialize`` and import the model from that frozen copy, never from the live
directory, so editing the source after submitting a job cannot change what the job runs. The
copy is read-only and checked against its digest every time it is materialized, so a model that
rewrites its own files cannot change what later jobs on the same digest run.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import IO, TYPE_CHECKING

from modelops._bundle_archive import hash_files, read_snapshot, write_snapshot
from modelops._bundle_walk import list_files
from modelops._fs import fsync_dir
from modelops_contracts.errors import BundleError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

__all__ = ["BundleStore", "bundle_files", "compute_digest", "linked_bundle", "materialize"]

_FILE_MODE = 0o444
_DIR_MODE = 0o555
_RUNTIME_CACHE = "__pycache__"  # never part of a bundle (see bundle_files); Python writes it


def bundle_files(root: Path, *, exclude: Sequence[Path] = ()) -> list[tuple[str, Path]]:
    """List the files of the bundle at ``root`` as sorted (relative POSIX path, absolute path).

    Skips VCS data, virtualenvs, tool caches, ``*.pyc``, anything under ``exclude`` and whatever
    ``.modelopsignore`` (gitignore syntax, at the root) ignores. Symlinks that resolve inside the
    root are followed and count as regular files.

    Raises:
        BundleError: the root is missing or not a directory, a symlink is broken, loops or leaves
            the root, an entry is a special file or has an unportable name, or no file is left.
    """
    return list_files(root, exclude)


def compute_digest(root: Path, *, exclude: Sequence[Path] = ()) -> str:
    """Return the bundle's ``sha256:<hex>``; mtimes, permissions and on-disk order never count.

    Raises:
        BundleError: as ``bundle_files``, or a file cannot be read or changes size while read.
    """
    return "sha256:" + hash_files(list_files(root, exclude))


@contextlib.contextmanager
def linked_bundle(root: Path, *, exclude: Sequence[Path] = ()) -> Iterator[tuple[str, Path]]:
    """The bundle's digest and a temporary directory holding exactly its files, as symlinks.

    Importing from that directory sees what a materialized snapshot holds (a file that
    ``.modelopsignore`` excludes is missing) without copying anything. Removed on exit.

    Raises:
        BundleError: as ``compute_digest``, or the directory cannot be made.
    """
    files = list_files(root, exclude)
    ref = "sha256:" + hash_files(files)
    try:
        linked = Path(tempfile.mkdtemp(prefix="modelops-bundle-"))
    except OSError as exc:
        raise BundleError(f"cannot make a temporary directory: {exc}") from exc
    try:
        for name, path in files:
            dest = linked.joinpath(*name.split("/"))
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.symlink_to(path)
        yield ref, linked
    except OSError as exc:
        raise BundleError(f"cannot link the bundle at {root}: {exc}") from exc
    finally:
        shutil.rmtree(linked, ignore_errors=True)


class BundleStore:
    """Content-addressed code snapshots under ``<directory>/bundles/<hex>.zip``.

    Contract: a snapshot file appears only complete (written to a temp name in the same
    directory, fsynced, renamed), its name is the digest of the content it holds, and it is never
    rewritten. Concurrent puts of the same code from several processes are therefore safe, and
    readers need no lock.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.bundles_dir = self.directory / "bundles"
        self.cache_dir = self.directory / "cache" / "bundles"
        """Where backends on this machine extract snapshots (see :func:`materialize`)."""

    def put(self, root: Path, *, exclude: Sequence[Path] = ()) -> str:
        """Snapshot the bundle at ``root`` unless already stored; return its ``sha256:`` ref.

        The store's own directory is always excluded, so a store inside the bundle is safe. The
        zip and the digest it is stored under come from one read of each file.

        Raises:
            BundleError: as ``compute_digest``, or the snapshot cannot be written.
        """
        files = list_files(root, (*exclude, self.directory))
        ref = "sha256:" + hash_files(files)
        if self.has(ref):
            return ref
        return self._write_atomically(lambda out: write_snapshot(out, files))

    def has(self, ref: str) -> bool:
        """Whether the snapshot ``ref`` is stored."""
        return self._location(ref).is_file()

    def path(self, ref: str) -> Path:
        """Path of the stored snapshot zip of ``ref``.

        Raises:
            BundleError: it is not stored.
        """
        location = self._location(ref)
        if not location.is_file():
            raise BundleError(
                f"bundle {ref} is not stored at {location}",
                hint="put it first with BundleStore.put",
            )
        return location

    def read_bytes(self, ref: str) -> bytes:
        """The stored snapshot zip of ``ref`` as bytes, e.g. to ship it to a worker.

        Raises:
            BundleError: it is not stored or cannot be read.
        """
        location = self.path(ref)
        try:
            return location.read_bytes()
        except OSError as exc:
            raise BundleError(f"cannot read bundle snapshot {location}: {exc}") from exc

    def put_bytes(self, ref: str, data: bytes) -> None:
        """Store a snapshot zip received from elsewhere, after checking its content is ``ref``.

        Raises:
            BundleError: ``data`` is not a safe zip, its content digest is not ``ref``, or it
                cannot be written.
        """
        expected = _digest_of(ref)
        actual = read_snapshot(io.BytesIO(data), f"received for {ref}")
        if actual != expected:
            raise BundleError(
                f"snapshot received for {ref} holds content sha256:{actual}",
                hint="the bytes are corrupt or belong to another bundle",
            )
        if not self.has(ref):
            self._write_atomically(lambda out: _write_verified(out, data, actual))

    def _location(self, ref: str) -> Path:
        return self.bundles_dir / f"{_digest_of(ref)}.zip"

    def _write_atomically(self, write: Callable[[IO[bytes]], str]) -> str:
        """Write a zip via ``write`` (which returns its hex digest) to ``<hex>.zip`` atomically."""
        tmp: Path | None = None
        try:
            self.bundles_dir.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=self.bundles_dir, prefix=".tmp-", suffix=".zip")
            tmp = Path(name)
            with os.fdopen(fd, "wb") as out:
                digest = write(out)
                out.flush()
                os.fsync(out.fileno())
            tmp.chmod(0o644)  # mkstemp makes it private; snapshots are shared code
            final = self.bundles_dir / f"{digest}.zip"
            if not final.exists():
                tmp.replace(final)
                fsync_dir(self.bundles_dir)
        except OSError as exc:
            raise BundleError(
                f"cannot write bundle snapshot in {self.bundles_dir}: {exc}",
                hint="check free space and permissions",
            ) from exc
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
        return "sha256:" + digest


def materialize(ref: str, zip_source: Path | bytes, cache_dir: Path) -> Path:
    """Extract the snapshot ``ref`` to ``cache_dir/<hex>/`` and return that directory.

    Extraction goes to a temp directory in ``cache_dir``; its content digest must equal ``ref``
    before it is made read-only (files 0o444, directories 0o555) and renamed into place, so the
    directory exists only complete and correct. When another process wins the race its copy is
    used. An existing directory is re-hashed first (permission bits do not stop root): if any
    file was changed, added or removed it is replaced by a fresh extraction from ``zip_source``;
    ``__pycache__`` directories in it are dropped, as a model could have planted bytecode there.

    Raises:
        BundleError: ``ref`` is malformed, the zip is unreadable or unsafe (absolute, ``..``,
            drive-letter or symlink members), its content is not ``ref``, or writing fails.
    """
    digest = _digest_of(ref)
    cache_dir = Path(cache_dir)
    target = cache_dir / digest
    if target.is_dir():
        if _tree_digest(target) == digest:
            return target
        _discard(target)  # tampered with: extract again from the verified zip
    source: Path | IO[bytes]
    if isinstance(zip_source, bytes):
        source, where = io.BytesIO(zip_source), f"received for {ref}"
    elif Path(zip_source).is_file():
        source, where = Path(zip_source), str(zip_source)
    else:
        raise BundleError(f"bundle snapshot {zip_source} does not exist", hint=f"fetch {ref} first")
    staging: Path | None = None
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=cache_dir, prefix=f".{digest[:12]}-", suffix=".tmp"))
        actual = read_snapshot(source, where, staging)
        if actual != digest:
            raise BundleError(
                f"snapshot {where} holds sha256:{actual}, not {ref}",
                hint="the zip is corrupt or belongs to another bundle",
            )
        _protect(staging)
        _rename_into_place(staging, target)
    except OSError as exc:
        raise BundleError(
            f"cannot materialize {ref} into {target}: {exc}",
            hint="check free space and permissions",
        ) from exc
    finally:
        if staging is not None and staging.exists():
            _remove_tree(staging)
    return target


def _tree_digest(root: Path) -> str | None:
    """Hex digest of the files under an extracted snapshot, or None if it cannot be one.

    Drops ``__pycache__`` directories first. A symlink, a special file, an unreadable entry or a
    directory holding no file (an importable namespace package) make it no snapshot.
    """
    files: list[tuple[str, Path]] = []
    if not _collect(root, "", files):
        return None
    try:
        return hash_files(sorted(files))
    except BundleError:
        return None


def _collect(directory: Path, prefix: str, files: list[tuple[str, Path]]) -> bool:
    """Add the files under ``directory`` to ``files``; False if the tree is no snapshot."""
    found = False
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return False
    for entry in entries:
        path = Path(entry.path)
        if entry.is_symlink():
            return False
        if entry.is_dir():
            if entry.name == _RUNTIME_CACHE:
                _remove_tree(path)
                continue
            if not _collect(path, f"{prefix}{entry.name}/", files):
                return False
        elif entry.is_file():
            files.append((prefix + entry.name, path))
        else:
            return False
        found = True
    return found


def _protect(root: Path) -> None:
    """Make an extracted tree read-only for everyone (files 0o444, directories 0o555)."""
    for here, _, names in os.walk(root, topdown=False):
        for name in names:
            (Path(here) / name).chmod(_FILE_MODE)
        Path(here).chmod(_DIR_MODE)


def _discard(target: Path) -> None:
    """Move a bad extracted tree out of the way (atomically), then delete it."""
    trash = target.with_name(f".{target.name[:12]}-{os.getpid()}-{id(target):x}.trash")
    try:
        target.rename(trash)
    except FileNotFoundError:
        return  # another process got there first
    except OSError as exc:
        raise BundleError(f"cannot replace the damaged snapshot {target}: {exc}") from exc
    _remove_tree(trash)


def _remove_tree(root: Path) -> None:
    """Delete a tree, read-only directories included (best effort)."""
    with contextlib.suppress(OSError):
        root.chmod(stat.S_IRWXU)
    for here, dirs, _ in os.walk(root):
        for name in dirs:
            path = Path(here) / name
            if not path.is_symlink():
                with contextlib.suppress(OSError):
                    path.chmod(stat.S_IRWXU)
    shutil.rmtree(root, ignore_errors=True)


def _rename_into_place(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``, accepting a complete copy another process put there."""
    try:
        staging.rename(target)
    except OSError:
        if not target.is_dir():
            raise


def _write_verified(out: IO[bytes], data: bytes, digest: str) -> str:
    out.write(data)
    return digest


def _digest_of(ref: str) -> str:
    """The hex digest of a bundle reference (the contracts' pydantic models load only now, so
    hashing a directory stays cheap for the commands that only compare digests)."""
    from modelops_contracts.task import bundle_digest

    return bundle_digest(ref)
