"""Every malformed input ends the run with exit code 2 and one line on stderr, before any output exists.

The line names the file and the full key path (``ddnn: error: FILE: KEY: message``). Every file of the
corpus is run twice, as a run and with ``--validate`` (which must refuse everything a run refuses), and so is
every command-line case. A fresh ``python -m ddnn`` spends about 1.5 s of CPU importing torch, so these
serial runs are children forked from one interpreter that imported torch once (:func:`launch_forked`); a
subset also runs as fresh processes and must say the same, and another subset runs under ``mpiexec -n 2``
(one line in all, every rank ends).
"""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import torch

from tests.helpers import REPO, subprocess_env

BAD = os.path.join(REPO, "tests", "inputs", "bad")
CUDA = torch.cuda.is_available()
WORKERS = 2  # one process per core

GOOD = """\
problem: {name: regression, n_samples: 200}
model: {name: mlp, width: 8, depth: 1}
solver: {name: adam, lr: 0.01}
run: {max_iter: 2, dtype: float64, print_every: 0}
"""

#: an input expected to be valid (device_cuda.yaml on a machine with CUDA)
VALID = ("<valid>",)

# file in tests/inputs/bad -> (the key path the error names, '' for the file itself; other parts of the line)
CORPUS: dict[str, tuple[str, ...]] = {
    # YAML
    "yaml_syntax.yaml": ("", "line 4, column 4: YAML syntax error"),
    "tabs.yaml": ("", "line 2, column 1: YAML syntax error"),
    "two_documents.yaml": ("", "line 3, column 1: YAML syntax error"),
    "not_utf8.yaml": ("", "not a text file"),
    "empty.yaml": ("", "the input is empty"),
    "top_level_list.yaml": ("", "expected a mapping of sections at the top level, got list"),
    "duplicate_key.yaml": ("run.max_iter", "line 4, column 20: duplicate key", "first at line 4, column 7"),
    "duplicate_section.yaml": ("solver", "line 5, column 1: duplicate key", "first at line 3, column 1"),
    "duplicate_nested_key.yaml": ("solver.line_search.c1", "line 9, column 5: duplicate key", "first at line 7"),
    "alias_bomb.yaml": ("run.max_iter[4][7][8][8][7][3]", "the input holds more than 100,000 values", "aliases"),
    "alias_bomb_mappings.yaml": ("run.wall_time.e.k3.k3.k8.k9", "the input holds more than 100,000 values"),
    "recursive_alias.yaml": ("solver.npc.local", "a YAML alias refers to a section that contains it"),
    "recursive_list.yaml": ("solver.betas[1]", "a YAML alias refers to a section that contains it"),
    # structure, names and types
    "unknown_section.yaml": ("optimizer", "unknown key", "problem"),
    "unknown_problem_key.yaml": ("problem.n_sample", "unknown key", "n_samples"),
    "unknown_nested_key.yaml": ("solver.line_search.c1x", "unknown key", "c1"),
    "string_for_int.yaml": ("run.max_iter", "expected an integer", "'ten'"),
    "float_for_int.yaml": ("problem.n_samples", "expected an integer", "200.5"),
    "unknown_solver.yaml": ("solver.name", "unknown solver 'adamw'", "adam"),
    "unknown_problem.yaml": ("problem.name", "unknown problem 'regresion'", "regression"),
    "unknown_line_search.yaml": ("solver.line_search.name", "unknown line_search 'backtracking'"),
    "missing_problem.yaml": ("problem", "required section is missing"),
    "missing_solver.yaml": ("solver", "required section is missing"),
    "missing_solver_name.yaml": ("solver.name", "required"),
    "bad_dtype.yaml": ("run.dtype", "expected one of", "float16"),
    "scalar_section.yaml": ("run", "expected a mapping"),
    # numbers: not finite, out of range, too large for torch
    "nan_lr.yaml": ("solver.lr", "expected a finite number, got nan"),
    "inf_lr.yaml": ("solver.lr", "expected a finite number, got inf"),
    "minus_inf_target_loss.yaml": ("run.target_loss", "expected a finite number, got -inf"),
    "lr_beyond_float32.yaml": ("solver.lr", "1e+300 is beyond the range of float32"),
    "negative_max_iter.yaml": ("run.max_iter", "expected a value >= 0", "-5"),
    "out_of_range_betas.yaml": ("solver.betas[1]", "expected a value < 1"),
    "zero_wall_time.yaml": ("run.wall_time", "expected a value > 0"),
    "zero_interior.yaml": ("problem.n_interior", "expected a value >= 1, got 0"),
    "zero_depth.yaml": ("model.depth", "expected a value >= 1, got 0"),
    "huge_seed.yaml": ("run.seed", "expected an integer of at most 19 digits", "1000000000000000000000000000000"),
    "huge_threads.yaml": ("run.threads", "expected a value <= 4096, got 100000"),
    "huge_width.yaml": ("model.width", "expected a value <= 1000000, got 1000000000"),
    "huge_memory.yaml": ("solver.memory", "expected a value <= 1000, got 1000000000"),
    "huge_n_interior.yaml": ("problem.n_interior", "expected a value <= 1000000000, got 1000000000000"),
    "huge_network.yaml": ("model", "the network has 7,000,011,000,001 parameters", "more than this machine's memory"),
    # data
    "batch_size_zero.yaml": ("data.batch_size", "expected a value >= 1, got 0"),
    "overlap_100.yaml": ("data.overlap", "expected a value < 100.0, got 100.0"),
    "resample_regression.yaml": ("data.resample_every", "problem 'regression' cannot draw new samples"),
    "mnist_without_data_dir.yaml": ("problem.data_dir", "dataset mnist reads files: set data_dir"),
    "mnist_missing_files.yaml": ("problem.data_dir", "missing", "train-images-idx3-ubyte"),
    # the run section against the problem and the machine
    "target_metric_unknown.yaml": ("run.target_metric", "problem 'burgers' has no metric 'accuracy'", "rel_l2_error"),
    "target_value_alone.yaml": ("run.target_value", "needs run.target_metric as well"),
    "target_metric_alone.yaml": ("run.target_metric", "needs run.target_value as well"),
    "device_cuda.yaml": VALID if CUDA else ("run.device", "CUDA is not available on this machine"),
    # solver composition and decomposition against the network
    "npc_adam.yaml": ("solver.npc.name", "solver 'adam' cannot be used here", "nonlinear preconditioner"),
    "local_schwarz.yaml": ("solver.npc.local.name", "solver 'schwarz' cannot be used here", "local solver"),
    "samples_overlap.yaml": ("solver.npc.overlap", "use overlap_percent for sample chunks"),
    "npc_layers_empty.yaml": ("solver.npc.layers", "every block needs at least one layer"),
    "npc_layers_empty_block.yaml": ("solver.npc.layers", "every block needs at least one layer"),
    "npc_layers_gap.yaml": ("solver.npc.layers", "layers [2] are in no block"),
    "npc_layers_out_of_range.yaml": ("solver.npc.layers", "the network has 4 layers (0..3)"),
    "npc_layers_huge_index.yaml": ("solver.npc.layers", "block 1: layers [1, 1000000000000] are not consecutive"),
    "npc_layers_beyond_network.yaml": ("solver.npc.layers", "the network has 4 layers (0..3)"),
    "npc_too_many_subdomains.yaml": ("solver.npc.subdomains", "9 blocks but the network has only 4 layers"),
}

