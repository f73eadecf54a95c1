"""Parse study, space and targets files with bounded memory, failing in one line.

A file is refused, as a :class:`ContractViolationError`, before it can grow without bound:

- larger than :data:`MAX_FILE_BYTES`;
- nested deeper than :data:`MAX_DEPTH` (also through YAML aliases), which would otherwise end
  in a ``RecursionError`` somewhere downstream;
- more than :data:`MAX_NODES` values once YAML aliases are expanded (a "billion laughs" file is
  a few hundred bytes that every later walk, a copy or a ``repr``, expands to gigabytes); a
  recursive alias is refused outright;
- a mapping that repeats a key (YAML and JSON parsers silently keep the last one).

:data:`MAX_TASKS` bounds what a study may compile to; :func:`check_task_count` is called before
any task list is built. :func:`bounded_repr` keeps error messages short whatever the value.
"""

from __future__ import annotations

import json
import reprlib
from collections.abc import Iterator
from itertools import chain, repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelops_contracts.errors import ContractViolationError

if TYPE_CHECKING:
    import yaml

__all__ = [
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "MAX_TASKS",
    "bounded_repr",
    "check_task_count",
    "parse_json",
    "parse_yaml",
    "read_document",
]

MAX_FILE_BYTES = 64 * 2**20
"""Largest study, space or targets file read. Parsing YAML costs tens of times the text size,
so this keeps a parse within a few GB; a 100,000-set study is about 10 MB."""

MAX_DEPTH = 64
"""Deepest nesting of lists and mappings (the root mapping is level 1)."""

MAX_NODES = 10_000_000
"""Most values (scalars, lists, mappings) in one file, counting each alias use in full."""

MAX_TASKS = 10_000_000
"""Most tasks one study compiles to (about 70 bytes and 1.5 us each to compile, more to run)."""

_LINE_SEARCH_BYTES = 4 * 2**20  # a JSON duplicate key is located by a YAML parse up to this size
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _BoundedRepr(reprlib.Repr):
    """``reprlib`` with short limits and ints that never format thousands of digits."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = 6
        self.maxstring = self.maxother = 60
        self.maxlong = 40

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:
            return f"<int of {x.bit_length()} bits>"
        return super().repr_int(x, level)

    def repr_dict(self, x: dict[Any, Any], level: int) -> str:
        if len(x) > 10 * self.maxdict:  # reprlib sorts every key first
            shown = list(x.items())[: self.maxdict]
            items = ", ".join(
                f"{self.repr1(k, level - 1)}: {self.repr1(v, level - 1)}" for k, v in shown
            )
            return f"{{{items}, ... ({len(x)} keys)}}"
        return super().repr_dict(x, level)


_repr = _BoundedRepr()


def bounded_repr(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to at most ``limit`` characters, in time independent of its size."""
    try:
        shown = _repr.repr(value)
    except Exception:  # a user object whose __repr__ fails
        shown = f"<{type(value).__name__}>"
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def check_task_count(count: int, detail: str = "") -> None:
    """Refuse a study of more than :data:`MAX_TASKS` tasks before any task is built.

    Raises:
        ContractViolationError: ``count`` exceeds :data:`MAX_TASKS`.
    """
    if count > MAX_TASKS:
        raise ContractViolationError(
            f"the study has {count:,} tasks{detail}, more than the limit of {MAX_TASKS:,} "
            "per job; split it into several studies",
            field="n_replicates",
            value=count,
        )


