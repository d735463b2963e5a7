"""Every malformed input ends the run with exit code 2 and one line on stderr, before any output exists."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from tests.helpers import REPO, subprocess_env

BAD = os.path.join(REPO, "tests", "inputs", "bad")

GOOD = """\
problem: {name: regression, n_samples: 200}
model: {name: mlp, width: 8, depth: 1}
solver: {name: adam, lr: 0.01}
run: {max_iter: 2, dtype: float64, print_every: 0}
"""

# file in tests/inputs/bad -> what its error line must say besides the file name
CORPUS: dict[str, tuple[str, ...]] = {
    "yaml_syntax.yaml": ("YAML syntax error", "line 4"),
    "tabs.yaml": ("YAML syntax error", "line 2"),
    "two_documents.yaml": ("YAML syntax error", "line 3"),
    "not_utf8.yaml": ("not a text file",),
    "empty.yaml": ("empty",),
    "top_level_list.yaml": ("top level", "list"),
    "unknown_section.yaml": ("optimizer: unknown key",),
    "unknown_problem_key.yaml": ("problem.n_sample: unknown key",),
    "unknown_nested_key.yaml": ("solver.line_search.c1x: unknown key",),
    "string_for_int.yaml": ("run.max_iter: expected an integer", "'ten'"),
    "negative_max_iter.yaml": ("run.max_iter: expected a value >= 0", "-5"),
    "float_for_int.yaml": ("problem.n_samples: expected an integer", "200.5"),
    "unknown_solver.yaml": ("solver.name: unknown solver 'adamw'", "adam"),
    "unknown_problem.yaml": ("problem.name: unknown problem 'regresion'", "regression"),
    "unknown_line_search.yaml": ("solver.line_search.name: unknown line_search 'backtracking'",),
    "missing_problem.yaml": ("problem: required section is missing",),
    "missing_solver.yaml": ("solver: required section is missing",),
    "missing_solver_name.yaml": ("solver.name: required",),
    "bad_dtype.yaml": ("run.dtype: expected one of", "float16"),
    "nan_lr.yaml": ("solver.lr:", "nan"),
    "out_of_range_betas.yaml": ("solver.betas[1]: expected a value < 1",),
    "zero_wall_time.yaml": ("run.wall_time: expected a value > 0",),
    "scalar_section.yaml": ("run: expected a mapping",),
}


@dataclass
class Case:
    """One command line that must be refused; ``{tmp}`` and ``{good}`` are filled in per run."""

    args: tuple[str, ...]
    names: tuple[str, ...]  # substrings of the error line
    names_file: bool = True


def _corpus_case(name: str) -> Case:
    return Case((os.path.join(BAD, name), "--out", "{tmp}/out"), CORPUS[name])


CLI_CASES: dict[str, Case] = {
    "missing_file": Case(("{tmp}/no_such_input.yaml", "--out", "{tmp}/out"), ("{tmp}/no_such_input.yaml", "not found")),
    "directory": Case(("{tmp}", "--out", "{tmp}/out"), ("{tmp}", "directory")),
    "set_without_equals": Case(("{good}", "--set", "run.max_iter", "--out", "{tmp}/out"), ("--set", "KEY=VALUE")),
    "set_unknown_key": Case(("{good}", "--set", "run.max_itr=3", "--out", "{tmp}/out"), ("run.max_itr",)),
    "no_default_out": Case(("{good}", "--set", "model.depth=0"), ("model.depth",)),
    # resume errors name the checkpoint, not the input
    "resume_missing": Case(
        ("{good}", "--resume", "{tmp}/nothing.h5", "--out", "{tmp}/out"), ("{tmp}/nothing.h5",), names_file=False
    ),
    "resume_not_a_checkpoint": Case(
        ("{good}", "--resume", "{good}", "--out", "{tmp}/out"), ("{good}", "resume"), names_file=False
    ),
    "unknown_flag": Case(("{good}", "--bogus"), ("--bogus",), names_file=False),
}

MPI_SUBSET = ["yaml_syntax.yaml", "unknown_nested_key.yaml", "negative_max_iter.yaml"]


def launch(case: Case, tmp: str, ranks: int = 0) -> dict:
    """Run one case in its own empty working directory ``tmp``; return what must be checked."""
    os.makedirs(tmp, exist_ok=True)
    good = os.path.join(tmp, "good.yaml")
    with open(good, "w") as fh:
        fh.write(GOOD)
    fill = {"tmp": tmp, "good": good}
    args = [a.format(**fill) for a in case.args]
    cmd = [sys.executable, "-m", "ddnn", *args]
    if ranks:
        cmd = ["mpiexec", "-n", str(ranks), *cmd]
    proc = subprocess.run(cmd, cwd=tmp, env=subprocess_env(), capture_output=True, text=True, timeout=60)
    return {
        "cmd": " ".join(cmd),
        "rc": proc.returncode,
        "stdout": proc.stdout,
        "stderr": proc.stderr,
        "names": [n.format(**fill) for n in case.names],
        "file": args[0] if case.names_file else None,
        "leftovers": sorted(set(os.listdir(tmp)) - {"good.yaml"}),
    }


def check_refused(result: dict) -> None:
    where = f"{result['cmd']}\nstdout: {result['stdout']!r}\nstderr: {result['stderr']!r}"
    assert result["rc"] == 2, where
    assert result["stdout"] == "", where
    assert "Traceback" not in result["stderr"], where
    lines = result["stderr"].splitlines()
    assert len(lines) == 1 and result["stderr"].endswith("\n"), where
    line = lines[0]
    assert line.startswith("ddnn: error: "), where
    if result["file"]:
        assert result["file"] in line, where
    for name in result["names"]:
        assert name in line, f"{name!r} missing: {where}"
    # nothing created: no --out directory, no runs/ in the working directory
    assert result["leftovers"] == [], where


@pytest.fixture(scope="module")
def serial_results(tmp_path_factory):
    """Every serial case, run two at a time (one per core)."""
    root = tmp_path_factory.mktemp("bad")
    cases = {f"corpus/{n}": _corpus_case(n) for n in CORPUS}
    cases.update({f"cli/{n}": c for n, c in CLI_CASES.items()})
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {key: pool.submit(launch, case, str(root / key.replace("/", "_"))) for key, case in cases.items()}
        return {key: f.result() for key, f in futures.items()}


def test_corpus_is_complete():
    on_disk = sorted(os.path.basename(p) for p in glob.glob(os.path.join(BAD, "*.yaml")))
    assert on_disk == sorted(CORPUS)
    assert len(on_disk) >= 15


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_bad_input_file(serial_results, name):
    check_refused(serial_results[f"corpus/{name}"])


@pytest.mark.parametrize("name", sorted(CLI_CASES))
def test_bad_command_line(serial_results, name):
    check_refused(serial_results[f"cli/{name}"])


@pytest.mark.mpi
@pytest.mark.parametrize("name", MPI_SUBSET)
def test_bad_input_under_mpiexec(tmp_path, name):
    check_refused(launch(_corpus_case(name), str(tmp_path / "cwd"), ranks=2))


SCHWARZ_TWO_BLOCKS = """\
problem: {name: regression, n_samples: 200}
model: {name: mlp, width: 8, depth: 3}
solver:
  name: lbfgs
  npc: {name: schwarz, variant: additive, subdomains: 2, local_iters: 1}