#: alias bombs: they must fail fast and in flat memory (a start of ddnn takes about 1.5 s and 250 MB)
BOMB_CPU_S = 5.0
BOMB_RSS_MB = 600

# "billion laughs" as one --set value
SET_BOMB = (
    "[&a [1,1,1,1,1,1,1,1,1,1], "
    + ", ".join(f"&{b} [{', '.join([f'*{a}'] * 10)}]" for a, b in zip("abcdefgh", "bcdefghi"))
    + "]"
)


@dataclass
class Case:
    """One command line that must be refused; ``{tmp}`` and ``{good}`` are filled in per run.

    ``prefix`` is how the error line continues after ``ddnn: error: `` (the file and the key path),
    ``names`` further parts of the line.
    """

    args: tuple[str, ...]
    prefix: str
    names: tuple[str, ...] = ()
    bomb: bool = False


def _file_case(name: str, validate: bool = False) -> Case:
    key, *names = CORPUS[name]
    path = os.path.join(BAD, name)
    mode = ("--validate",) if validate else ("--out", "{tmp}/out")
    return Case((path, *mode), f"{path}: {key}: " if key else f"{path}: ", tuple(names), bomb="bomb" in name)


CLI_CASES: dict[str, Case] = {
    "missing_file": Case(
        ("{tmp}/no_such_input.yaml", "--out", "{tmp}/out"), "{tmp}/no_such_input.yaml: ", ("not found",)
    ),
    "newline_in_file_name": Case(
        ("{tmp}/no\nsuch.yaml", "--out", "{tmp}/out"), "{tmp}/no\\nsuch.yaml: ", ("not found",)
    ),
    "directory": Case(("{tmp}", "--out", "{tmp}/out"), "{tmp}: ", ("directory",)),
    "set_without_equals": Case(
        ("{good}", "--set", "run.max_iter", "--out", "{tmp}/out"), "{good}: --set: ", ("KEY=VALUE",)
    ),
    "set_unknown_key": Case(
        ("{good}", "--set", "run.max_itr=3", "--out", "{tmp}/out"), "{good}: run.max_itr: ", ("unknown",)
    ),
    "set_not_a_section": Case(
        ("{good}", "--set", "run.max_iter.x=5"), "{good}: run.max_iter: ", ("--set: not a section",)
    ),
    "set_duplicate_key": Case(
        ("{good}", "--set", "run={{max_iter: 1, max_iter: 2}}"), "{good}: run.max_iter: ", ("--set: line 1, column 15",)
    ),
    "set_alias_bomb": Case(
        ("{good}", "--set", f"solver.betas={SET_BOMB}", "--out", "{tmp}/out"),
        "{good}: solver.betas[4][7][8][8][8][9]: ",
        ("--set: the input holds more than 100,000 values",),
        bomb=True,
    ),
    "set_recursive_value": Case(
        ("{good}", "--set", "run.seed=&a [1, *a]", "--out", "{tmp}/out"),
        "{good}: run.seed[1]: ",
        ("--set: a YAML alias refers to a section that contains it",),
    ),
    "set_nested_too_deeply": Case(
        ("{good}", "--set", "run.max_iter=" + "[" * 5000, "--out", "{tmp}/out"),
        "{good}: run.max_iter: ",
        ("--set: cannot parse value",),
    ),
    "recursive_file_with_set": Case(
        (os.path.join(BAD, "recursive_alias.yaml"), "--set", "run.max_iter=3", "--out", "{tmp}/out"),
        os.path.join(BAD, "recursive_alias.yaml") + ": solver.npc.local: ",
        ("recursive input",),
    ),
    "no_default_out": Case(("{good}", "--set", "model.depth=0"), "{good}: model.depth: ", ("expected a value >= 1",)),
    # resume errors name the checkpoint, not the input
    "resume_missing": Case(
        ("{good}", "--resume", "{tmp}/nothing.h5", "--out", "{tmp}/out"),
        "{tmp}/nothing.h5: cannot resume",
        ("not found",),
    ),
    "resume_not_a_checkpoint": Case(("{good}", "--resume", "{good}", "--out", "{tmp}/out"), "{good}: cannot resume"),
    "unknown_flag": Case(("{good}", "--bogus"), "unrecognized arguments: --bogus"),
}

