"""Thin glue between the stage config dataclasses and OmegaConf.

Every stage (sft, train, eval, ...) has ONE dataclass whose fields carry their defaults and a docstring
each. A run's config is resolved in this order, later wins:

    dataclass defaults  <  --config FILE.yaml (repeatable)  <  key=value / dotted.key=value overrides

OmegaConf's structured configs do the parsing, the type checks and the merging; this module only turns
their errors into messages that name the key and what it accepts, resolves a schema's aliases (its
`ALIASES`: a flat name such as `temperature` for a nested key such as `sampling.temperature`), reads
the field docstrings for `--help`, and writes the resolved config next to a stage's outputs.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import itertools
import textwrap
from collections.abc import Callable
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from reft.files import write_text_atomic

T = TypeVar("T")

CONFIG_FILE_NAME = "config.yaml"
"""Name of the resolved config written into each stage's output directory."""


class ConfigError(ValueError):
    """A config file or override that does not fit the stage's dataclass."""


RANGES: dict[str, Callable[[Any], bool]] = {
    "> 0": lambda value: value > 0,
    ">= 0": lambda value: value >= 0,
    ">= 1": lambda value: value >= 1,
    "in [0, 1]": lambda value: 0 <= value <= 1,
    "in [0, 1)": lambda value: 0 <= value < 1,
    "in (0, 1]": lambda value: 0 < value <= 1,
}
"""The accepted ranges a config field can declare, by the words its error message uses (NaN is in
none of them)."""


def check_ranges(config: Any, ranges: dict[str, str]) -> None:
    """Raise ValueError for the first field of `config` outside its range in `ranges` (field name ->
    a key of RANGES), naming the field, its value and the range: "clip_range=-0.2: must be > 0".

    Called from a config's `__post_init__`, so a bad value fails when the config is built, before
    any work (`load_config` reports it as a ConfigError).
    """
    for name, accepted in ranges.items():
        value = getattr(config, name)
        if not RANGES[accepted](value):
            raise ValueError(f"{name}={value!r}: must be {accepted}")


def load_config(
    schema: type[T],
    config_files: str | Path | list[str | Path] | None = None,
    overrides: list[str] = (),
) -> T:
    """Build a `schema` instance from defaults, YAML files (later ones win) and `key=value` overrides.

    Raises ConfigError naming the offending key, where it came from, and the accepted keys or values.
    """
    merged = OmegaConf.structured(schema)
    if isinstance(config_files, (str, Path)):
        config_files = [config_files]
    for config_file in config_files or []:
        loaded = resolve_aliases(schema, _read_yaml(Path(config_file)), str(config_file))
        merged = _merge(schema, merged, loaded, source=str(config_file))
    if overrides:
        bad = [item for item in overrides if "=" not in item]
        if bad:
            raise ConfigError(f"override {bad[0]!r} is not of the form key=value")
        aliases = aliases_of(schema)
        dotlist = [aliases.get(key, key) + "=" + value
                   for key, _, value in (item.partition("=") for item in overrides)]  # fmt: skip
        merged = _merge(schema, merged, OmegaConf.from_dotlist(dotlist), source="overrides")
    try:
        return OmegaConf.to_object(merged)  # runs the dataclass's __post_init__ checks
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{schema.__name__}: {error}") from error


def aliases_of(schema: type) -> dict[str, str]:
    """{flat alias: the dotted key it stands for} of a config schema (its `ALIASES` class
    attribute; none by default): `temperature=0.7` is then `sampling.temperature=0.7`."""
    return dict(getattr(schema, "ALIASES", {}))


def resolve_aliases(schema: type, loaded: Any, source: str) -> Any:
    """A config file's mapping with each alias key moved to the nested key it stands for;
    ConfigError when a file gives a setting under both names."""
    if not any(alias in loaded for alias in aliases_of(schema)):
        return loaded
    return OmegaConf.create(nest_aliases(schema, OmegaConf.to_container(loaded), source))


