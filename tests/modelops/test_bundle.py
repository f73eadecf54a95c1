"""Tests for model-code bundles: file selection, digest, snapshot store and materialization."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import stat
import tempfile
import threading
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelops.bundle import (
    BundleStore,
    bundle_files,
    compute_digest,
    linked_bundle,
    materialize,
)
from modelops_contracts.errors import BundleError
from modelops_contracts.task import bundle_digest

HEX = "ab" * 32


def write(root: Path, files: dict[str, str | bytes]) -> Path:
    """Create ``files`` (relative path → content) under ``root`` and return ``root``."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode() if isinstance(content, str) else content
        path.write_bytes(data)
    root.mkdir(parents=True, exist_ok=True)
    return root


def reference_digest(files: dict[str, bytes]) -> str:
    """The digest spelled out from the spec, independently of the implementation."""
    sha = hashlib.sha256()
    for rel in sorted(files):
        content = files[rel]
        sha.update(rel.encode() + b"\0" + len(content).to_bytes(8, "big") + content)
    return "sha256:" + sha.hexdigest()


def names(root: Path, exclude: Sequence[Path] = ()) -> list[str]:
    return [rel for rel, _ in bundle_files(root, exclude=exclude)]


def tree(root: Path) -> list[str]:
    """Every path under ``root``, relative, sorted: to prove nothing else was written."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def make_zip(path: Path, members: list[tuple[str, bytes]], *, symlink: str | None = None) -> Path:
    """Write a hand-made zip, optionally with a symlink entry named ``symlink``."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members:
            archive.writestr(name, data)
        if symlink is not None:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "../../outside.py")
    return path


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write(
        tmp_path / "model",
        {"model.py": "VALUE = 1\n", "pkg/__init__.py": "", "pkg/data.csv": "a,b\n1,2\n"},
    )


# --- digest -------------------------------------------------------------------------------------


def test_digest_matches_the_specified_framing(model: Path) -> None:
    expected = reference_digest(
        {"model.py": b"VALUE = 1\n", "pkg/__init__.py": b"", "pkg/data.csv": b"a,b\n1,2\n"}
    )
    assert compute_digest(model) == expected