MPI_SUBSET = [
    "yaml_syntax.yaml",
    "duplicate_key.yaml",
    "alias_bomb.yaml",
    "unknown_nested_key.yaml",
    "negative_max_iter.yaml",
    "npc_adam.yaml",
    "npc_too_many_subdomains.yaml",
    "mnist_missing_files.yaml",
]

# files also run as fresh processes (both ways): they must give what the forked runs give (the MPI cases are
# fresh processes too)
FRESH_SUBSET = [
    "yaml_syntax.yaml",
    "alias_bomb.yaml",
    "huge_network.yaml",
    "mnist_missing_files.yaml",
    "device_cuda.yaml",
]


def run_command(cmd: list[str], cwd, env: dict[str, str] | None = None, timeout: float = 60, stdin: str = "") -> dict:
    """Run ``cmd`` to its end; its exit code, output, wall time, CPU time and peak memory (with children).

    On timeout the whole process group (an mpiexec and its ranks) is killed and ``timed_out`` is set.
    """
    timed_out = threading.Event()

    def kill(pid: int) -> None:
        timed_out.set()
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    with tempfile.TemporaryFile() as inp, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        inp.write(stdin.encode())
        inp.seek(0)
        start = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env if env is not None else subprocess_env(),
            stdin=inp,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        timer = threading.Timer(timeout, kill, (proc.pid,))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = (f.read().decode("utf-8", errors="replace") for f in (out, err))
    return {
        "cmd": " ".join(str(c) for c in cmd)[:500],
        "rc": proc.returncode,
        "stdout": stdout,
        "stderr": stderr,
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_mb": usage.ru_maxrss / 1024,
        "timed_out": timed_out.is_set(),
    }