def nest_aliases(schema: type, data: dict[str, Any], source: str) -> dict[str, Any]:
    """A plain config dict with each alias key moved to the nested key it stands for (a file, or
    a config saved by a reft version before the key moved into its section)."""
    data = {key: dict(value) if isinstance(value, dict) else value for key, value in data.items()}
    for alias, dotted in aliases_of(schema).items():
        if alias not in data:
            continue
        section, _, name = dotted.partition(".")
        nested = data.setdefault(section, {})
        if not isinstance(nested, dict):
            raise ConfigError(f"{source}: key '{section}' must be a mapping of its settings")
        if name in nested:
            raise ConfigError(f"{source}: '{alias}' and '{dotted}' are the same setting: give one")
        nested[name] = data.pop(alias)
    return data


def save_config(config: Any, path: str | Path) -> Path:
    """Write `config` as YAML to the file `path`, atomically."""
    return write_text_atomic(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))


def save_run_config(config: Any, out_dir: str | Path) -> Path:
    """Write `config` as `config.yaml` inside the run directory `out_dir` (whatever its name: a
    dotted name such as `runs/lr0.001` is a directory too)."""
    return save_config(config, Path(out_dir) / CONFIG_FILE_NAME)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A plain, YAML/JSON-serialisable dict of a config dataclass (enums become their values)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Enum):
            return value.value
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(item) for item in value]
        return value

    return plain(dataclasses.asdict(config))


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        loaded = OmegaConf.load(path)
    except (yaml.YAMLError, OmegaConfBaseException) as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    if not OmegaConf.is_dict(loaded):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
    return loaded


def _merge(schema: type, base: Any, update: Any, source: str) -> Any:
    try:
        return OmegaConf.merge(base, update)
    except ConfigKeyError as error:
        key = error.full_key or "?"
        parent = _schema_at(schema, key.rsplit(".", 1)[0] if "." in key else "")
        accepted = ", ".join(f.name for f in dataclasses.fields(parent)) if parent else "?"
        if parent is schema and aliases_of(schema):
            accepted += " (and the aliases " + ", ".join(aliases_of(schema)) + ")"
        raise ConfigError(
            f"{source}: unknown key '{key}' for {schema.__name__}. Accepted keys: {accepted}"
        ) from None
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None) or "?"
        message = str(error).split("\n", 1)[0]
        expected = _describe_type(schema, key)
        raise ConfigError(f"{source}: key '{key}': {message} (expected {expected})") from None


def _schema_at(schema: type, dotted: str) -> type | None:
    """The dataclass found at `dotted` inside `schema` ('' is the schema itself)."""
    current = schema
    for part in filter(None, dotted.split(".")):
        hints = get_type_hints(current) if dataclasses.is_dataclass(current) else {}
        current = hints.get(part)
        if current is None or not dataclasses.is_dataclass(current):
            return None
    return current


def _describe_type(schema: type, dotted: str) -> str:
    parent_path, _, name = dotted.rpartition(".")
    parent = _schema_at(schema, parent_path)
    if parent is None:
        return "?"
    hint = get_type_hints(parent).get(name)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return "one of " + ", ".join(member.value for member in hint)
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


