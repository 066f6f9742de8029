"""docs/configuration.md, rendered from the config models: every section and key with its type, default and help.

The help texts live once, in loop/config.py (pydantic Field descriptions, section docstrings); this module only
lays them out. A unit test compares the committed file with render_reference(). Regenerate with

    python -m loop.config_reference > docs/configuration.md
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from loop.config import CONFIG_FILENAME, ENV_OVERRIDES, Config, _toml_value

COMMAND = "python -m loop.config_reference > docs/configuration.md"

INTRO = f"""\
One TOML file (`{CONFIG_FILENAME}`, or `--config FILE`); every key is optional. `pvar-loop init` writes every
key with its default and its help text as a comment (the text lives once, in `loop/config.py`). A relative
`[paths] data_dir` is relative to the config file's directory, whatever the working directory
(`PVAR_LOOP_DATA_DIR` is relative to the working directory).

The config is validated when it is loaded, i.e. when any command starts: unknown keys and bad values (e.g. a DPO
`loss_type` TRL does not know) are errors naming `[section] key` and the allowed keys or values, not failures
hours later at training time. The training code's settings take their defaults and checks from these sections.

Environment overrides (keep secrets here, not in the file):

{{env}}

Databases: SQLite by default (`<data_dir>/pvar-loop.db`, WAL mode); PostgreSQL with
`PVAR_LOOP_DATABASE_URL=postgresql://user:pass@host/db` (psycopg 3; see [deployment](deployment.md))."""

_BOUNDS = {
    annotated_types.Gt: ">",
    annotated_types.Ge: ">=",
    annotated_types.Lt: "<",
    annotated_types.Le: "<=",
}


def _type_name(tp: object) -> str:
    """A TOML reader's name for an annotation: integer, float, string, path, "a" | "b", ..."""
    if typing.get_origin(tp) is typing.Literal:
        return " \\| ".join(f"`{_toml_value(str(v))}`" for v in typing.get_args(tp))
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args)
    if typing.get_origin(tp) is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    names = {
        bool: "boolean",
        int: "integer",
        float: "float",
        str: "string",
        Path: "path",
        SecretStr: "secret",
    }
    return names.get(tp, getattr(tp, "__name__", str(tp)))  # type: ignore[call-overload]


def _type(field: FieldInfo) -> str:
    out = _type_name(field.annotation)
    bounds = [
        f"{op} {getattr(m, kind.__name__.lower())}"
        for m in field.metadata
        for kind, op in _BOUNDS.items()
        if isinstance(m, kind)
    ]
    return out + (f" ({', '.join(bounds)})" if bounds else "")


def _default(field: FieldInfo) -> str:
    if field.default is None:
        return "unset"
    value = field.default.value if hasattr(field.default, "value") else field.default  # enums: their value
    return f"`{_toml_value(value)}`"


def _cell(text: str) -> str:
    """One table cell: one line, pipes escaped, `<` escaped outside code spans (Markdown would read a tag)."""
    parts = " ".join(text.split()).replace("|", "\\|").split("`")
    return "`".join(p if i % 2 else p.replace("<", "\\<") for i, p in enumerate(parts))


def render_reference() -> str:
    """The whole of docs/configuration.md."""
    env = "\n".join(f"- `{name}`: `[{s}] {k}`" for name, (s, k) in ENV_OVERRIDES.items())
    out = [
        "# Configuration reference",
        "",
        f"<!-- Generated from loop/config.py by `{COMMAND}`; edit the help texts there, not here. -->",
        "",
        INTRO.replace("{env}", env),
        "",
        "Sections: " + ", ".join(f"[`[{name}]`](#{name})" for name in Config.model_fields) + ".",
    ]
    for name, field in Config.model_fields.items():
        section: type[BaseModel] = field.annotation  # type: ignore[assignment]
        out += ["", f"## `[{name}]`", ""]
        if section.__doc__:
            out += [" ".join(section.__doc__.split()), ""]
        out += ["| key | type | default | help |", "| --- | --- | --- | --- |"]
        for key, sub in section.model_fields.items():
            out.append(f"| `{key}` | {_type(sub)} | {_default(sub)} | {_cell(sub.description or '')} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    if sys.argv[1:]:
        sys.exit(f"usage: {COMMAND}")
    sys.stdout.write(render_reference())