# -- many `python -m ddnn` runs for the price of one start ----------------------------------------------------
#
# Importing torch costs a fresh `python -m ddnn` about 1.5 s of CPU, most of a refused run. The serial cases
# therefore run in children forked from one interpreter that has imported torch and ddnn: each child does
# what `python -m ddnn ARGS` does after its imports (runpy runs the package's __main__ with sys.argv set; an
# uncaught exception prints its traceback and exits 1), in its own working directory, with its own stdout
# and stderr. FRESH_SUBSET, the MPI cases and tests/test_faults.py start fresh processes.


def _exit_code(exc: SystemExit) -> int:
    """The exit status of an interpreter ending with ``exc`` (as Python's own handling of SystemExit)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    print(exc.code, file=sys.stderr)
    return 1


def _forked_child(job: dict, out: str, err: str) -> None:
    """In a forked child: run ``python -m ddnn`` with the job's arguments, then exit (never returns)."""
    import runpy
    import traceback

    code = 1
    try:
        for fd, path in ((1, out), (2, err)):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
        os.chdir(job["cwd"])
        sys.argv = ["-m", *job["args"]]
        try:
            runpy.run_module("ddnn", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc)
        except BaseException:  # noqa: BLE001 - what the interpreter does with an uncaught exception
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _serve() -> None:
    """The forking interpreter: jobs as JSON on stdin, results as JSON on the last line of stdout."""
    import json
    import shutil

    import ddnn.cli  # noqa: F401 - imported once, for every child
    from ddnn import registry

    registry.load_builtin_components()
    request = json.load(sys.stdin)
    pending = list(enumerate(request["jobs"]))
    scratch = tempfile.mkdtemp()
    running: dict[int, tuple] = {}
    results: list[dict | None] = [None] * len(pending)
    while pending or running:
        while pending and len(running) < request["workers"]:
            index, job = pending.pop(0)
            out, err = (os.path.join(scratch, f"{index}.{kind}") for kind in ("out", "err"))
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _forked_child(job, out, err)
            running[pid] = (index, job, out, err, time.monotonic(), [False])
        pid, status, usage = os.wait4(-1, os.WNOHANG)
        if pid == 0:
            for child, (*_, start, killed) in running.items():
                if time.monotonic() - start > request["timeout"] and not killed[0]:
                    killed[0] = True
                    os.kill(child, signal.SIGKILL)
            time.sleep(0.002)
            continue
        index, job, out, err, start, killed = running.pop(pid)
        with open(out, encoding="utf-8", errors="replace") as fo, open(err, encoding="utf-8", errors="replace") as fe:
            stdout, stderr = fo.read(), fe.read()
        results[index] = {
            "cmd": "(forked) python -m ddnn " + " ".join(job["args"])[:500],
            "rc": os.waitstatus_to_exitcode(status),
            "stdout": stdout,
            "stderr": stderr,
            "wall": time.monotonic() - start,
            "cpu": usage.ru_utime + usage.ru_stime,
            "rss_mb": usage.ru_maxrss / 1024,
            "timed_out": killed[0],
        }
    shutil.rmtree(scratch)
    print("\n" + json.dumps(results))


def _prepare(case: Case, tmp: str) -> tuple[list[str], dict[str, str]]:
    """The empty working directory ``tmp`` of one case (with good.yaml); the case's arguments there."""
    os.makedirs(tmp, exist_ok=True)
    good = os.path.join(tmp, "good.yaml")
    with open(good, "w") as fh:
        fh.write(GOOD)
    fill = {"tmp": tmp, "good": good}
    return [a.format(**fill) for a in case.args], fill


