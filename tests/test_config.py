"""Input validation: defaults, overrides, error locations, round trips, the ``--list`` reference."""

from __future__ import annotations

import dataclasses
import os
import pickle
import subprocess
import sys
from dataclasses import dataclass
from typing import Literal, Optional

import pytest
import yaml

from ddnn import config as cfg
from ddnn import registry
from ddnn.errors import ConfigError, InputError
from ddnn.options import component, describe_options, option, type_name
from ddnn.parallel import SerialComm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A test-only solver with every kind of option, including nested component sections.
# It is registered for the duration of this module only (see the ``toy`` fixture).
TOY = "_test_toy_solver"


@dataclass(frozen=True)
class ToyOptions:
    lr: float = option(0.1, "step size", gt=0)
    steps: int = option(3, "inner steps", min=1, max=50)
    mode: Literal["additive", "multiplicative"] = option("additive", "how blocks combine")
    sizes: tuple[int, ...] = option((1, 2), "block sizes", min=1)
    verbose: bool = option(False, "chatter")
    tol: Optional[float] = option(None, "tolerance", min=0.0)
    local: object = component("solver", None, "a nested solver")


class ToySolver:
    """A solver used only to exercise the validation of nested sections."""

    def __init__(self, options, context):  # pragma: no cover - never built here
        self.options = options

    @classmethod
    def check_setup(cls, options, setup, key):
        if setup.world_size not in (1, 2):
            raise ConfigError(key, f"needs 1 or 2 ranks, the job has {setup.world_size}")


@pytest.fixture(scope="module")
def toy():
    registry.load_builtin_components()
    registry.register("solver", TOY, ToyOptions)(ToySolver)
    try:
        yield TOY
    finally:
        registry._REGISTRY["solver"].pop(TOY, None)


def raw_input(**sections) -> dict:
    raw = {"problem": {"name": "regression", "n_samples": 50}, "solver": {"name": TOY}}
    raw.update(sections)
    return raw


def error_of(raw, world_size: int = 1) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        cfg.parse(raw, world_size)
    return info.value


# ---------------------------------------------------------------------------
# defaults and overrides


def test_defaults_filled(toy):
    c = cfg.parse(raw_input())
    assert c.run == cfg.RunOptions()
    assert c.run.max_iter == 100 and c.run.dtype == "float32" and c.run.max_grad_evals is None
    assert c.output.dir is None
    assert c.problem.name == "regression"
    assert c.problem.n_samples == 50 and c.problem.target == "sin_cos" and c.problem.noise == 0.0
    # the problem's default network, with every MLP default filled in
    assert c.model.name == "mlp"
    assert (c.model.width, c.model.depth, c.model.activation, c.model.init) == (32, 2, "tanh", "xavier_normal")
    assert c.solver.name == TOY
    assert c.solver.lr == 0.1 and c.solver.sizes == (1, 2) and c.solver.local is None
    # frozen: a config is never mutated
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.run.max_iter = 3  # type: ignore[misc]


def test_explicit_model_replaces_the_default(toy):
    c = cfg.parse(raw_input(model={"name": "mlp", "width": 4}))
    assert (c.model.width, c.model.depth) == (4, 8)  # MLP's own default depth, not the problem's network


def test_section_shorthand_and_integral_floats(toy):
    c = cfg.parse(raw_input(solver=TOY, run={"max_iter": 5.0, "target_loss": "1e-3"}))
    assert c.solver.name == TOY
    assert c.run.max_iter == 5 and isinstance(c.run.max_iter, int)
    assert c.run.target_loss == pytest.approx(1e-3)


def test_set_overrides_nested_and_creating_sections(toy):
    raw = raw_input(run={"max_iter": 10})
    before = yaml.safe_dump(raw)
    out = cfg.apply_overrides(
        raw,
        [
            "run.max_iter=7",
            "solver.lr=0.5",
            "solver.sizes=[3, 4]",
            f"solver.local.name={TOY}",
            "solver.local.steps=9",
            "output.dir=somewhere",
            "run.target_loss=1e-4",
        ],
    )
    assert yaml.safe_dump(raw) == before, "apply_overrides must not mutate its input"
    c = cfg.parse(out)
    assert c.run.max_iter == 7
    assert c.solver.lr == 0.5 and c.solver.sizes == (3, 4)
    assert c.solver.local.name == TOY and c.solver.local.steps == 9 and c.solver.local.lr == 0.1
    assert c.output.dir == "somewhere"
    assert c.run.target_loss == pytest.approx(1e-4)