class _Refused(ValueError):
    """The document breaks a limit; ``line`` is 1-based, or None when unknown."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


def _yaml_loader() -> type[yaml.SafeLoader]:
    import yaml

    class _Loader(yaml.SafeLoader):
        """SafeLoader that weighs each node as composed: expanded size, height, duplicate keys."""

        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self.depth = 0
            self.weights: dict[int, tuple[int, int]] = {}  # id(collection) -> (size, height)

        def weight(self, node: yaml.Node) -> tuple[int, int]:
            if isinstance(node, yaml.ScalarNode):
                return 1, 1
            return self.weights[id(node)]

        def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()  # type: ignore[no-untyped-call]
                line = event.start_mark.line + 1
                target = self.anchors.get(event.anchor)
                if target is not None and not isinstance(target, yaml.ScalarNode):
                    if id(target) not in self.weights:
                        raise _Refused(f"alias *{event.anchor} refers to itself", line)
                    if self.depth + self.weight(target)[1] > MAX_DEPTH:
                        raise _Refused(f"nested deeper than {MAX_DEPTH} levels", line)
                return super().compose_node(parent, index)
            self.depth += 1
            if self.depth > MAX_DEPTH:
                line = self.peek_event().start_mark.line + 1  # type: ignore[no-untyped-call]
                raise _Refused(f"nested deeper than {MAX_DEPTH} levels", line)
            try:
                node = super().compose_node(parent, index)
            finally:
                self.depth -= 1
            if node is None or isinstance(node, yaml.ScalarNode):
                return node
            if isinstance(node, yaml.MappingNode):
                children = [child for pair in node.value for child in pair]
            else:
                children = node.value
            size, height = 1, 1
            for child in children:
                child_size, child_height = self.weight(child)
                size += child_size
                height = max(height, child_height + 1)
            if size > MAX_NODES:
                raise _Refused(
                    f"more than {MAX_NODES:,} values once its aliases are expanded",
                    node.start_mark.line + 1,
                )
            self.weights[id(node)] = (size, height)
            return node

        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
            first: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = self.construct_object(key_node)
                line = key_node.start_mark.line + 1
                if key in first:
                    raise _Refused(
                        f"duplicate key {bounded_repr(key)} (first on line {first[key]})", line
                    )
                first[key] = line
            return super().construct_mapping(node, deep)

    return _Loader


def _refused(what: str, err: _Refused) -> ContractViolationError:
    where = f", line {err.line}" if err.line is not None else ""
    return ContractViolationError(f"{what}{where}: {err}", field="file", value=None)


def _check_size(what: str, size: int) -> None:
    if size > MAX_FILE_BYTES:
        raise ContractViolationError(
            f"{what} is {size / 2**20:.0f} MB, more than the limit of {MAX_FILE_BYTES // 2**20} MB",
            field="file",
            value=size,
        )


def parse_yaml(text: str, *, what: str) -> Any:
    """Parse one YAML document within the limits of this module.

    Raises:
        ContractViolationError: the text is not valid YAML, or breaks a limit (named with its
            line).
    """
    import yaml

    _check_size(what, len(text))
    try:
        return _load_yaml(text)
    except _Refused as err:
        raise _refused(what, err) from None
    except (yaml.YAMLError, ValueError, OverflowError) as err:  # ValueError: a 5000-digit int
        raise ContractViolationError(
            f"{what} is not valid YAML: {_one_line(err)}", field="file", value=None
        ) from None


def _load_yaml(text: str) -> Any:
    loader = _yaml_loader()(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) == len(pairs):  # the common case, decided without a Python-level loop
        return result
    result = {}
    for key, value in pairs:
        if key in result:
            raise _Refused(f"duplicate key {bounded_repr(key)}", None)
        result[key] = value
    return result


_CONTAINERS = frozenset((dict, list))  # the only container types ``json.loads`` builds


def _check_tree(data: Any) -> int:
    """Depth and value count of parsed JSON, walked without recursion; returns the key count.

    A container's values are counted by its length, and one whose values are all scalars (told
    by their set of types) is not entered; a list of such mappings, the parameter sets of a
    study, is counted in one go. The stack holds one iterator per level, never a container's
    worth of entries; children are visited last first, the order of a walk that pushes them all,
    so the first limit broken is the same.
    """
    count = 1
    keys = 0
    containers = _CONTAINERS
    stack: list[tuple[Iterator[Any], int]] = [(iter((data,)), 1)]
    while stack:
        it, depth = stack[-1]
        for node in it:
            kind = type(node)
            if kind is dict:
                children: Any = node.values()
                keys += len(children)
            elif kind is list:
                children = node
            else:
                continue
            if not children:
                continue
            if depth >= MAX_DEPTH:
                raise _Refused(f"nested deeper than {MAX_DEPTH} levels", None)
            count += len(children)
            if count > MAX_NODES:
                raise _Refused(f"more than {MAX_NODES:,} values", None)
            if containers.isdisjoint(map(type, children)):
                continue
            if kind is list and depth + 1 < MAX_DEPTH and _flat_mappings(children):
                # its mappings hold scalars only: no limit but the count can be broken below
                inner = sum(map(len, children))
                keys += inner
                count += inner
                if count > MAX_NODES:
                    raise _Refused(f"more than {MAX_NODES:,} values", None)
                continue
            stack.append((reversed(children), depth + 1))
            break
        else:
            stack.pop()
    return keys


def _flat_mappings(items: list[Any]) -> bool:
    """Whether ``items`` are all dicts whose values are all scalars (C-level passes)."""
    return set(map(type, items)) == {dict} and _CONTAINERS.isdisjoint(
        map(type, chain.from_iterable(map(dict.values, items)))
    )


def parse_json(text: str | bytes, *, what: str) -> Any:
    """Parse a JSON document within the limits of this module.

    Raises:
        ContractViolationError: the text is not valid JSON, or breaks a limit.
    """
    _check_size(what, len(text))
    data = _parse_json_plain(text)
    if data is not _UNDECIDED:
        return data
    try:
        data = json.loads(text, object_pairs_hook=_unique_pairs)
        _check_tree(data)
    except _Refused as err:
        if err.line is None and len(text) <= _LINE_SEARCH_BYTES:
            err.line = _yaml_line(text)
        raise _refused(what, err) from None
    except RecursionError:
        raise _refused(what, _Refused(f"nested deeper than {MAX_DEPTH} levels", None)) from None
    except ValueError as err:
        raise ContractViolationError(
            f"{what} is not valid JSON: {_one_line(err)}", field="file", value=None
        ) from None
    return data


_UNDECIDED: Any = object()


def _parse_json_plain(text: str | bytes) -> Any:
    """The document, parsed without a Python call per mapping, when it is certainly fine.

    Duplicate keys are then told by counting: the text has one ``:`` per key it holds (a
    repeated key is one the parsed mappings no longer have) plus the colons written inside its
    strings. Those are the colons of the parsed strings when no ``\\u`` escape could have
    written one, so the counts agree exactly when no key repeats. Anything else (an escape, an
    error of any kind) is :data:`_UNDECIDED`, left to the exact parse that names the problem.
    """
    try:
        data = json.loads(text)
        keys = _check_tree(data)
    except (_Refused, RecursionError, ValueError):
        return _UNDECIDED
    if isinstance(text, bytes):  # maybe UTF-16 or -32: only the plain count is safe there
        return data if text.count(b":") == keys else _UNDECIDED
    colons = text.count(":")
    if colons == keys:
        return data
    if "\\u" not in text and colons == keys + _colons_in_strings(data):
        return data
    return _UNDECIDED


def _colons_in_strings(data: Any) -> int:
    """How many ``:`` the keys and str values of a parsed document hold."""
    total = 0
    stack = [data]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            total += sum(map(str.count, node, repeat(":")))
            values: Any = node.values()
        elif type(node) is list:
            if _flat_mappings(node):  # a list of parameter sets, in C-level passes
                total += sum(map(str.count, chain.from_iterable(node), repeat(":")))
                strings = filter(str.__instancecheck__, chain.from_iterable(map(dict.values, node)))
                total += sum(map(str.count, strings, repeat(":")))
                continue
            values = node
        else:
            continue
        for value in values:
            if type(value) is str:
                total += value.count(":")
            elif type(value) in _CONTAINERS:
                stack.append(value)
    return total


def _yaml_line(text: str | bytes) -> int | None:
    """The line the YAML loader blames, to locate a problem found by the JSON parser."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    try:
        _load_yaml(text)
    except _Refused as err:
        return err.line
    except Exception:  # JSON that YAML 1.1 does not read: no line then
        return None
    return None


def read_document(path: str | Path, *, what: str) -> Any:
    """Read a ``.json`` file as JSON and anything else as YAML, within the limits above.

    ``what`` names the file in messages, e.g. ``"study file"``; the path is appended.

    Raises:
        ContractViolationError: the file is missing, unreadable, not UTF-8, too large, invalid
            or breaks a limit.
    """
    path = Path(path)
    label = f"{what} {str(path)!r}"
    try:
        _check_size(label, path.stat().st_size)
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ContractViolationError(
            f"cannot read {label}: {_one_line(err)}", field="file", value=str(path)
        ) from None
    if path.suffix.lower() == ".json":
        return parse_json(text, what=label)
    return parse_yaml(text, what=label)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= 300 else text[:297] + "..."
