"""Input files: YAML -> validated, frozen, documented configuration.

Every option of every component is a field of a frozen dataclass declared
with :func:`option` (default, one-line doc, range checks). A component
section of the YAML (``problem``, ``model``, ``solver`` and any nested solver
or line search) names its registered class with ``name:``; the remaining
keys must be fields of that class's options. Unknown keys, wrong types and
out-of-range values raise :class:`~ddnn.errors.ConfigError` naming the dotted
key path. The resolved configuration (all defaults filled in) is what every
results file records; it is never mutated.

Rank 0 reads and validates; the result or the error is broadcast so that
every rank raises the same error (:func:`load`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

import yaml

from ddnn import registry
from ddnn.errors import ConfigError, InputError

__all__ = [
    "option",
    "component",
    "Section",
    "RunOptions",
    "OutputOptions",
    "Config",
    "section",
    "parse",
    "load",
    "apply_overrides",
    "to_dict",
    "to_yaml",
    "describe_options",
]

_MISSING = dataclasses.MISSING


def option(default: Any = _MISSING, doc: str = "", **checks: Any) -> Any:
    """A documented option field.

    Parameters
    ----------
    default : the default value (omit for a required option)
    doc : one line for ``--list``
    checks : ``min``, ``max`` (inclusive), ``gt``, ``lt`` (exclusive),
        ``existing_file`` (a path that must exist)
    """
    meta = {"doc": doc, **checks}
    if isinstance(default, (list, dict)):
        raise TypeError("use a tuple, not a list, as the default of an option")
    return field(default=default, metadata=meta)


def component(kind: str, default: str | None = None, doc: str = "") -> Any:
    """A nested component section (e.g. a local solver) of the given kind.

    ``default`` names the component used when the key is absent (its options
    take their defaults); ``None`` means the section is optional and absent.
    """
    meta = {"doc": doc, "kind": kind, "default_name": default}
    return field(default=None, metadata=meta)


@dataclass(frozen=True)
class Section:
    """A validated component section: its kind, registered name and options."""

    kind: str
    name: str
    options: Any

    def __getattr__(self, item: str) -> Any:  # section.max_iter reads the option
        if item.startswith("__"):
            raise AttributeError(item)
        return getattr(object.__getattribute__(self, "options"), item)


@dataclass(frozen=True)
class RunOptions:
    """How long to run, what to record, and where."""

    max_iter: int = option(100, "stop after this many iterations", min=0)
    max_grad_evals: Optional[int] = option(None, "stop after this many gradient evaluations", min=1)
    target_loss: Optional[float] = option(None, "stop when the loss is at or below this value")
    target_metric: Optional[str] = option(None, "metric for target_value (e.g. rel_l2_error)")
    target_value: Optional[float] = option(
        None, "stop when target_metric reaches this (below for errors, above for accuracy)"
    )
    wall_time: Optional[float] = option(None, "stop after this many seconds of training", gt=0)
    print_every: int = option(10, "progress line on rank 0 every N iterations (0: none)", min=0)
    metrics_every: int = option(1, "evaluate metrics every N iterations", min=1)
    checkpoint_every: int = option(100, "checkpoint every N iterations (0: only at the end)", min=0)
    seed: int = option(0, "seed of every random choice (sampling, initialisation)", min=0)
    dtype: Literal["float32", "float64"] = option("float32", "floating-point precision")
    device: Literal["auto", "cpu", "cuda"] = option("auto", "auto: the node-local GPU when CUDA exists")
    threads: Optional[int] = option(None, "torch threads per rank (default: cores per node / ranks per node)", min=1)


@dataclass(frozen=True)
class OutputOptions:
    """Where results go."""

    dir: Optional[str] = option(None, "output directory (default runs/<input stem>; --out overrides)")


@dataclass(frozen=True)
class Config:
    """The whole input file."""

    problem: Section = component("problem", None, "the training problem")
    model: Section = component("model", None, "the network (default: the problem's own)")
    solver: Section = component("solver", None, "the optimiser, with nested local/coarse solvers")
    run: RunOptions = option(RunOptions(), "stop rules, output cadence, precision, device")
    output: OutputOptions = option(OutputOptions(), "output location")


# ---------------------------------------------------------------------------
# Validation


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args) + " or null"
    if origin is tuple:
        return "a list of " + _plural(_type_name(typing.get_args(tp)[0]))
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return str(tp)


def _plural(name: str) -> str:
    """'an integer' -> 'integers', 'a list of numbers' -> 'lists of numbers' (for list element types)."""
    if name == "true or false":
        return "booleans"
    if name.startswith("one of "):
        return "values, each " + name
    for article in ("an ", "a "):
        if name.startswith(article):
            head, sep, rest = name[len(article) :].partition(" ")
            return head + "s" + sep + rest
    return name


def _check_range(value: Any, meta: dict, key: str) -> None:
    bounds = [
        ("min", lambda v, b: v >= b, ">="),
        ("max", lambda v, b: v <= b, "<="),
        ("gt", lambda v, b: v > b, ">"),
        ("lt", lambda v, b: v < b, "<"),
    ]
    for name, ok, sign in bounds:
        if name in meta and meta[name] is not None and not ok(value, meta[name]):
            raise ConfigError(key, f"expected a value {sign} {meta[name]}, got {value!r}")
    if meta.get("existing_file") and not os.path.exists(value):
        raise ConfigError(key, f"file not found: {value}")


def _coerce(value: Any, tp: Any, key: str, meta: dict) -> Any:
    """Check ``value`` against the annotation ``tp``; return the typed value."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, meta)
            except ConfigError:
                if len([a for a in args if a is not type(None)]) == 1:
                    raise
        raise ConfigError(key, f"expected {_type_name(tp)}, got {value!r}")
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
                value = int(value)
            else:
                raise ConfigError(key, f"expected an integer, got {value!r}")
        _check_range(value, meta, key)
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(key, f"expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"expected a number, got {value!r}")
        value = float(value)
        if math.isnan(value):
            raise ConfigError(key, "expected a number, got nan")
        _check_range(value, meta, key)
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {value!r}")
        _check_range(value, meta, key)
        return value
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(key, f"expected one of {', '.join(map(str, choices))}, got {value!r}")
        return value
    if origin is tuple:
        (item_tp, *_rest) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, f"expected {_type_name(tp)}, got {value!r}")
        return tuple(_coerce(v, item_tp, f"{key}[{i}]", meta) for i, v in enumerate(value))
    if origin is dict:
        key_tp, val_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a mapping, got {value!r}")
        return {_coerce(k, key_tp, key, {}): _coerce(v, val_tp, f"{key}.{k}", meta) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _build_dataclass(tp, value, key)
    raise TypeError(f"unsupported option type {tp!r} at {key}")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _build_dataclass(cls: type, raw: Any, prefix: str, skip: tuple[str, ...] = ()) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(prefix, f"expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields and key not in skip:
            known = ", ".join(sorted(fields)) or "none"
            raise ConfigError(_join(prefix, str(key)), f"unknown key (known keys: {known})")
    values = {}
    for name, f in fields.items():
        key = _join(prefix, name)
        if "kind" in f.metadata:
            values[name] = _build_section(f.metadata["kind"], raw.get(name), key, f.metadata["default_name"])
        elif name in raw:
            values[name] = _coerce(raw[name], hints[name], key, dict(f.metadata))
        elif f.default is _MISSING:
            raise ConfigError(key, f"required, {_type_name(hints[name])}")
    try:
        obj = cls(**values)
    except (TypeError, ValueError) as err:
        raise ConfigError(prefix, str(err)) from None
    check = getattr(obj, "check", None)
    if callable(check):
        check(prefix)
    return obj


def _build_section(kind: str, raw: Any, key: str, default_name: str | None) -> Section | None:
    if raw is None:
        if default_name is None:
            return None
        raw = {"name": default_name}
    if isinstance(raw, str):  # "line_search: armijo" is short for {name: armijo}
        raw = {"name": raw}
    if not isinstance(raw, dict):
        raise ConfigError(key, f"expected a mapping with a 'name', got {raw!r}")
    name = raw.get("name", default_name)
    if name is None:
        raise ConfigError(_join(key, "name"), f"required: one of {', '.join(registry.names(kind))}")
    if not isinstance(name, str):
        raise ConfigError(_join(key, "name"), f"expected a string, got {name!r}")
    try:
        entry = registry.lookup(kind, name)
    except KeyError:
        known = ", ".join(registry.names(kind))
        raise ConfigError(_join(key, "name"), f"unknown {kind} {name!r} (known: {known})") from None
    options = _build_dataclass(entry.options, raw, key, skip=("name",))
    return Section(kind, name, options)


def section(kind: str, raw: dict | str, key: str = "") -> Section:
    """A validated component section from a plain dict (library use and tests).

    ``section("solver", {"name": "lbfgs", "memory": 5})``
    """
    return _build_section(kind, raw, key or kind, None)


def parse(raw: Any, world_size: int = 1) -> Config:
    """Validate a YAML tree into a :class:`Config`; ``ConfigError`` on bad input.

    ``world_size`` is used by components whose options depend on the number of
    ranks (through an optional ``check_world(options, world_size, key)`` class
    method).
    """
    if raw is None:
        raise ConfigError("", "the input is empty (expected the sections problem, solver, ...)")
    if not isinstance(raw, dict):
        raise ConfigError("", f"expected a mapping of sections at the top level, got {type(raw).__name__}")
    for required in ("problem", "solver"):
        if raw.get(required) is None:
            raise ConfigError(required, "required section is missing")
    raw = dict(raw)
    if raw.get("model") is None:
        problem_name = raw["problem"].get("name") if isinstance(raw["problem"], dict) else raw["problem"]
        try:
            default_model = registry.lookup("problem", problem_name).cls.default_model
        except (KeyError, AttributeError, TypeError):
            default_model = None
        if default_model is not None:
            raw["model"] = dict(default_model)
    config = _build_dataclass(Config, raw, "")
    if config.model is None:
        raise ConfigError("model", "required section is missing (the problem has no default network)")
    _check_world(config, world_size)
    return config


def _sections(value: Any, key: str):
    """Yield (key, Section) for every component section below ``value``."""
    if isinstance(value, Section):
        yield key, value
        value = value.options
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            yield from _sections(getattr(value, f.name), _join(key, f.name))


def _check_world(config: Config, world_size: int) -> None:
    for key, section in _sections(config, ""):
        entry = registry.lookup(section.kind, section.name)
        check = getattr(entry.cls, "check_world", None)
        if check is not None:
            check(section.options, world_size, key)


def apply_overrides(raw: Any, overrides: list[str]) -> Any:
    """Apply ``--set key.path=value`` overrides (values parsed as YAML)."""
    if not overrides:
        return raw
    raw = _deepcopy(raw if raw is not None else {})
    for item in overrides:
        if "=" not in item:
            raise ConfigError("--set", f"expected KEY=VALUE, got {item!r}")
        path, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(path, f"--set: cannot parse value {text!r}") from None
        node = raw
        parts = path.strip().split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part) if isinstance(node, dict) else None
            if child is None:
                child = {}
            elif isinstance(child, str):  # "line_search: armijo" -> {name: armijo}
                child = {"name": child}
            elif not isinstance(child, dict):
                raise ConfigError(".".join(parts[: depth + 1]), f"--set: not a section, cannot set {path}")
            node[part] = child
            node = child
        if not isinstance(node, dict):
            raise ConfigError(path, "--set: not a section")
        node[parts[-1]] = value
    return raw


def _deepcopy(raw: Any) -> Any:
    if isinstance(raw, dict):
        return {k: _deepcopy(v) for k, v in raw.items()}
    if isinstance(raw, list):
        return [_deepcopy(v) for v in raw]
    return raw


def read_yaml(path: str) -> Any:
    """Read a YAML file; ``ConfigError`` naming the file and line on failure."""
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError("", "input file not found", path) from None
    except IsADirectoryError:
        raise ConfigError("", "is a directory, not an input file", path) from None
    except UnicodeDecodeError:
        raise ConfigError("", "not a text file", path) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ConfigError("", f"{where}YAML syntax error: {problem}", path) from None


def load_local(path: str, overrides: list[str] | None = None, world_size: int = 1) -> Config:
    """Read, override and validate an input file on this process only."""
    try:
        raw = apply_overrides(read_yaml(path), overrides or [])
        return parse(raw, world_size)
    except ConfigError as err:
        raise err.located(path) from None


def load(path: str, comm: Any, overrides: list[str] | None = None) -> Config:
    """Collective. Rank 0 validates the input file; every rank gets the result or the same error."""
    result: Any = None
    if comm.rank == 0:
        try:
            result = load_local(path, overrides, comm.size)
        except InputError as err:
            result = err
    result = comm.bcast_object(result)
    if isinstance(result, InputError):
        raise result
    return result


# ---------------------------------------------------------------------------
# Output


def to_dict(value: Any) -> Any:
    """Plain nested dicts/lists of a config (for YAML and HDF5)."""
    if isinstance(value, Section):
        return {"name": value.name, **to_dict(value.options)}
    if dataclasses.is_dataclass(value):
        return {f.name: to_dict(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [to_dict(v) for v in value]
    if isinstance(value, dict):
        return {k: to_dict(v) for k, v in value.items()}
    return value


def to_yaml(config: Config) -> str:
    """The resolved configuration as YAML text (every default filled in)."""
    return yaml.safe_dump(to_dict(config), sort_keys=False, default_flow_style=False)


def describe_options(cls: type, indent: str = "  ") -> list[str]:
    """Lines documenting every option of an options dataclass (for ``--list``)."""
    lines = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        doc = f.metadata.get("doc", "")
        if "kind" in f.metadata:
            default = f.metadata["default_name"]
            shown = f"{f.metadata['kind']} section, default {default}" if default else f"{f.metadata['kind']} section"
            lines.append(f"{indent}{f.name}: <{shown}>  {doc}")
            continue
        default = f.default if f.default is not _MISSING else "<required>"
        if dataclasses.is_dataclass(default):
            lines.append(f"{indent}{f.name}:  {doc}")
            lines.extend(describe_options(type(default), indent + "  "))
            continue
        bounds = [f"{k} {f.metadata[k]}" for k in ("min", "max", "gt", "lt") if k in f.metadata]
        extra = f" [{', '.join(bounds)}]" if bounds else ""
        lines.append(f"{indent}{f.name}: {_type_name(hints[f.name])} = {default!r}{extra}  {doc}")
    return lines
