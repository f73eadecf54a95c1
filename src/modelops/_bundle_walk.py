"""Which files make up a bundle: the directory walk behind ``bundle_files``.

The walk is the single definition of a bundle's content, so the digest, the snapshot zip and the
materialized copy all agree on it. Ignored directories are pruned before they are read: that gives
gitignore semantics (a file under an excluded directory cannot be re-included) and keeps large
data or virtualenv directories from being walked at all.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pathspec

from modelops_contracts.errors import BundleError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["IGNORE_FILE", "SKIPPED_NAMES", "list_files", "name_problem"]

SKIPPED_NAMES = frozenset(
    {
        ".git",
        ".venv",
        "__pycache__",
        ".modelops",
        ".hypothesis",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
    }
)
"""Entry names never bundled: tool caches, VCS data, virtualenvs and the default store."""

IGNORE_FILE = ".modelopsignore"
"""Name of the optional gitignore-syntax file at the bundle root."""

_DRIVE = re.compile(r"[A-Za-z]:")


def name_problem(name: str) -> str | None:
    """Say why ``name`` is not a safe, canonical relative POSIX path, or return None.

    Shared by the walk and by extraction, so that every bundle that can be put can also be
    materialized on any platform, and nothing extracted can land outside its target directory.
    """
    if not name:
        return "empty path"
    if "\0" in name:
        return "contains a NUL byte"
    if "\\" in name:
        return "contains a backslash"
    if name.startswith("/"):
        return "absolute path"
    if _DRIVE.match(name):
        return "starts with a drive letter"
    parts = name.split("/")
    if ".." in parts:
        return "has a '..' component"
    if any(part in ("", ".") for part in parts):
        return "has an empty or '.' component"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    return None


def list_files(root: Path, exclude: Sequence[Path]) -> list[tuple[str, Path]]:
    """Return the sorted ``(relative POSIX path, real absolute path)`` pairs of a bundle.

    Raises:
        BundleError: the root is missing or not a directory, a symlink is broken, loops or points
            outside the root, an entry is not a regular file or has an unportable name, the
            ignore file is unreadable, or no file is left.
    """
    base = _resolve_root(root)
    walker = _Walker(base, _load_ignore(base), tuple(Path(p).resolve() for p in exclude))
    walker.visit(base, "", frozenset({base}))
    if not walker.files:
        raise BundleError(
            f"bundle {root} contains no files",
            hint=f"check the directory and its {IGNORE_FILE}",
        )
    return sorted(walker.files)


def _resolve_root(root: Path) -> Path:
    """Resolve the bundle root, which must be an existing directory."""
    try:
        base = Path(root).resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise BundleError(
            f"bundle directory {root} does not exist", hint="pass the model's directory"
        ) from exc
    if not base.is_dir():
        raise BundleError(f"bundle path {root} is not a directory", hint="pass a directory")
    return base


def _load_ignore(base: Path) -> pathspec.GitIgnoreSpec | None:
    """Read ``.modelopsignore`` at the root, if there is one."""
    path = base / IGNORE_FILE
    if not path.is_file():
        return None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        return pathspec.GitIgnoreSpec.from_lines(lines)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BundleError(
            f"cannot read ignore file {path}: {exc}", hint="use UTF-8 gitignore syntax"
        ) from exc


class _Walker:
    """Depth-first walk that follows in-root symlinks and prunes ignored directories."""

    def __init__(
        self,
        base: Path,
        spec: pathspec.GitIgnoreSpec | None,
        excludes: tuple[Path, ...],
    ) -> None:
        self.base = base
        self.spec = spec
        self.excludes = excludes
        self.files: list[tuple[str, Path]] = []

    def visit(self, directory: Path, prefix: str, ancestors: frozenset[Path]) -> None:
        """Collect the files under ``directory`` (a real path), named ``prefix + name``."""
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda entry: entry.name)
        except OSError as exc:
            raise BundleError(f"cannot read bundle directory {directory}: {exc}") from exc
        for entry in entries:
            self._visit_entry(entry, directory / entry.name, prefix + entry.name, ancestors)

    def _visit_entry(
        self, entry: os.DirEntry[str], lexical: Path, rel: str, ancestors: frozenset[Path]
    ) -> None:
        if entry.name in SKIPPED_NAMES or entry.name.endswith(".pyc"):
            return
        is_dir = entry.is_dir()  # follows symlinks; False for a broken one
        if self.spec is not None and self.spec.match_file(rel + "/" if is_dir else rel):
            return
        if self._excluded(lexical):
            return
        is_link = entry.is_symlink()
        real = self._link_target(lexical) if is_link else lexical
        if is_link and self._excluded(real):
            return
        if is_dir:
            if real in ancestors:
                raise BundleError(
                    f"symlink {lexical} loops back to {real}", hint="remove the symlink"
                )
            self.visit(real, rel + "/", ancestors | {real})
        elif real.is_file():
            problem = name_problem(rel)
            if problem is not None:
                raise BundleError(
                    f"cannot bundle {lexical}: its path {problem}", hint="rename the file"
                )
            self.files.append((rel, real))
        else:
            raise BundleError(
                f"cannot bundle {lexical}: not a regular file or directory",
                hint=f"remove it or list it in {IGNORE_FILE}",
            )

    def _excluded(self, path: Path) -> bool:
        return any(path == ex or path.is_relative_to(ex) for ex in self.excludes)

    def _link_target(self, link: Path) -> Path:
        """Resolve a symlink, which must end at an existing path inside the root."""
        try:
            target = link.resolve(strict=True)
        except (OSError, RuntimeError) as exc:
            raise BundleError(
                f"symlink {link} is broken or loops", hint=f"fix it or list it in {IGNORE_FILE}"
            ) from exc
        if not target.is_relative_to(self.base):
            raise BundleError(
                f"symlink {link} points outside the bundle to {target}",
                hint=f"copy the target into the bundle or list the link in {IGNORE_FILE}",
            )
        return target
