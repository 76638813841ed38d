"""Read YAML files (label maps, archive rules, info files) with one-line error messages.

PyYAML's own messages span several lines (the problem, then a caret drawing
under the offending line); a routine's error must be one line naming the file,
the place and the problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from utils.aliases import PathLike

__all__ = ["YamlFileError", "yaml_error_line", "load_yaml_file", "parse_yaml", "dump_yaml"]

# libyaml's C parser and emitter (shipped in PyYAML's wheels) are ~10x faster than the pure-Python ones,
# with the same safe subset of YAML; the pure-Python classes are the fallback.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SafeDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load`` with libyaml's C parser when available."""
    return yaml.load(text, Loader=_SafeLoader)  # noqa: S506 - a safe loader


def dump_yaml(data: Any, **kwargs: Any) -> str:
    """``yaml.safe_dump`` with libyaml's C emitter when available (same keyword arguments)."""
    return yaml.dump(data, Dumper=_SafeDumper, **kwargs)


class YamlFileError(ValueError):
    """A YAML file that cannot be parsed; the message is one line."""


def yaml_error_line(exc: yaml.YAMLError) -> str:
    """``line 3, column 7: mapping values are not allowed here`` from a PyYAML exception."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    text = f"{where}{problem}" + (f" ({context})" if context else "")
    return " ".join(text.split())


def load_yaml_file(path: PathLike, what: str = "YAML file") -> Any:
    """Parse a YAML file safely.

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
        Unreadable or not valid YAML (one line: file, line, column, problem).
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