def test_set_into_a_shorthand_section(toy):
    out = cfg.apply_overrides(raw_input(solver=TOY), ["solver.steps=4"])
    assert out["solver"] == {"name": TOY, "steps": 4}


def test_set_on_an_empty_file(toy):
    out = cfg.apply_overrides(None, ["problem.name=regression", f"solver.name={TOY}"])
    assert cfg.parse(out).solver.name == TOY


@pytest.mark.parametrize(
    "item, key",
    [
        ("run.max_iter", "--set"),
        ("run.max_iter=[1,", "run.max_iter"),
        ("problem.n_samples.x=1", "problem.n_samples"),
    ],
)
def test_set_bad_syntax(toy, item, key):
    with pytest.raises(ConfigError) as info:
        cfg.apply_overrides(raw_input(), [item])
    assert info.value.key == key


def test_set_then_validate_names_the_key(toy):
    out = cfg.apply_overrides(raw_input(), ["solver.local.lr_typo=1"])
    assert error_of(out).key == "solver.local.name"  # a new section needs its name first
    out = cfg.apply_overrides(raw_input(), [f"solver.local.name={TOY}", "solver.local.lr_typo=1"])
    assert error_of(out).key == "solver.local.lr_typo"


# ---------------------------------------------------------------------------
# errors name the dotted key path


@pytest.mark.parametrize(
    "raw, key, words",
    [
        (dict(solver={"name": TOY, "lr_typo": 1}), "solver.lr_typo", "unknown key"),
        (dict(problem={"name": "regression", "n_sample": 1}), "problem.n_sample", "unknown key"),
        (dict(run={"max_iters": 1}), "run.max_iters", "unknown key"),
        (dict(output={"directory": "x"}), "output.directory", "unknown key"),
        (dict(model={"name": "mlp", "widht": 3}), "model.widht", "unknown key"),
        (dict(solver={"name": TOY, "local": {"name": TOY, "bogus": 1}}), "solver.local.bogus", "unknown key"),
        (
            dict(solver={"name": TOY, "local": {"name": TOY, "local": {"name": TOY, "x": 1}}}),
            "solver.local.local.x",
            "x",
        ),
        (dict(extra={"a": 1}), "extra", "unknown key"),
    ],
)
def test_unknown_key_names_the_path(toy, raw, key, words):
    err = error_of(raw_input(**raw))
    assert err.key == key
    assert key in str(err) and words in str(err)


@pytest.mark.parametrize(
    "raw, key, words",
    [
        (dict(run={"max_iter": "ten"}), "run.max_iter", "integer"),
        (dict(run={"max_iter": True}), "run.max_iter", "integer"),
        (dict(run={"max_iter": 2.5}), "run.max_iter", "integer"),
        (dict(run={"max_iter": [1]}), "run.max_iter", "integer"),
        (dict(run={"target_loss": "small"}), "run.target_loss", "number"),
        (dict(run={"target_loss": float("nan")}), "run.target_loss", "nan"),
        (dict(run={"target_loss": True}), "run.target_loss", "number"),
        (dict(run={"dtype": "float16"}), "run.dtype", "float32"),
        (dict(run={"target_metric": 3}), "run.target_metric", "string"),
        (dict(run=[1, 2]), "run", "mapping"),
        (dict(run=5), "run", "mapping"),
        (dict(solver={"name": TOY, "verbose": "yes"}), "solver.verbose", "true or false"),
        (dict(solver={"name": TOY, "verbose": 1}), "solver.verbose", "true or false"),
        (dict(solver={"name": TOY, "sizes": 3}), "solver.sizes", "list"),
        (dict(solver={"name": TOY, "sizes": [1, "a"]}), "solver.sizes[1]", "integer"),
        (dict(solver={"name": TOY, "mode": "both"}), "solver.mode", "additive"),
        (dict(solver={"name": TOY, "local": 3}), "solver.local", "name"),
        (dict(solver={"name": 3}), "solver.name", "string"),
        (dict(solver={"lr": 1.0}), "solver.name", "required"),
        (dict(solver={"name": "no_such_solver"}), "solver.name", "no_such_solver"),
        (dict(solver={"name": TOY, "local": {"name": "nope"}}), "solver.local.name", "nope"),
        (dict(problem={"name": "no_such_problem"}), "problem.name", "no_such_problem"),
        (dict(model={"name": "no_such_model"}), "model.name", "no_such_model"),
        (dict(model={"name": "mlp", "activation": "swish"}), "model.activation", "tanh"),
    ],
)
def test_wrong_types(toy, raw, key, words):
    err = error_of(raw_input(**raw))
    assert err.key == key
    assert words in str(err)


