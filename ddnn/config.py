"""Input files: YAML -> validated, frozen, documented configuration.

Options are declared with :mod:`ddnn.options` (every option a field of a
frozen dataclass with a default, a one-line doc and range checks). A
component section of the YAML (``problem``, ``model``, ``solver`` and any
nested solver, line search or subproblem solver) names its registered class
with ``name:``; the remaining keys must be fields of that class's options.
Unknown keys, duplicate keys, wrong types, non-finite numbers and
out-of-range values raise :class:`~ddnn.errors.ConfigError` naming the
dotted key path. A parsed input is then checked against the job it will run
in (:class:`Setup`: the number of ranks, the network's layers, CUDA), so
that ``--validate`` refuses everything a run would refuse. The resolved
configuration (all defaults filled in) is what every results file records;
it is never mutated.

Rank 0 reads and validates; the result or the error is broadcast so that
every rank raises the same error (:func:`load`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Optional, Union

import yaml

from ddnn import registry
from ddnn.errors import ConfigError, InputError
from ddnn.options import MISSING, Section, Setup, component, option, type_name

__all__ = [
    "Cadence",
    "RunOptions",
    "DataOptions",
    "OutputOptions",
    "Config",
    "Setup",
    "section",
    "parse",
    "load",
    "load_local",
    "read_yaml",
    "apply_overrides",
    "to_dict",
    "to_yaml",
    "MAX_VALUES",
]

#: most values (scalars and containers, aliases expanded) an input may hold
MAX_VALUES = 100_000
#: the largest magnitude of an integer option (torch's int64)
_INT64_MAX = 2**63 - 1


# ---------------------------------------------------------------------------
# Option types of the run section


@dataclass(frozen=True)
class Cadence:
    """How often something happens: every ``count`` iterations or epochs (0: never).

    Written in YAML as an integer (iterations) or as text such as ``"2 epochs"``,
    ``"1 epoch"`` or ``"50 iterations"``.
    """

    count: int
    unit: Literal["iteration", "epoch"] = "iteration"

    type_name: typing.ClassVar[str] = "an integer (iterations) or 'N epochs'"
    _TEXT: typing.ClassVar[re.Pattern] = re.compile(r"^\s*(\d+)\s*(iterations?|epochs?)\s*$")

    @classmethod
    def from_config(cls, value: Any, key: str, meta: dict) -> Cadence:
        if isinstance(value, bool):
            raise ConfigError(key, f"expected {cls.type_name}, got {_show(value)}")
        if isinstance(value, int):
            count, unit = value, "iteration"
        elif isinstance(value, str) and cls._TEXT.match(value):
            number, word = cls._TEXT.match(value).groups()
            count, unit = int(number), "epoch" if word.startswith("epoch") else "iteration"
        else:
            raise ConfigError(key, f"expected {cls.type_name}, got {_show(value)}")
        low = meta.get("min", 0)
        if count < low:
            raise ConfigError(key, f"expected a value >= {low}, got {count}")
        if count > 10**12:
            raise ConfigError(key, f"expected a value <= 10**12, got {count}")
        return cls(count, unit)

    def to_config(self) -> int | str:
        return self.count if self.unit == "iteration" else f"{self.count} epochs"

    def __str__(self) -> str:
        return str(self.to_config())

    def due(self, iteration: int, epoch_ended: bool, epoch: int) -> bool:
        """Whether the event is due after ``iteration`` (and, for epoch cadences, an epoch that just ended)."""
        if self.count == 0:
            return False
        if self.unit == "iteration":
            return iteration % self.count == 0
        return epoch_ended and epoch % self.count == 0


@dataclass(frozen=True)
class RunOptions:
    """How long to run, what to record, and where."""

    max_iter: int = option(100, "stop after this many iterations", min=0, max=10**12)
    max_epochs: Optional[int] = option(None, "stop after this many epochs (passes over the training set)", min=1)
    max_grad_evals: Optional[int] = option(None, "stop after this many gradient evaluations", min=1, max=10**15)
    target_loss: Optional[float] = option(None, "stop when the loss is at or below this value")
    target_metric: Optional[str] = option(None, "metric for target_value (e.g. rel_l2_error, accuracy)")
    target_value: Optional[float] = option(
        None, "stop when target_metric reaches this (below for errors, above for accuracy)"
    )
    stop_when: Literal["any", "all"] = option(
        "any", "with target_loss and target_metric: stop at the first one reached, or once both were reached"
    )
    wall_time: Optional[float] = option(None, "stop after this many seconds of training", gt=0)
    print_every: Cadence = option(Cadence(10), "progress line on rank 0 every N iterations or 'N epochs' (0: none)")
    metrics_every: Cadence = option(Cadence(1), "evaluate metrics every N iterations or 'N epochs'", min=1)
    checkpoint_every: Cadence = option(Cadence(100), "checkpoint every N iterations or 'N epochs' (0: only at the end)")
    seed: int = option(0, "seed of every random choice (sampling, initialisation, batches)", min=0, max=2**32 - 1)
    dtype: Literal["float32", "float64"] = option("float32", "floating-point precision")
    device: Literal["auto", "cpu", "cuda"] = option("auto", "auto: the node-local GPU when CUDA exists")
    threads: Optional[int] = option(
        None, "torch threads per rank (default: cores per node / ranks per node)", min=1, max=4096
    )


@dataclass(frozen=True)
class DataOptions:
    """Which training samples each iteration sees: the full set or mini-batches, per epoch."""

    batch_size: Optional[int] = option(
        None, "rows per mini-batch, all loss terms together (null: the full training set every iteration)", min=1
    )
    batch_growth: float = option(
        1.0, "factor by which batch_size grows every epoch (stochastic trust region; 1: constant)", min=1.0, max=100.0
    )
    shuffle: bool = option(True, "draw every epoch's batches from a new seeded permutation")
    overlap: float = option(
        0.0, "percent of the next batch's rows that a batch also holds (consecutive batches overlap)", min=0.0, lt=100.0
    )
    resample_every: int = option(
        0, "draw new training samples (collocation points) every N iterations, seeded (0: never)", min=0
    )


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
    data: DataOptions = option(DataOptions(), "mini-batches, epochs and resampling of the training samples")
    run: RunOptions = option(RunOptions(), "stop rules, output cadence, precision, device")
    output: OutputOptions = option(OutputOptions(), "output location")


# ---------------------------------------------------------------------------
# Validation of values


def _show(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (error messages stay one short line)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_range(value: Any, meta: dict, key: str) -> None:
    bounds = [
        ("min", lambda v, b: v >= b, ">="),
        ("max", lambda v, b: v <= b, "<="),
        ("gt", lambda v, b: v > b, ">"),
        ("lt", lambda v, b: v < b, "<"),
    ]
    for name, ok, sign in bounds:
        if name in meta and meta[name] is not None and not ok(value, meta[name]):
            raise ConfigError(key, f"expected a value {sign} {meta[name]}, got {_show(value)}")
    if meta.get("existing_file") and not os.path.exists(value):
        raise ConfigError(key, f"file not found: {value}")


def _coerce(value: Any, tp: Any, key: str, meta: dict) -> Any:
    """Check ``value`` against the annotation ``tp``; return the typed value."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        candidates = [a for a in args if a is not type(None)]
        for arg in candidates:
            try:
                return _coerce(value, arg, key, meta)
            except ConfigError:
                if len(candidates) == 1:
                    raise
        raise ConfigError(key, f"expected {type_name(tp)}, got {_show(value)}")
    if isinstance(tp, type) and hasattr(tp, "from_config"):
        return tp.from_config(value, key, meta)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {_show(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
                value = int(value)
            else:
                raise ConfigError(key, f"expected an integer, got {_show(value)}")
        if abs(value) > _INT64_MAX:
            raise ConfigError(key, f"expected an integer of at most 19 digits, got {_show(value)}")
        _check_range(value, meta, key)
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(key, f"expected a number, got {_show(value)}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"expected a number, got {_show(value)}")
        try:
            value = float(value)
        except OverflowError:
            raise ConfigError(key, f"expected a finite number, got {_show(value)}") from None
        if math.isnan(value) or (math.isinf(value) and not meta.get("allow_inf")):
            raise ConfigError(key, f"expected a finite number, got {value}")
        _check_range(value, meta, key)
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {_show(value)}")
        _check_range(value, meta, key)
        return value
    if origin is Literal:
        choices = typing.get_args(tp)
        if not isinstance(value, (str, int, float, bool)) or value not in choices:
            raise ConfigError(key, f"expected one of {', '.join(map(str, choices))}, got {_show(value)}")
        return value
    if origin is tuple:
        (item_tp, *_rest) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, f"expected {type_name(tp)}, got {_show(value)}")
        return tuple(_coerce(v, item_tp, f"{key}[{i}]", meta) for i, v in enumerate(value))
    if origin is dict:
        key_tp, val_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a mapping, got {_show(value)}")
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
        raise ConfigError(prefix, f"expected a mapping, got {_show(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields and key not in skip:
            known = ", ".join(sorted(fields)) or "none"
            raise ConfigError(_join(prefix, _show(key, 40).strip("'")), f"unknown key (known keys: {known})")
    values = {}
    for name, f in fields.items():
        key = _join(prefix, name)
        if "kind" in f.metadata:
            values[name] = _build_section(
                f.metadata["kind"],
                raw.get(name),
                key,
                f.metadata["default_name"],
                f.metadata.get("role"),
                f.metadata.get("defaults"),
            )
        elif name in raw:
            values[name] = _coerce(raw[name], hints[name], key, dict(f.metadata))
        elif f.default is MISSING:
            raise ConfigError(key, f"required, {type_name(hints[name])}")
    try:
        obj = cls(**values)
    except (TypeError, ValueError) as err:
        raise ConfigError(prefix, str(err)) from None
    check = getattr(obj, "check", None)
    if callable(check):
        check(prefix)
    return obj


def _build_section(
    kind: str, raw: Any, key: str, default_name: str | None, role: str | None = None, defaults: dict | None = None
) -> Section | None:
    if raw is None:
        if default_name is None:
            return None
        raw = {"name": default_name}
    if isinstance(raw, str):  # "line_search: armijo" is short for {name: armijo}
        raw = {"name": raw}
    if not isinstance(raw, dict):
        raise ConfigError(key, f"expected a mapping with a 'name', got {_show(raw)}")
    name = raw.get("name", default_name)
    if name is None:
        raise ConfigError(_join(key, "name"), f"required: one of {', '.join(_names(kind, role))}")
    if not isinstance(name, str):
        raise ConfigError(_join(key, "name"), f"expected a string, got {_show(name)}")
    try:
        entry = registry.lookup(kind, name)
    except KeyError:
        known = ", ".join(_names(kind, role))
        raise ConfigError(_join(key, "name"), f"unknown {kind} {_show(name, 40)} (known: {known})") from None
    if role is not None and role not in getattr(entry.cls, "roles", ()):
        raise ConfigError(
            _join(key, "name"),
            f"{kind} {name!r} cannot be used here "
            f"({_ROLE_WORDS.get(role, role)}: one of {', '.join(_names(kind, role))})",
        )
    if defaults and name == default_name:  # this place's own defaults of its default component
        raw = {**defaults, **raw}
    options = _build_dataclass(entry.options, raw, key, skip=("name",))
    return Section(kind, name, options)


_ROLE_WORDS = {"npc": "a nonlinear preconditioner", "local": "a local solver of a subdomain"}


def _names(kind: str, role: str | None) -> list[str]:
    """Registered names of ``kind`` that can take ``role``."""
    names = registry.names(kind)
    return [n for n in names if role is None or role in getattr(registry.lookup(kind, n).cls, "roles", ())]


def section(kind: str, raw: dict | str, key: str = "") -> Section:
    """A validated component section from a plain dict (library use and tests).

    ``section("solver", {"name": "lbfgs", "memory": 5})``
    """
    return _build_section(kind, raw, key or kind, None)


# ---------------------------------------------------------------------------
# The whole input


def parse(raw: Any, world_size: int = 1, setup: Setup | None = None) -> Config:
    """Validate a YAML tree into a :class:`Config`; ``ConfigError`` on bad input.

    Parameters
    ----------
    raw : the YAML tree
    world_size : number of ranks of the job
    setup : what to check the input against; by default the network the
        input builds (on the meta device: no memory, no random numbers
        drawn) and this machine's CUDA

    Every component class may check its options against the setup with a
    class method ``check_setup(options, setup, key)``.
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
    if setup is None:
        setup = job_setup(config, world_size)
    _check_setup(config, setup)
    return config


def job_setup(config: Config, world_size: int) -> Setup:
    """The :class:`Setup` of ``config`` on ``world_size`` ranks: the network is built on the meta device."""
    import torch

    from ddnn.flat import layer_bounds

    problem_cls = registry.lookup("problem", config.problem.name).cls
    input_shape, output_dim = problem_cls.data_shapes(config.problem.options)
    with torch.device("meta"), _no_random_fills():
        try:
            model = registry.build("model", config.model, input_shape, output_dim)
        except (ValueError, RuntimeError) as err:
            raise ConfigError("model", f"cannot build this network: {err}") from None
    bounds = tuple(layer_bounds(model))
    n_params = bounds[-1][1] if bounds else 0
    if n_params == 0:
        raise ConfigError("model", "the network has no trainable parameters")
    size = n_params * (8 if config.run.dtype == "float64" else 4)
    memory = _physical_memory()
    if memory and size > memory:
        raise ConfigError(
            "model",
            f"the network has {n_params:,} parameters ({size / 2**30:,.0f} GiB in {config.run.dtype}), "
            f"more than this machine's memory ({memory / 2**30:,.0f} GiB)",
        )
    return Setup(world_size, bounds, n_params, torch.cuda.is_available(), config.model.name)


# in-place random fills of initialisers (torch.nn.init): no-ops on the meta device
_RANDOM_FILLS = frozenset(
    {"normal_", "uniform_", "random_", "bernoulli_", "exponential_", "geometric_", "log_normal_", "cauchy_"}
)


def _no_random_fills() -> Any:
    """A torch function mode in which random fills return their tensor untouched.

    A network built on the meta device has shapes only; torch implements the
    random fills of meta tensors with decompositions that import
    ``torch._dynamo`` (over a second of every validation).
    """
    from torch.overrides import TorchFunctionMode

    class NoRandomFills(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if getattr(func, "__name__", None) in _RANDOM_FILLS and args:
                return args[0]
            return func(*args, **(kwargs or {}))

    return NoRandomFills()


def _physical_memory() -> int | None:
    """Bytes of memory of this machine (``None`` where the system does not tell)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _sections(value: Any, key: str):
    """Yield (key, Section) for every component section below ``value`` (also inside lists)."""
    if isinstance(value, Section):
        yield key, value
        value = value.options
    if isinstance(value, tuple):
        for i, item in enumerate(value):
            yield from _sections(item, f"{key}[{i}]")
    elif dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            yield from _sections(getattr(value, f.name), _join(key, f.name))


def _check_setup(config: Config, setup: Setup) -> None:
    """Checks that need the job or the network, and checks across sections."""
    run, data = config.run, config.data
    if run.device == "cuda" and not setup.cuda:
        raise ConfigError("run.device", "cuda requested but CUDA is not available on this machine")
    problem_cls = registry.lookup("problem", config.problem.name).cls
    if (run.target_metric is None) != (run.target_value is None):
        given = "target_metric" if run.target_value is None else "target_value"
        missing = "target_value" if given == "target_metric" else "target_metric"
        raise ConfigError(f"run.{given}", f"needs run.{missing} as well")
    if run.target_metric is not None:
        known = problem_cls.metric_names(config.problem.options)
        if run.target_metric not in known:
            raise ConfigError(
                "run.target_metric",
                f"problem {config.problem.name!r} has no metric {run.target_metric!r} (it has: {', '.join(known)})",
            )
    if data.resample_every and not problem_cls.can_resample:
        raise ConfigError("data.resample_every", f"problem {config.problem.name!r} cannot draw new samples")
    for key, sec in _sections(config, ""):
        if run.dtype == "float32":
            _check_float32(sec, key)
        entry = registry.lookup(sec.kind, sec.name)
        check = getattr(entry.cls, "check_setup", None)
        if check is not None:
            check(sec.options, setup, key)


#: the largest finite float32
_FLOAT32_MAX = 3.4028234663852886e38


def _check_float32(sec: Section, key: str) -> None:
    """The numbers of a component section must be finite in float32 (torch refuses a step size beyond it)."""
    for f in dataclasses.fields(sec.options):
        value = getattr(sec.options, f.name)
        items = enumerate(value) if isinstance(value, tuple) else [(None, value)]
        for i, item in items:
            if isinstance(item, float) and math.isfinite(item) and abs(item) > _FLOAT32_MAX:
                where = _join(key, f.name) + ("" if i is None else f"[{i}]")
                raise ConfigError(
                    where, f"{item:g} is beyond the range of float32 (run.dtype), at most {_FLOAT32_MAX:.4g}"
                )


# ---------------------------------------------------------------------------
# Reading YAML


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader refusing duplicate keys (which would silently keep the last value)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:  # unhashable key: the base class reports it
                    continue
                if first is not key_node:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"duplicate key {_show(key, 40)} (first at line {first.start_mark.line + 1})",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        _check_keys(node)
        return self.construct_document(node)


def _key_name(key: Any) -> str:
    """A mapping key as one part of a dotted key path (cut and escaped when long or odd)."""
    text = str(key)
    return text if len(text) <= 40 and text.isprintable() else _show(key, 40)


def _check_keys(root: yaml.Node) -> None:
    """Refuse duplicate keys in a composed YAML document, naming the key path and both lines.

    Walks the node graph once per node (aliases are shared nodes), so that
    nested or recursive aliases cost nothing here.
    """
    done: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if id(node) in done:
            continue
        done.add(id(node))
        children: list[tuple[yaml.Node, str]] = []
        if isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], yaml.Node] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # "<<: *base": keys given here override those
                    children.append((value_node, path))
                    continue
                if not isinstance(key_node, yaml.ScalarNode):
                    continue  # a list or mapping as a key: refused when constructed
                key = _join(path, _key_name(key_node.value))
                seen = first.setdefault((key_node.tag, key_node.value), key_node)
                if seen is not key_node:
                    mark, before = key_node.start_mark, seen.start_mark
                    raise ConfigError(
                        key,
                        f"line {mark.line + 1}, column {mark.column + 1}: duplicate key "
                        f"(first at line {before.line + 1}, column {before.column + 1})",
                    )
                children.append((value_node, key))
        elif isinstance(node, yaml.SequenceNode):
            children = [(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        stack.extend(reversed(children))  # in document order


def check_tree(raw: Any, limit: int = MAX_VALUES) -> None:
    """Refuse a YAML tree that contains itself or expands to more than ``limit`` values.

    YAML aliases make a small file a huge tree ("billion laughs") or a
    recursive one; both are errors of the input, found here before anything
    walks the tree. The error names the key path of the alias that closes
    the loop, or of the value past the limit.
    """
    count = 0
    stack: list[tuple[Any, str, bool]] = [(raw, "", False)]
    on_path: set[int] = set()
    while stack:
        value, key, leaving = stack.pop()
        if leaving:
            on_path.discard(id(value))
            continue
        count += 1
        if count > limit:
            raise ConfigError(key, f"the input holds more than {limit:,} values (nested YAML aliases?)")
        if isinstance(value, (dict, list)):
            if id(value) in on_path:
                raise ConfigError(key, "a YAML alias refers to a section that contains it (a recursive input)")
            on_path.add(id(value))
            stack.append((value, key, True))
            if isinstance(value, dict):
                items = [(v, _join(key, _key_name(k))) for k, v in value.items()]
                items += [(k, key) for k in value]  # keys are values too
            else:
                items = [(v, f"{key}[{i}]") for i, v in enumerate(value)]
            stack.extend((item, where, False) for item, where in reversed(items))  # in document order


def read_yaml(path: str) -> Any:
    """Read a YAML file; ``ConfigError`` naming the file and line on failure."""
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.load(fh, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except FileNotFoundError:
        raise ConfigError("", "input file not found", path) from None
    except IsADirectoryError:
        raise ConfigError("", "is a directory, not an input file", path) from None
    except PermissionError:
        raise ConfigError("", "cannot read the input file (permission denied)", path) from None
    except UnicodeDecodeError:
        raise ConfigError("", "not a text file", path) from None
    except RecursionError:
        raise ConfigError("", "YAML nested too deeply", path) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ConfigError("", f"{where}YAML syntax error: {problem}", path) from None
    except ConfigError as err:  # a duplicate key
        raise err.located(path) from None
    try:
        check_tree(raw)
    except ConfigError as err:
        raise err.located(path) from None
    return raw


def apply_overrides(raw: Any, overrides: list[str]) -> Any:
    """Apply ``--set key.path=value`` overrides (values parsed as YAML)."""
    if not overrides:
        return raw
    raw = _deepcopy(raw if raw is not None else {})
    for item in overrides:
        if "=" not in item:
            raise ConfigError("--set", f"expected KEY=VALUE, got {_show(item)}")
        path, text = item.split("=", 1)
        try:
            value = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
            check_tree(value)
        except (yaml.YAMLError, RecursionError):
            raise ConfigError(path, f"--set: cannot parse value {_show(text)}") from None
        except ConfigError as err:  # a duplicate key, or aliases nested in the value
            where = path + err.key if not err.key or err.key.startswith("[") else _join(path, err.key)
            raise ConfigError(where, f"--set: {err.message}") from None
        node = raw
        parts = path.strip().split(".")
        if not all(parts):
            raise ConfigError("--set", f"expected KEY=VALUE with a dotted key, got {_show(item)}")
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
    check_tree(raw)
    return raw


def _deepcopy(raw: Any) -> Any:
    if isinstance(raw, dict):
        return {k: _deepcopy(v) for k, v in raw.items()}
    if isinstance(raw, list):
        return [_deepcopy(v) for v in raw]
    return raw


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
    if hasattr(value, "to_config"):
        return value.to_config()
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
