"""Read YAML files (label maps, archive rules, info files, policies) as untrusted input, with one-line errors.

Every YAML file this toolkit reads may have been edited by hand or come from
elsewhere, so it is parsed by :func:`parse_yaml` with these rules on top of
PyYAML's safe subset (no Python objects):

- **Bounded aliases.** An alias (``*name``) may re-use an anchored node, but the
  document with every alias expanded may hold at most
  :data:`MAX_ALIAS_EXPANSION` nodes more than the text itself: an "alias bomb"
  (nine nested levels of nine aliases expand to 387 million nodes) is refused
  at once instead of taking minutes and gigabytes. Merge keys (``<<``) are
  refused.
- **No duplicate keys.** Two keys of one mapping that read the same are refused
  (PyYAML silently keeps the last one): ``1:`` twice, and also ``1:`` beside
  ``'1':`` or ``010:`` beside ``'010':``.
- **Integers are plain decimals.** ``010`` (octal 8 in YAML 1.1), ``0x1F``,
  ``1_000`` or ``1:30`` (sexagesimal) are read as text, never as a number the
  author did not mean; a reader that needs an integer then refuses the text
  (e.g. a label map's indices, see :mod:`utils.labels.label_maps`).
- Nesting deeper than libyaml's limit, bad UTF-8 and any syntax error are one
  line naming the file, the line and the column.

What the content must look like (keys of the documented type, required
fields) is each reader's check. :func:`load_yaml_file` is the entry point for
files (also for future readers such as audit policies); :func:`dump_yaml`
writes without anchors or aliases.

libyaml's C parser and emitter (shipped in PyYAML's wheels) are used when
present (~10x faster than the pure-Python ones), with the same rules.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from utils.files.aliases import PathLike

__all__ = ["MAX_ALIAS_EXPANSION", "YamlFileError", "yaml_error_line", "load_yaml_file", "parse_yaml", "dump_yaml"]

#: Nodes that aliases may add to a document when expanded (a document without aliases adds none).
MAX_ALIAS_EXPANSION = 10_000

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BaseDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

#: YAML 1.1's int resolver without octal, hex, binary, underscores and sexagesimal forms.
_PLAIN_INT = re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$")
_INT_TAG = "tag:yaml.org,2002:int"


class _UntrustedLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """The safe loader with plain-decimal integers only (checks on the node graph are in :func:`parse_yaml`)."""


_UntrustedLoader.yaml_implicit_resolvers = {
    first: [(tag, _PLAIN_INT if tag == _INT_TAG else regexp) for tag, regexp in resolvers]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}


class _NoAliasDumper(_BaseDumper):  # type: ignore[misc, valid-type]
    """Safe dumper that writes a shared object twice instead of an anchor and an alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


class YamlFileError(ValueError):
    """A YAML file that cannot be parsed or breaks the rules above; the message is one line."""


def yaml_error_line(exc: yaml.YAMLError) -> str:
    """``line 3, column 7: mapping values are not allowed here`` from a PyYAML exception."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    text = f"{where}{problem}" + (f" ({context})" if context else "")
    return " ".join(text.split())


def _where(node: Node) -> str:
    mark = node.start_mark
    return f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""


def _check_graph(root: Node, loader: Any, duplicates: bool = True) -> None:
    """Refuse duplicate keys (unless ``duplicates`` is False), merge keys and aliases that expand beyond :data:`MAX_ALIAS_EXPANSION` nodes."""
    expanded: dict[int, int] = {}  # id(node) -> nodes below it, aliases expanded (memoised: linear in distinct nodes)
    visiting: set[int] = set()

    def size(node: Node) -> int:
        key = id(node)
        if key in expanded:
            return expanded[key]
        if key in visiting:  # a recursive alias (&a [*a])
            raise yaml.YAMLError(f"{_where(node)}recursive alias")
        visiting.add(key)
        total = 1
        if isinstance(node, SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, MappingNode):
            seen: dict[Any, Node] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise yaml.YAMLError(f"{_where(key_node)}merge keys ('<<') are not accepted")
                for ident in _key_identities(key_node, loader) if duplicates else ():
                    if ident in seen:
                        raise yaml.YAMLError(f"{_where(key_node)}duplicate key {_key_text(key_node)} (first at {_where(seen[ident]).rstrip(': ')})")
                    seen[ident] = key_node
                total += size(key_node) + size(value_node)
        visiting.discard(key)
        expanded[key] = total
        if total > limit:
            raise yaml.YAMLError(f"aliases expand the document to more than {limit} nodes (an alias bomb?)")
        return total

    distinct = _count_distinct(root)
    limit = distinct + MAX_ALIAS_EXPANSION
    size(root)


def _count_distinct(root: Node) -> int:
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, MappingNode):
            for k, v in node.value:
                stack.extend((k, v))
    return len(seen)


def _key_identities(node: Node, loader: Any) -> list[Any]:
    """What makes two keys the same: their text (``1`` = ``'1'``) and, for scalars, their value (``1`` = ``+1``)."""
    if not isinstance(node, ScalarNode):
        return [("node", id(node))]
    idents: list[Any] = [("text", node.value)]
    try:
        value = loader.construct_object(node)
        hash(value)
        idents.append(("value", type(value).__name__ if isinstance(value, bool) else "v", value))
    except Exception:  # noqa: BLE001 - an unconstructible key is reported by the constructor later
        pass
    return idents


def _key_text(node: Node) -> str:
    return repr(node.value) if isinstance(node, ScalarNode) else f"<{type(node).__name__}>"


def parse_yaml(text: str, loader_class: type | None = None, *, duplicate_keys: bool = True) -> Any:
    """Parse one YAML document safely under the rules of this module.

    Parameters
    ----------
    text : str
    loader_class : type, optional
        A safe loader subclass with its own constructors (e.g. a reader that keeps dates as text);
        default: this module's (plain decimal integers). The node checks apply to either.
    duplicate_keys : bool
        Refuse duplicate keys here (False: the loader class checks them with its own message).

    Raises
    ------
    yaml.YAMLError
        Syntax error, duplicate key, merge key, recursive alias or an alias expansion beyond the limit.
    """
    loader = (loader_class or _UntrustedLoader)(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_graph(node, loader, duplicates=duplicate_keys)
        return loader.construct_document(node)
    except RecursionError:
        raise yaml.YAMLError("nesting too deep") from None
    finally:
        loader.dispose()


def dump_yaml(data: Any, **kwargs: Any) -> str:
    """``yaml.safe_dump`` with libyaml's C emitter when available (same keyword arguments), never writing aliases."""
    return yaml.dump(data, Dumper=_NoAliasDumper, **kwargs)


def load_yaml_file(path: PathLike, what: str = "YAML file") -> Any:
    """Read and parse a YAML file as untrusted input (see the module docstring).

    Parameters
    ----------
    path : str or Path
    what : str
        What the file is, for the message (``label map``, ``VerSe rules``).

    Raises
    ------
    FileNotFoundError
        No such file (the message names it).
    YamlFileError
        Unreadable, not UTF-8, not valid YAML or breaking a rule (one line: file, line, column, problem).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlFileError(f"{path}: cannot read the {what} ({exc})") from exc
    try:
        return parse_yaml(text)
    except yaml.YAMLError as exc:
        raise YamlFileError(f"{path}: {what} is not valid YAML ({yaml_error_line(exc)})") from exc