def test_digest_ignores_mtimes_permissions_and_creation_order(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {"b.py": "b", "a/x.py": "x", "a/y.py": "y", "c.txt": "c"}
    first = write(tmp_path / "one", files)
    second = write(tmp_path / "two", dict(reversed(list(files.items()))))
    os.utime(second / "b.py", (1_000_000, 1_000_000))
    (second / "c.txt").chmod(0o755)
    assert compute_digest(first) == compute_digest(second)


def test_digest_changes_with_content_or_path(model: Path) -> None:
    before = compute_digest(model)
    (model / "model.py").write_text("VALUE = 2\n")
    edited = compute_digest(model)
    (model / "model.py").rename(model / "model2.py")
    renamed = compute_digest(model)
    assert len({before, edited, renamed}) == 3


def test_digest_framing_is_unambiguous(tmp_path: Path) -> None:
    # Same concatenated bytes, split differently between two files.
    one = write(tmp_path / "one", {"a": "xy", "b": "z"})
    two = write(tmp_path / "two", {"a": "x", "b": "yz"})
    assert compute_digest(one) != compute_digest(two)


def test_digest_streams_files_larger_than_a_block(tmp_path: Path) -> None:
    big = os.urandom(3 * (1 << 20) + 17)
    root = write(tmp_path / "big", {"weights.bin": big})
    assert compute_digest(root) == reference_digest({"weights.bin": big})


file_names = st.sampled_from(["x.py", "y.txt", "z.csv", "Ü.py", "a b.md"])
dir_names = st.sampled_from(["", "d1/", "d1/d2/", "e/", "e/d1/"])


@settings(max_examples=15, deadline=None, database=None)
@given(
    contents=st.dictionaries(
        st.builds(str.__add__, dir_names, file_names),
        st.binary(max_size=64),
        min_size=1,
        max_size=8,
    ),
    data=st.data(),
)
def test_digest_invariant_to_creation_order(
    contents: dict[str, bytes], data: st.DataObject
) -> None:
    order = data.draw(st.permutations(sorted(contents)))
    with tempfile.TemporaryDirectory() as tmp:
        ordered = write(Path(tmp) / "ordered", {rel: contents[rel] for rel in sorted(contents)})
        shuffled = write(Path(tmp) / "shuffled", {rel: contents[rel] for rel in order})
        for i, rel in enumerate(order):
            os.utime(shuffled / rel, (1_000_000 + i, 1_000_000 + i))
        assert compute_digest(ordered) == compute_digest(shuffled) == reference_digest(contents)


# --- which files --------------------------------------------------------------------------------


def test_bundle_files_sorted_relative_posix_and_absolute(model: Path) -> None:
    files = bundle_files(model)
    assert [rel for rel, _ in files] == ["model.py", "pkg/__init__.py", "pkg/data.csv"]
    assert all(path.is_absolute() and path.is_file() for _, path in files)


def test_default_skips(model: Path) -> None:
    write(
        model,
        {
            ".git/HEAD": "ref",
            "vendored/.git": "gitdir: elsewhere",  # a submodule's .git file
            ".venv/lib/site.py": "",
            "__pycache__/model.cpython-311.pyc": "",
            "pkg/__pycache__/x.cpython-311.pyc": "",
            "stray.pyc": "",
            ".modelops/bundles/x.zip": "",
            ".hypothesis/db": "",
            ".pytest_cache/v": "",
            ".mypy_cache/v": "",
            ".ruff_cache/v": "",
        },
    )
    assert names(model) == ["model.py", "pkg/__init__.py", "pkg/data.csv"]


def test_modelopsignore_patterns_negation_and_directories(model: Path) -> None:
    write(
        model,
        {
            ".modelopsignore": "*.log\n!keep.log\ndata/\n/build\nnotes/*.md\n!notes/keep.md\n",
            "run.log": "",
            "keep.log": "",
            "sub/deep.log": "",
            "data/big.csv": "",
            "sub/data/x.csv": "",
            "build/out.txt": "",
            "sub/build/out.txt": "",
            "notes/a.md": "",
            "notes/keep.md": "",
        },
    )
    assert names(model) == [
        ".modelopsignore",
        "keep.log",
        "model.py",
        "notes/keep.md",
        "pkg/__init__.py",
        "pkg/data.csv",
        "sub/build/out.txt",
    ]


def test_modelopsignore_cannot_reinclude_under_an_ignored_directory(model: Path) -> None:
    # gitignore semantics: once data/ is excluded, nothing below it comes back.
    write(model, {".modelopsignore": "data/\n!data/keep.csv\n", "data/keep.csv": ""})
    assert "data/keep.csv" not in names(model)


def test_exclude_store_inside_bundle(model: Path) -> None:
    store_dir = model / "runs"
    write(store_dir, {"ledger.sqlite": "x"})
    assert "runs/ledger.sqlite" in names(model)
    assert names(model, exclude=[store_dir]) == ["model.py", "pkg/__init__.py", "pkg/data.csv"]
    assert compute_digest(model, exclude=[store_dir]) == compute_digest(
        model, exclude=[Path(os.path.relpath(store_dir))]
    )


def test_store_inside_bundle_keeps_the_digest_stable(model: Path) -> None:
    store = BundleStore(model / "runs")
    ref = store.put(model)
    assert store.put(model) == ref
    assert compute_digest(model, exclude=[model / "runs"]) == ref


def test_symlink_inside_root_is_followed_as_a_regular_file(model: Path, tmp_path: Path) -> None:
    (model / "alias.py").symlink_to("model.py")
    (model / "pkg_link").symlink_to("pkg", target_is_directory=True)
    copy = write(
        tmp_path / "copy",
        {
            "model.py": "VALUE = 1\n",
            "alias.py": "VALUE = 1\n",
            "pkg/__init__.py": "",
            "pkg/data.csv": "a,b\n1,2\n",
            "pkg_link/__init__.py": "",
            "pkg_link/data.csv": "a,b\n1,2\n",
        },
    )
    assert compute_digest(model) == compute_digest(copy)
    store = BundleStore(tmp_path / "store")
    with zipfile.ZipFile(store.path(store.put(model))) as archive:
        modes = {info.filename: info.external_attr >> 16 for info in archive.infolist()}
    assert modes["alias.py"] == stat.S_IFREG | 0o644


@pytest.mark.parametrize("is_dir", [False, True])
def test_symlink_outside_root_is_refused(model: Path, tmp_path: Path, is_dir: bool) -> None:
    outside = write(tmp_path / "outside", {"secret.py": "x"})
    target = outside if is_dir else outside / "secret.py"
    (model / "leak").symlink_to(target, target_is_directory=is_dir)
    with pytest.raises(BundleError, match=r"leak.*outside"):
        bundle_files(model)


def test_ignored_or_skipped_outside_symlink_is_not_an_error(model: Path, tmp_path: Path) -> None:
    outside = write(tmp_path / "outside", {"secret.py": "x"})
    (model / ".venv").symlink_to(outside, target_is_directory=True)
    (model / "leak").symlink_to(outside, target_is_directory=True)
    write(model, {".modelopsignore": "leak\n"})
    assert names(model) == [".modelopsignore", "model.py", "pkg/__init__.py", "pkg/data.csv"]


def test_broken_and_looping_symlinks_are_refused(model: Path) -> None:
    (model / "dangling.py").symlink_to("missing.py")
    with pytest.raises(BundleError, match=r"dangling\.py"):
        bundle_files(model)
    (model / "dangling.py").unlink()
    (model / "pkg" / "up").symlink_to("..", target_is_directory=True)
    with pytest.raises(BundleError, match="loops"):
        bundle_files(model)


def test_root_missing_not_a_directory_or_empty(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        bundle_files(tmp_path / "nope")
    write(tmp_path, {"file.py": ""})
    with pytest.raises(BundleError, match="not a directory"):
        bundle_files(tmp_path / "file.py")
    empty = write(tmp_path / "empty", {"__pycache__/x.pyc": "", ".git/HEAD": ""})
    with pytest.raises(BundleError, match="no files"):
        compute_digest(empty)


def test_unportable_file_name_is_refused(model: Path) -> None:
    write(model, {"back\\slash.py": ""})
    with pytest.raises(BundleError, match="backslash"):
        bundle_files(model)


# --- refs ---------------------------------------------------------------------------------------


# --- store --------------------------------------------------------------------------------------


def test_put_is_idempotent_atomic_and_leaves_no_temp_files(model: Path, tmp_path: Path) -> None:
    store = BundleStore(tmp_path / "store")
    ref = store.put(model)
    assert ref == compute_digest(model)
    zip_path = store.path(ref)
    first = zip_path.stat()
    assert store.put(model) == ref
    assert zip_path.stat().st_ino == first.st_ino
    assert os.listdir(store.bundles_dir) == [f"{bundle_digest(ref)}.zip"]
    assert store.has(ref)
    assert store.read_bytes(ref) == zip_path.read_bytes()


def test_snapshot_zip_is_deterministic(model: Path, tmp_path: Path) -> None:
    (model / "model.py").chmod(0o755)
    ref = BundleStore(tmp_path / "a").put(model)
    copy = write(
        tmp_path / "copy",
        {"pkg/data.csv": "a,b\n1,2\n", "pkg/__init__.py": "", "model.py": "VALUE = 1\n"},
    )
    os.utime(copy / "model.py", (2_000_000_000, 2_000_000_000))
    other = BundleStore(tmp_path / "b")
    assert other.put(copy) == ref
    assert BundleStore(tmp_path / "a").read_bytes(ref) == other.read_bytes(ref)
    with zipfile.ZipFile(other.path(ref)) as archive:
        infos = archive.infolist()
    assert [i.filename for i in infos] == ["model.py", "pkg/__init__.py", "pkg/data.csv"]
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.external_attr >> 16 for i in infos} == {stat.S_IFREG | 0o644}
    assert {i.compress_type for i in infos} == {zipfile.ZIP_DEFLATED}


def test_failed_put_leaves_nothing(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    store = BundleStore(tmp_path / "store")
    with pytest.raises(BundleError, match="cannot write bundle snapshot"):
        store.put(model)
    assert os.listdir(store.bundles_dir) == []


def test_put_snapshot_agrees_with_its_digest_while_a_file_is_rewritten(
    model: Path, tmp_path: Path
) -> None:
    size = 2 * (1 << 20)
    blobs = [b"a" * size, b"b" * size]
    write(model, {"weights.bin": blobs[0]})
    stop = threading.Event()

    def rewrite() -> None:
        i = 0
        while not stop.is_set():
            with (model / "weights.bin").open("r+b") as f:
                f.write(blobs[i % 2])
            i += 1

    writer = threading.Thread(target=rewrite)
    writer.start()
    try:
        refs = [BundleStore(tmp_path / f"s{i}").put(model) for i in range(3)]
    finally:
        stop.set()
        writer.join()
    for i, ref in enumerate(refs):
        # materialize re-hashes the zip's content: it must be exactly the ref put returned.
        materialize(ref, BundleStore(tmp_path / f"s{i}").path(ref), tmp_path / f"cache{i}")


def test_missing_snapshot_raises(tmp_path: Path) -> None:
    store = BundleStore(tmp_path / "store")
    ref = f"sha256:{HEX}"
    assert not store.has(ref)
    with pytest.raises(BundleError, match="not stored"):
        store.path(ref)
    with pytest.raises(BundleError, match="not stored"):
        store.read_bytes(ref)


def test_put_bytes_round_trip(model: Path, tmp_path: Path) -> None:
    source = BundleStore(tmp_path / "driver")
    ref = source.put(model)
    worker = BundleStore(tmp_path / "worker")
    worker.put_bytes(ref, source.read_bytes(ref))
    worker.put_bytes(ref, source.read_bytes(ref))
    assert worker.read_bytes(ref) == source.read_bytes(ref)
    assert os.listdir(worker.bundles_dir) == [f"{bundle_digest(ref)}.zip"]


def test_put_bytes_rejects_content_that_is_not_the_ref(model: Path, tmp_path: Path) -> None:
    source = BundleStore(tmp_path / "driver")
    ref = source.put(model)
    data = source.read_bytes(ref)
    (model / "model.py").write_text("VALUE = 2\n")
    other_ref = source.put(model)
    worker = BundleStore(tmp_path / "worker")
    with pytest.raises(BundleError, match="holds content"):
        worker.put_bytes(other_ref, data)
    with pytest.raises(BundleError, match="not a readable zip"):
        worker.put_bytes(ref, b"not a zip at all")
    evil = make_zip(tmp_path / "evil.zip", [("../evil.py", b"x")])
    with pytest.raises(BundleError, match="unsafe member"):
        worker.put_bytes(ref, evil.read_bytes())
    assert not worker.has(ref)
    assert not worker.has(other_ref)
    assert not worker.bundles_dir.exists() or os.listdir(worker.bundles_dir) == []


# --- materialize --------------------------------------------------------------------------------


def test_materialize_round_trip_gives_identical_digest(model: Path, tmp_path: Path) -> None:
    store = BundleStore(tmp_path / "store")
    ref = store.put(model)
    sources: tuple[Path | bytes, ...] = (store.path(ref), store.read_bytes(ref))
    for i, source in enumerate(sources):
        cache = tmp_path / f"cache{i}"
        target = materialize(ref, source, cache)
        assert target == cache / bundle_digest(ref)
        assert compute_digest(target) == ref
        assert os.listdir(cache) == [bundle_digest(ref)]  # no staging directory left behind


def test_materialize_reuses_existing_directory_without_reading(model: Path, tmp_path: Path) -> None:
    store = BundleStore(tmp_path / "store")
    ref = store.put(model)
    first = materialize(ref, store.path(ref), tmp_path / "cache")
    # The source is never opened again: even garbage bytes are fine once materialized.
    assert materialize(ref, b"garbage", tmp_path / "cache") == first


def test_materialize_concurrently_extracts_once(model: Path, tmp_path: Path) -> None:
    write(model, {f"many/m{i:03}.py": f"X = {i}\n" for i in range(40)})
    store = BundleStore(tmp_path / "store")
    ref = store.put(model)
    data = store.read_bytes(ref)
    start = threading.Barrier(6)
    results: list[Path] = []

    def race() -> None:
        start.wait()
        results.append(materialize(ref, data, tmp_path / "cache"))

    threads = [threading.Thread(target=race) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [tmp_path / "cache" / bundle_digest(ref)] * 6
    assert os.listdir(tmp_path / "cache") == [bundle_digest(ref)]
    assert compute_digest(results[0]) == ref


def test_materialize_refuses_content_that_is_not_the_ref(model: Path, tmp_path: Path) -> None:
    store = BundleStore(tmp_path / "store")
    ref = store.put(model)
    with pytest.raises(BundleError, match="not sha256:"):
        materialize(f"sha256:{HEX}", store.path(ref), tmp_path / "cache")
    assert os.listdir(tmp_path / "cache") == []
    with pytest.raises(BundleError, match="does not exist"):
        materialize(ref, tmp_path / "missing.zip", tmp_path / "cache")


@pytest.mark.parametrize(
    ("member", "symlink"),
    [
        ("../evil.py", None),
        ("pkg/../../evil.py", None),
        ("/abs.py", None),
        ("C:/evil.py", None),
        ("C:evil.py", None),
        ("..\\evil.py", None),
        (None, "link.py"),
    ],
)
def test_materialize_refuses_zip_slip(
    tmp_path: Path, member: str | None, symlink: str | None
) -> None:
    members = [("a_ok.py", b"fine"), ("z_ok.py", b"fine")]
    if member is not None:
        members.insert(1, (member, b"evil"))
    zip_path = make_zip(tmp_path / "snap.zip", members, symlink=symlink)
    with pytest.raises(BundleError, match=r"unsafe member|symlink member"):
        materialize(f"sha256:{HEX}", zip_path, tmp_path / "cache" / "inner")
    assert tree(tmp_path) == ["cache", "cache/inner", "snap.zip"]


def test_materialize_refuses_duplicate_members(tmp_path: Path) -> None:
    zip_path = tmp_path / "snap.zip"
    with pytest.warns(UserWarning, match="Duplicate name"):
        make_zip(zip_path, [("a.py", b"1"), ("a.py", b"2")])
    with pytest.raises(BundleError, match="twice"):
        materialize(f"sha256:{HEX}", zip_path, tmp_path / "cache")
    assert os.listdir(tmp_path / "cache") == []


def test_materialize_refuses_a_path_that_is_file_and_directory(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "snap.zip", [("a", b"1"), ("a/b.py", b"2")])
    with pytest.raises(BundleError, match="both a file and a directory"):
        materialize(f"sha256:{HEX}", zip_path, tmp_path / "cache")
    assert os.listdir(tmp_path / "cache") == []


def test_materialized_snapshot_is_isolated_from_later_edits(model: Path, tmp_path: Path) -> None:
    store = BundleStore(tmp_path / "store")
    ref = store.put(model)
    (model / "model.py").write_text("VALUE = 2\n")
    (model / "pkg" / "data.csv").unlink()
    target = materialize(ref, store.path(ref), tmp_path / "cache")
    (model / "model.py").write_text("VALUE = 3\n")

    spec = importlib.util.spec_from_file_location("snapshot_model", target / "model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.VALUE == 1
    assert (target / "pkg" / "data.csv").read_text() == "a,b\n1,2\n"
    assert compute_digest(target) == ref


# --- snapshot protection ------------------------------------------------------------------------


def test_materialized_snapshot_is_read_only(model: Path, tmp_path: Path) -> None:
    store = BundleStore(tmp_path / "store")
    ref = store.put(model)
    target = materialize(ref, store.path(ref), tmp_path / "cache")
    for here, _, files in os.walk(target):
        assert stat.S_IMODE(os.stat(here).st_mode) == 0o555
        for name in files:
            assert stat.S_IMODE(os.stat(Path(here, name)).st_mode) == 0o444


def _chmod_writable(target: Path) -> None:
    """Undo the protection, as root effectively can: permission bits do not stop root."""
    for here, _, files in os.walk(target):
        os.chmod(here, 0o755)
        for name in files:
            os.chmod(Path(here, name), 0o644)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: (t / "model.py").write_text("VALUE = 666\n"),
        lambda t: (t / "model.py").write_text("VALUE = 2\n"),  # same size, other content
        lambda t: (t / "helper.py").write_text("SHADOW = 1\n"),
        lambda t: (t / "pkg" / "data.csv").unlink(),
        lambda t: (t / "shadow").mkdir(),  # an importable namespace package
        lambda t: (t / "linked.py").symlink_to(t / "model.py"),
    ],
    ids=["rewritten", "same-size", "added", "removed", "empty-dir", "symlink"],
)
def test_a_tampered_snapshot_is_extracted_again(
    model: Path, tmp_path: Path, tamper: Callable[[Path], object]
) -> None:
    store = BundleStore(tmp_path / "store")
    ref = store.put(model)
    cache = tmp_path / "cache"
    target = materialize(ref, store.path(ref), cache)
    _chmod_writable(target)
    tamper(target)
    assert materialize(ref, store.path(ref), cache) == target
    assert compute_digest(target) == ref
    assert (target / "model.py").read_text() == "VALUE = 1\n"
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*")) == [
        "model.py",
        "pkg",
        "pkg/__init__.py",
        "pkg/data.csv",
    ]
    assert stat.S_IMODE(os.stat(target / "model.py").st_mode) == 0o444
    assert sorted(os.listdir(cache)) == [bundle_digest(ref)]  # no staging or trash left


def test_bytecode_planted_in_a_snapshot_is_dropped(model: Path, tmp_path: Path) -> None:
    store = BundleStore(tmp_path / "store")
    ref = store.put(model)
    target = materialize(ref, store.path(ref), tmp_path / "cache")
    _chmod_writable(target)
    (target / "pkg" / "__pycache__").mkdir()
    (target / "pkg" / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"forged")
    assert materialize(ref, store.path(ref), tmp_path / "cache") == target
    assert not (target / "pkg" / "__pycache__").exists()
    assert compute_digest(target) == ref


def test_a_tampered_snapshot_is_not_replaced_from_a_tampered_zip(
    model: Path, tmp_path: Path
) -> None:
    store = BundleStore(tmp_path / "store")
    ref = store.put(model)
    target = materialize(ref, store.path(ref), tmp_path / "cache")
    _chmod_writable(target)
    (target / "model.py").write_text("VALUE = 666\n")
    other = BundleStore(tmp_path / "other")
    forged = other.path(other.put(write(tmp_path / "evil", {"model.py": "VALUE = 666\n"})))
    with pytest.raises(BundleError, match="not " + ref):
        materialize(ref, forged, tmp_path / "cache")


def test_linked_bundle_holds_exactly_the_bundle_files(model: Path) -> None:
    write(model, {"helper.py": "SECRET = 1\n", ".modelopsignore": "helper.py\n"})
    with linked_bundle(model) as (ref, linked):
        assert ref == compute_digest(model)
        names = sorted(p.relative_to(linked).as_posix() for p in linked.rglob("*") if p.is_file())
        assert names == [".modelopsignore", "model.py", "pkg/__init__.py", "pkg/data.csv"]
        assert (linked / "model.py").read_text() == "VALUE = 1\n"
    assert not linked.exists()