@pytest.mark.parametrize(
    "raw, key",
    [
        (dict(run={"max_iter": -1}), "run.max_iter"),
        (dict(run={"wall_time": 0}), "run.wall_time"),
        (dict(run={"metrics_every": 0}), "run.metrics_every"),
        (dict(run={"max_grad_evals": 0}), "run.max_grad_evals"),
        (dict(run={"threads": 0}), "run.threads"),
        (dict(problem={"name": "regression", "noise": -0.5}), "problem.noise"),
        (dict(problem={"name": "regression", "n_test": 1}), "problem.n_test"),
        (dict(model={"name": "mlp", "width": 0}), "model.width"),
        (dict(solver={"name": TOY, "lr": 0.0}), "solver.lr"),
        (dict(solver={"name": TOY, "steps": 51}), "solver.steps"),
        (dict(solver={"name": TOY, "sizes": [2, 0]}), "solver.sizes[1]"),
        (dict(solver={"name": TOY, "tol": -1}), "solver.tol"),
        (dict(solver={"name": TOY, "local": {"name": TOY, "steps": 0}}), "solver.local.steps"),
    ],
)
def test_out_of_range(toy, raw, key):
    err = error_of(raw_input(**raw))
    assert err.key == key
    assert "expected a value" in str(err)


def test_bounds_are_inclusive(toy):
    c = cfg.parse(raw_input(run={"max_iter": 0}, solver={"name": TOY, "steps": 50, "tol": 0}))
    assert c.run.max_iter == 0 and c.solver.steps == 50 and c.solver.tol == 0.0


@pytest.mark.parametrize(
    "raw, key",
    [
        ([1, 2], ""),
        ("text", ""),
        (None, ""),
        ({"solver": {"name": TOY}}, "problem"),
        ({"problem": {"name": "regression"}}, "solver"),
        ({"problem": None, "solver": {"name": TOY}}, "problem"),
    ],
)
def test_top_level_shape(toy, raw, key):
    assert error_of(raw).key == key


def test_nested_component_sections(toy):
    raw = raw_input(
        solver={"name": TOY, "lr": 1.0, "local": {"name": TOY, "steps": 5, "local": TOY}},
    )
    c = cfg.parse(raw)
    assert c.solver.lr == 1.0
    assert isinstance(c.solver.local, cfg.Section)
    assert c.solver.local.kind == "solver" and c.solver.local.steps == 5
    assert c.solver.local.local.name == TOY and c.solver.local.local.local is None
    assert cfg.to_dict(c)["solver"]["local"]["local"] == cfg.to_dict(cfg.parse(raw_input()))["solver"]


def test_check_setup_is_applied_to_nested_sections(toy):
    raw = raw_input(solver={"name": TOY, "local": {"name": TOY}})
    cfg.parse(raw, world_size=2)
    err = error_of(raw, world_size=3)
    assert err.key == "solver" and "3" in err.message
    sections = dict(cfg._sections(cfg.parse(raw), ""))
    assert set(sections) == {"problem", "model", "solver", "solver.local"}


def test_to_yaml_round_trip(toy):
    raws = [
        raw_input(),
        raw_input(
            model={"name": "mlp", "width": 3, "depth": 1, "activation": "relu"},
            solver={"name": TOY, "sizes": [5, 6, 7], "tol": 1e-9, "local": {"name": TOY, "mode": "multiplicative"}},
            run={"max_iter": 3, "target_loss": 1e-12, "dtype": "float64", "wall_time": 2.5, "seed": 7},
            output={"dir": "out/here"},
        ),
    ]
    for raw in raws:
        c = cfg.parse(raw)
        text = cfg.to_yaml(c)
        again = cfg.parse(yaml.safe_load(text))
        assert again == c
        assert cfg.to_yaml(again) == text
        # every default appears in the resolved file
        assert "max_grad_evals" in text and "checkpoint_every" in text and "n_test" in text