def _finish(case: Case, tmp: str, fill: dict[str, str], result: dict) -> dict:
    result.update(
        cwd=tmp,
        prefix=case.prefix.format(**fill),
        names=[n.format(**fill) for n in case.names],
        bomb=case.bomb,
        leftovers=sorted(set(os.listdir(tmp)) - {"good.yaml"}),
    )
    return result


def launch(case: Case, tmp: str, ranks: int = 0) -> dict:
    """Run one case as a fresh process in its own empty working directory ``tmp``; return what must be checked."""
    args, fill = _prepare(case, tmp)
    cmd = [sys.executable, "-m", "ddnn", *args]
    if ranks:
        cmd = ["mpiexec", "-n", str(ranks), *cmd]
    return _finish(case, tmp, fill, run_command(cmd, tmp))


def launch_forked(cases: dict[str, Case], root) -> dict[str, dict]:
    """Run every case as ``python -m ddnn`` in a child of one forking interpreter, ``WORKERS`` at a time."""
    import json

    prepared = {key: _prepare(case, str(root / key.replace("/", "_"))) for key, case in cases.items()}
    jobs = [{"args": args, "cwd": str(root / key.replace("/", "_"))} for key, (args, _) in prepared.items()]
    request = json.dumps({"jobs": jobs, "workers": WORKERS, "timeout": 60})
    server = run_command([sys.executable, "-m", "tests.test_bad_inputs"], REPO, timeout=600, stdin=request)
    assert server["rc"] == 0 and not server["timed_out"], server["stderr"][-3000:]
    results = json.loads(server["stdout"].splitlines()[-1])
    return {
        key: _finish(case, str(root / key.replace("/", "_")), prepared[key][1], result)
        for (key, case), result in zip(cases.items(), results)
    }


def check_refused(result: dict) -> None:
    where = f"{result['cmd']}\nstdout: {result['stdout'][-2000:]!r}\nstderr: {result['stderr'][-2000:]!r}"
    assert not result["timed_out"], f"hung: {where}"
    assert result["rc"] == 2, where
    assert result["stdout"] == "", where
    assert "Traceback" not in result["stderr"], where
    lines = result["stderr"].splitlines()
    assert len(lines) == 1 and result["stderr"].endswith("\n"), where
    line = lines[0]
    assert line.startswith("ddnn: error: " + result["prefix"]), f"expected {result['prefix']!r}: {where}"
    for name in result["names"]:
        assert name in line, f"{name!r} missing: {where}"
    assert len(line) <= 1000, where
    # nothing created: no --out directory, no runs/ in the working directory
    assert result["leftovers"] == [], where
    if result["bomb"]:
        assert result["cpu"] < BOMB_CPU_S, f"{result['cpu']:.1f} s of CPU: {where}"
        assert result["rss_mb"] < BOMB_RSS_MB, f"{result['rss_mb']:.0f} MB: {where}"


def check_valid(result: dict, validate: bool) -> None:
    """An input the corpus expects to be valid on this machine (CUDA present): it validates, and runs."""
    where = f"{result['cmd']}\nstdout: {result['stdout'][-2000:]!r}\nstderr: {result['stderr'][-2000:]!r}"
    assert result["rc"] == 0 and not result["timed_out"], where
    if validate:
        assert result["stdout"].strip().endswith(": valid") and result["leftovers"] == [], where
    else:
        assert result["leftovers"] == ["out"], where
        assert os.path.exists(os.path.join(result["cwd"], "out", "results.h5")), where


def _same(result: dict) -> tuple[int, str, str]:
    """What two runs of one case in different working directories must share."""
    tmp = result["cwd"]
    return result["rc"], result["stdout"].replace(tmp, "{tmp}"), result["stderr"].replace(tmp, "{tmp}")


def check(name: str, result: dict, validate: bool) -> None:
    if CORPUS[name] is VALID:
        check_valid(result, validate)
    else:
        check_refused(result)


def _pool(cases: dict[str, tuple[Case, int]], root) -> dict[str, dict]:
    """Fresh processes, ``WORKERS`` at a time."""
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures = {
            key: pool.submit(launch, case, str(root / key.replace("/", "_")), ranks)
            for key, (case, ranks) in cases.items()
        }
        return {key: f.result() for key, f in futures.items()}