run: {max_iter: 1, dtype: float64, print_every: 0}
"""


@pytest.mark.mpi
def test_impossible_rank_count(tmp_path):
    """Two additive blocks cannot be shared evenly by three ranks: refused before anything runs."""
    inp = tmp_path / "schwarz.yaml"
    inp.write_text(SCHWARZ_TWO_BLOCKS)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = subprocess.run(
        ["mpiexec", "-n", "3", sys.executable, "-m", "ddnn", str(inp), "--out", str(cwd / "out")],
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    check_refused(
        {
            "cmd": "mpiexec -n 3 ddnn schwarz.yaml",
            "rc": proc.returncode,
            "stdout": proc.stdout,
            "stderr": proc.stderr,
            "names": ["solver.npc.subdomains", "3 ranks"],
            "file": str(inp),
            "leftovers": sorted(os.listdir(cwd)),
        }
    )
    # the same file is valid for one rank
    proc = subprocess.run(
        [sys.executable, "-m", "ddnn", str(inp), "--validate"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


def test_validate(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    proc = subprocess.run(
        [sys.executable, "-m", "ddnn", str(good), "--validate", "--set", "run.max_iter=3"],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{good}: valid" and proc.stderr == ""
    assert sorted(os.listdir(tmp_path)) == ["good.yaml"]  # validation writes nothing
    bad = os.path.join(BAD, "unknown_nested_key.yaml")
    proc = subprocess.run(
        [sys.executable, "-m", "ddnn", bad, "--validate"],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "solver.line_search.c1x" in proc.stderr