def test_config_error_is_picklable_and_located():
    err = ConfigError("solver.lr", "expected a number, got 'x'")
    again = pickle.loads(pickle.dumps(err.located("in.yaml")))
    assert isinstance(again, InputError)
    assert str(again) == "in.yaml: solver.lr: expected a number, got 'x'"
    assert (again.key, again.source) == ("solver.lr", "in.yaml")


def test_load_names_the_file(toy, tmp_path):
    path = tmp_path / "in.yaml"
    path.write_text(yaml.safe_dump(raw_input(run={"max_iter": -3})))
    with pytest.raises(ConfigError) as info:
        cfg.load(str(path), SerialComm())
    assert str(info.value).startswith(f"{path}: run.max_iter: ")
    with pytest.raises(ConfigError) as info:
        cfg.load(str(path), SerialComm(), ["run.max_iter=4", "solver.nope=1"])
    assert str(info.value).startswith(f"{path}: solver.nope: ")
    c = cfg.load(str(path), SerialComm(), ["run.max_iter=4"])
    assert c.run.max_iter == 4


def test_load_reports_yaml_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("problem:\n  name: regression\nsolver: [1, 2\n")
    with pytest.raises(ConfigError) as info:
        cfg.load(str(path), SerialComm())
    assert str(path) in str(info.value) and "line" in str(info.value)
    for missing in (tmp_path / "nope.yaml", tmp_path):
        with pytest.raises(ConfigError) as info:
            cfg.load(str(missing), SerialComm())
        assert str(missing) in str(info.value)


# ---------------------------------------------------------------------------
# documentation of the options


def _option_classes():
    yield "run", cfg.RunOptions
    yield "data", cfg.DataOptions
    yield "output", cfg.OutputOptions
    for kind in registry.kinds():
        for name in registry.names(kind):
            yield f"{kind} {name}", registry.lookup(kind, name).options


def test_every_option_is_documented(toy):
    for label, cls in _option_classes():
        lines = describe_options(cls)
        text = "\n".join(lines)
        for f in dataclasses.fields(cls):
            assert any(line.strip().startswith(f"{f.name}:") for line in lines), f"{label}: {f.name} not described"
            assert f.metadata.get("doc"), f"{label}: option {f.name} has no doc string"
        assert len(lines) >= len(dataclasses.fields(cls))
        assert text.count(":") >= len(dataclasses.fields(cls))


def test_describe_shows_defaults_and_bounds(toy):
    text = "\n".join(describe_options(ToyOptions))
    assert "lr: a number = 0.1 [gt 0]" in text
    assert "steps: an integer = 3 [min 1, max 50]" in text
    assert "local: <solver section>" in text


@pytest.mark.parametrize(
    "tp, name",
    [
        (int, "an integer"),
        (Optional[float], "a number or null"),
        (tuple[int, ...], "a list of integers"),
        (tuple[tuple[int, ...], ...], "a list of lists of integers"),
        (Optional[tuple[tuple[int, ...], ...]], "a list of lists of integers or null"),
        (tuple[str, ...], "a list of strings"),
        (tuple[bool, ...], "a list of booleans"),
        (Literal["a", "b"], "one of 'a', 'b'"),
    ],
)
def test_type_names(tp, name):
    assert type_name(tp) == name


def test_list_shows_every_component_and_option():
    proc = subprocess.run(
        [sys.executable, "-m", "ddnn", "--list"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    out = proc.stdout
    blocks: dict[str, str] = {}
    current = None
    for line in out.splitlines():
        if line and not line.startswith(" ") and not line.startswith("=="):
            current = line.split(":", 1)[0]
            blocks[current] = ""
        elif current is not None:
            blocks[current] += line + "\n"
    expected = [("run", cfg.RunOptions), ("data", cfg.DataOptions), ("output", cfg.OutputOptions)]
    for kind in registry.kinds():
        assert f"== {kind} " in out
        for name in registry.names(kind):
            if name.startswith("_test"):
                continue
            expected.append((name, registry.lookup(kind, name).options))
    assert any(kind_name == "regression" for kind_name, _ in expected)
    for name, options in expected:
        assert name in blocks, f"{name} is not listed"
        for f in dataclasses.fields(options):
            assert f"  {f.name}:" in blocks[name], f"{name}: option {f.name} is not listed"