@pytest.fixture(scope="module")
def serial_results(tmp_path_factory):
    """Every serial case: each file as a run and with --validate, and the command-line cases."""
    cases = {}
    for name in CORPUS:
        cases[f"run/{name}"] = _file_case(name)
        cases[f"validate/{name}"] = _file_case(name, validate=True)
    cases.update({f"cli/{n}": c for n, c in CLI_CASES.items()})
    return launch_forked(cases, tmp_path_factory.mktemp("bad"))


@pytest.fixture(scope="module")
def fresh_results(tmp_path_factory):
    cases = {}
    for name in FRESH_SUBSET:
        cases[f"run/{name}"] = (_file_case(name), 0)
        cases[f"validate/{name}"] = (_file_case(name, validate=True), 0)
    return _pool(cases, tmp_path_factory.mktemp("bad_fresh"))


@pytest.fixture(scope="module")
def mpi_results(tmp_path_factory):
    return _pool({f"mpi/{name}": (_file_case(name), 2) for name in MPI_SUBSET}, tmp_path_factory.mktemp("bad_mpi"))


def test_corpus_is_complete():
    on_disk = sorted(os.path.basename(p) for p in glob.glob(os.path.join(BAD, "*.yaml")))
    assert on_disk == sorted(CORPUS)
    assert len(on_disk) >= 45
    assert set(FRESH_SUBSET) <= set(CORPUS) and set(MPI_SUBSET) <= set(CORPUS)


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_bad_input_file(serial_results, name):
    check(name, serial_results[f"run/{name}"], validate=False)


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_validate_refuses_bad_input_file(serial_results, name):
    """--validate refuses what a run refuses, with the same line."""
    check(name, serial_results[f"validate/{name}"], validate=True)
    if CORPUS[name] is not VALID:
        assert _same(serial_results[f"validate/{name}"]) == _same(serial_results[f"run/{name}"])


@pytest.mark.parametrize("name", sorted(CLI_CASES))
def test_bad_command_line(serial_results, name):
    check_refused(serial_results[f"cli/{name}"])


@pytest.mark.parametrize("mode", ["run", "validate"])
@pytest.mark.parametrize("name", FRESH_SUBSET)
def test_bad_input_file_fresh_process(fresh_results, serial_results, name, mode):
    """A fresh `python -m ddnn` says exactly what the forked run said."""
    fresh, forked = fresh_results[f"{mode}/{name}"], serial_results[f"{mode}/{name}"]
    check(name, fresh, validate=mode == "validate")
    assert fresh["rc"] == forked["rc"]
    if CORPUS[name] is not VALID:
        assert _same(fresh) == _same(forked)


@pytest.mark.mpi
@pytest.mark.parametrize("name", MPI_SUBSET)
def test_bad_input_under_mpiexec(mpi_results, name):
    """Every rank stops, only rank 0 prints."""
    result = mpi_results[f"mpi/{name}"]
    if CORPUS[name] is not VALID:
        result["bomb"] = False  # the CPU time of mpiexec includes two starts of ddnn
    check(name, result, validate=False)


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
    result = run_command(["mpiexec", "-n", "3", sys.executable, "-m", "ddnn", str(inp), "--out", str(cwd / "out")], cwd)
    result.update(
        prefix=f"{inp}: solver.npc.subdomains: ", names=["3 ranks"], bomb=False, leftovers=sorted(os.listdir(cwd))
    )
    check_refused(result)
    # the same file is valid for one rank
    result = run_command([sys.executable, "-m", "ddnn", str(inp), "--validate"], cwd)
    assert result["rc"] == 0, result["stderr"]


def test_validate(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    result = run_command([sys.executable, "-m", "ddnn", str(good), "--validate", "--set", "run.max_iter=3"], tmp_path)
    assert result["rc"] == 0, result["stderr"]
    assert result["stdout"].strip() == f"{good}: valid" and result["stderr"] == ""
    assert sorted(os.listdir(tmp_path)) == ["good.yaml"]  # validation writes nothing


if __name__ == "__main__":  # python -m tests.test_bad_inputs: the forking interpreter of launch_forked
    _serve()