@cache
def field_docs(schema: type) -> dict[str, str]:
    """The attribute docstrings of a dataclass: the string literal right after each field."""
    docs: dict[str, str] = {}
    for klass in reversed(schema.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body
        for node, after in itertools.pairwise(body):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


def describe_config(schema: type) -> str:
    """Human-readable list of every field, its default and its docstring (used by `--help`)."""
    lines = [f"{schema.__name__} fields (override with key=value, nested with a.b=value):"]
    for option in config_options(schema):
        default = option.default.value if isinstance(option.default, Enum) else option.default
        alias = f" (alias {option.name})" if option.name != option.key else ""
        lines.append(f"  {option.key} = {default!r}{alias}")
        for doc_line in option.doc.splitlines():
            lines.append(f"      {doc_line}")
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class ConfigOption:
    """One setting of a config schema as the command line offers it."""

    key: str
    """Its dotted key: `lr`, or `sampling.temperature` inside a section."""
    name: str
    """What the command line calls it: the key, or its alias for a section's field."""
    default: Any
    hint: Any
    doc: str


def config_options(schema: type) -> list[ConfigOption]:
    """Every top-level field of `schema`, with each section (a dataclass-typed field that aliases
    point into) given as its fields, under their aliases where they have one."""
    names = {key: alias for alias, key in aliases_of(schema).items()}
    sections = {key.partition(".")[0] for key in names}
    hints, options = get_type_hints(schema), []
    for f in dataclasses.fields(schema):
        hint = hints[f.name]
        if f.name not in sections:
            options.append(ConfigOption(f.name, f.name, _default_of(f), hint,
                                        field_docs(schema).get(f.name, "")))  # fmt: skip
            continue
        section = _default_of(f)
        for inner in dataclasses.fields(hint):
            key = f"{f.name}.{inner.name}"
            options.append(ConfigOption(key, names.get(key, key), getattr(section, inner.name),
                                        get_type_hints(hint)[inner.name],
                                        field_docs(hint).get(inner.name, "")))  # fmt: skip
    return options


def _default_of(f: dataclasses.Field) -> Any:
    """A field's default without building the dataclass (whose checks may need required values)."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def add_config_arguments(
    parser: argparse.ArgumentParser, schema: type, shipped: dict[str, Any] | None = None
) -> None:
    """Give a stage's parser `--config FILE.yaml`, a `--name VALUE` flag per setting (a section's
    fields under their aliases), and positional `key=value` overrides (dotted keys reach nested
    fields).

    Flags and overrides are the same thing spelled two ways; both go through OmegaConf's checks.
    A boolean flag given alone (`--resume`) means true. `shipped`: the values a command layers
    under the user's (its shipped recipe), shown in --help instead of the dataclass defaults.
    """
    parser.add_argument(
        "--config",
        type=Path,
        action="append",
        default=None,
        help="YAML file of config values; repeat to layer files (later ones win)",
    )
    parser.add_argument(
        "overrides", nargs="*", default=[], metavar="key=value", help="config overrides"
    )
    for option in config_options(schema):
        default = shipped[option.key] if shipped and option.key in shipped else option.default
        shown = default.value if isinstance(default, Enum) else default
        flag = {"nargs": "?", "const": "true"} if option.hint is bool else {}
        label = "shipped recipe" if shipped and option.key in shipped else "default"
        key = f"{option.key}; " if option.name != option.key else ""
        help_text = f"{option.doc} ({key}{label}: {shown!r})"
        parser.add_argument(
            f"--{option.name.replace('_', '-')}",
            dest=f"{_FLAG_PREFIX}{option.key}",
            default=None,
            metavar="true|false" if option.hint is bool else "VALUE",
            help=help_text.replace("%", "%%"),  # argparse %-formats help: a bare % breaks it
            **flag,
        )
    parser.epilog = (
        f"Every option is a field of {schema.__name__}; `--name value` and `name=value` are "
        "equivalent, later ones win, and dotted keys reach nested fields."
    )


def config_from_args(schema: type[T], args: argparse.Namespace) -> T:
    """Resolve a stage config from the arguments added by `add_config_arguments`."""
    switches = {option.key for option in config_options(schema) if option.hint is bool}
    flags, overrides = [], list(args.overrides)
    for name, value in vars(args).items():
        key = name.removeprefix(_FLAG_PREFIX)
        if not name.startswith(_FLAG_PREFIX) or value is None:
            continue
        if key in switches and "=" in value:
            # `--resume seeds=1`: argparse gave the next override to the switch as its value.
            flags.append(f"{key}=true")
            overrides.append(value)
        else:
            flags.append(f"{key}={value}")
    return load_config(schema, args.config, [*overrides, *flags])


_FLAG_PREFIX = "config_field__"
