"""The post-processing tools (tools/*.py) on results of short real runs.

A session fixture trains a tiny regression problem four times (Adam with two
seeds, L-BFGS, Adam on two MPI ranks) with ``python -m ddnn``; every tool is
run as a script and its figures and tables are checked against the numbers
read from the files with h5py.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, "tools")
TIMEOUT = 120

ADAM = """\
problem: {name: regression, n_samples: 200}
solver: {name: adam, lr: 0.01}
run: {max_iter: 20, print_every: 0, threads: 1}
"""
LBFGS = """\
problem: {name: regression, n_samples: 200}
solver: {name: lbfgs}
run: {max_iter: 20, print_every: 0, threads: 1}
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DDNN_SERIAL", None)
    env["MPLBACKEND"] = "Agg"
    return env


def tool(name: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``python tools/NAME.py ARGS`` from the repository root."""
    return subprocess.run(
        [sys.executable, os.path.join("tools", f"{name}.py"), *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=_env(),
    )


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode == 2, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    message = result.stderr.strip()
    assert message and "\n" not in message, f"not one line: {result.stderr!r}"
    assert "Traceback" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> dict[str, str]:
    """Four short real runs (run directories by name) and a results file with a /solution group."""
    tmp = tmp_path_factory.mktemp("tools")
    (tmp / "adam.yaml").write_text(ADAM)
    (tmp / "lbfgs.yaml").write_text(LBFGS)
    ddnn = [sys.executable, "-m", "ddnn"]
    commands = {
        "adam_s0": [*ddnn, tmp / "adam.yaml"],
        "adam_s1": [*ddnn, tmp / "adam.yaml", "--set", "run.seed=1"],
        "lbfgs": [*ddnn, tmp / "lbfgs.yaml"],
        "adam_np2": ["mpiexec", "-n", "2", *ddnn, tmp / "adam.yaml"],
    }
    procs = {
        name: subprocess.Popen(
            [*map(str, cmd), "--out", str(tmp / name), "--quiet"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for name, cmd in commands.items()
    }
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, f"{name}: exit {proc.returncode}\n{out}\n{err}"
    paths = {name: str(tmp / name) for name in commands}

    # A results file with the /solution layout the driver writes for PINNs (see tools/plot_solution.py).
    solution = tmp / "pinn"
    solution.mkdir()
    shutil.copy(tmp / "adam_s0" / "results.h5", solution / "results.h5")
    x = np.linspace(-1, 1, 33)
    t = np.linspace(0, 1, 17)
    xx, tt = np.meshgrid(x, t, indexing="ij")
    reference = -np.sin(np.pi * xx) * np.exp(-tt)
    with h5py.File(solution / "results.h5", "a") as f:
        group = f.create_group("solution")
        group["inputs"] = np.stack([xx.ravel(), tt.ravel()], axis=1)
        group["prediction"] = (reference + 0.01 * tt * np.cos(xx)).ravel()
        group["reference"] = reference.ravel()
        group.attrs["grid_shape"] = np.array([33, 17])
        group.attrs["input_names"] = ["x", "t"]
    paths["pinn"] = str(solution)

    (tmp / "not_hdf5.h5").write_text("not an HDF5 file\n")
    with h5py.File(tmp / "foreign.h5", "w") as f:
        f["data"] = np.zeros(3)
    paths["not_hdf5"] = str(tmp / "not_hdf5.h5")
    paths["foreign"] = str(tmp / "foreign.h5")
    paths["tmp"] = str(tmp)
    return paths


def history(run_dir: str) -> tuple[dict, dict[str, np.ndarray]]:
    with h5py.File(os.path.join(run_dir, "results.h5"), "r") as f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        return attrs, {k: f["history"][k][()] for k in f["history"]}


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def is_png(path: str) -> bool:
    with open(path, "rb") as fh:
        return fh.read(8) == b"\x89PNG\r\n\x1a\n" and os.path.getsize(path) > 1000


def is_pdf(path: str) -> bool:
    with open(path, "rb") as fh:
        return fh.read(5) == b"%PDF-" and os.path.getsize(path) > 1000


# ---------------------------------------------------------------------------
# plot_history.py


def test_plot_history_png_and_pdf(runs, tmp_path):
    names = ["adam_s0", "adam_s1", "lbfgs", "adam_np2"]
    png = tmp_path / "h.png"
    pdf = tmp_path / "h.pdf"
    ok(tool("plot_history", *[runs[n] for n in names], "-o", png))
    ok(tool("plot_history", runs["lbfgs"] + "/results.h5", "--x", "grad_evals", "--y", "loss", "grad_norm", "-o", pdf))
    assert is_png(png)
    assert is_pdf(pdf)


def test_plot_history_group_seeds(runs, tmp_path):
    out = tmp_path / "seeds.png"
    args = [runs["adam_s0"], runs["adam_s1"], runs["adam_np2"], runs["lbfgs"]]
    ok(tool("plot_history", *args, "--group-seeds", "--x", "wall_time", "--log", "both", "-o", out))
    assert is_png(out)


def test_plot_history_missing_column_lists_available(runs):
    message = one_line_error(tool("plot_history", runs["adam_s0"], "--y", "nope"), "'nope'", "available:")
    for column in ("loss", "grad_evals", "wall_time", "rel_l2_error"):
        assert column in message
    one_line_error(tool("plot_history", runs["adam_s0"], "--x", "local_grad_evals"), "local_grad_evals")


def test_labels_and_seed_groups(runs):
    sys.path.insert(0, TOOLS)
    try:
        import _results
    finally:
        sys.path.remove(TOOLS)
    loaded = [_results.load_run(runs[n]) for n in ("adam_s0", "adam_s1", "lbfgs", "adam_np2")]
    assert _results.labels(loaded) == [
        "adam seed=0 ranks=1",
        "adam seed=1 ranks=1",
        "lbfgs seed=0 ranks=1",
        "adam seed=0 ranks=2",
    ]
    assert _results.group_seeds(loaded) == [[0, 1], [2], [3]]
    assert _results.metric_names(loaded[0]) == ["rel_l2_error"]


# ---------------------------------------------------------------------------
# compare.py


def _first(values: np.ndarray, target: float) -> int | None:
    hits = np.flatnonzero(np.isfinite(values) & (values <= target))
    return int(hits[0]) if hits.size else None


def test_compare_csv_matches_files(runs):
    names = ["adam_s0", "adam_s1", "lbfgs", "adam_np2"]
    rows = read_csv(ok(tool("compare", *[runs[n] for n in names], "--format", "csv")))
    assert [r["run"] for r in rows] == names
    _, lbfgs = history(runs["lbfgs"])
    reference = lbfgs["rel_l2_error"][-1]  # the final error of L-BFGS
    reference_time = lbfgs["wall_time"][_first(lbfgs["rel_l2_error"], reference)]
    for name, row in zip(names, rows):
        attrs, h = history(runs[name])
        assert int(row["ranks"]) == int(attrs["world_size"])
        assert row["method"].split()[0] == attrs["solver"]
        assert float(row["final_rel_l2_error"]) == h["rel_l2_error"][-1]
        index = _first(h["rel_l2_error"], reference)
        assert row["reached"] == ("yes" if index is not None else "no")
        if index is None:
            assert row["time_s"] == row["iterations"] == row["grad_evals"] == row["speedup"] == ""
            continue
        assert float(row["time_s"]) == h["wall_time"][index]
        assert float(row["iterations"]) == h["iteration"][index]
        assert float(row["grad_evals"]) == h["grad_evals"][index]
        assert float(row["speedup"]) == pytest.approx(reference_time / h["wall_time"][index], rel=1e-12)
    assert rows[2]["reached"] == "yes"
    assert float(rows[2]["speedup"]) == 1.0


def test_compare_target_and_formats(runs):
    _, h = history(runs["adam_s0"])
    target = float(h["rel_l2_error"][9])  # reached at iteration 10 at the latest
    args = [runs["adam_s0"], runs["adam_np2"], "--target", repr(target)]
    rows = read_csv(ok(tool("compare", *args, "--format", "csv")))
    index = _first(h["rel_l2_error"], target)
    assert index is not None and index <= 9
    assert float(rows[0]["iterations"]) == h["iteration"][index]
    assert rows[0]["speedup"] == ""  # no L-BFGS run: no reference time
    markdown = ok(tool("compare", *args, "--format", "markdown"))
    assert "| run | method | ranks | reached |" in markdown
    text = ok(tool("compare", *args))
    assert text.startswith("reference: rel_l2_error <=")
    assert "adam_np2" in text


def test_compare_errors(runs):
    one_line_error(tool("compare", runs["adam_s0"], runs["adam_s1"]), "no reference", "--target")
    one_line_error(tool("compare", runs["adam_s0"], "--metric", "accuracy", "--target", "0.9"), "'accuracy'", "loss")
    one_line_error(tool("compare", runs["adam_s0"], "--target", "abc"), "--target")


# ---------------------------------------------------------------------------
# scaling.py


def test_scaling_table_and_plot(runs, tmp_path):
    png = tmp_path / "scaling.png"
    pdf = tmp_path / "scaling.pdf"
    args = [runs["adam_s0"], runs["adam_s1"], runs["adam_np2"]]
    rows = read_csv(ok(tool("scaling", *args, "--format", "csv", "-o", png)))
    ok(tool("scaling", *args, "-o", pdf))
    assert is_png(png)
    assert is_pdf(pdf)

    def per_iteration(name: str) -> float:
        _, h = history(runs[name])
        return h["wall_time"][-1] / h["iteration"][-1]

    t1 = (per_iteration("adam_s0") + per_iteration("adam_s1")) / 2
    t2 = per_iteration("adam_np2")
    assert [(r["method"], r["ranks"], r["runs"]) for r in rows] == [("adam", "1", "2/2"), ("adam", "2", "1/1")]
    assert float(rows[0]["time_per_iteration_s"]) == pytest.approx(t1, rel=1e-12)
    assert float(rows[1]["time_per_iteration_s"]) == pytest.approx(t2, rel=1e-12)
    assert float(rows[1]["speedup"]) == pytest.approx(t1 / t2, rel=1e-12)
    assert float(rows[1]["efficiency"]) == pytest.approx(t1 / t2 / 2, rel=1e-12)


def test_scaling_time_to_target(runs):
    _, h = history(runs["adam_np2"])
    target = float(h["rel_l2_error"][4])
    rows = read_csv(ok(tool("scaling", runs["adam_np2"], "--target", repr(target), "--format", "csv")))
    index = _first(h["rel_l2_error"], target)
    assert float(rows[0]["time_to_target_s"]) == h["wall_time"][index]
    one_line_error(tool("scaling", runs["adam_np2"], "--target", "0.5", "--metric", "nope"), "'nope'")


# ---------------------------------------------------------------------------
# plot_solution.py


def test_plot_solution(runs, tmp_path):
    png = tmp_path / "u.png"
    pdf = tmp_path / "u.pdf"
    ok(tool("plot_solution", runs["pinn"], "-o", png))
    ok(tool("plot_solution", runs["pinn"] + "/results.h5", "--at", "0.1", "0.9", "-o", pdf))
    assert is_png(png)
    assert is_pdf(pdf)


def test_plot_solution_without_solution_group(runs, tmp_path):
    one_line_error(tool("plot_solution", runs["adam_s0"], "-o", tmp_path / "u.png"), "this run has no /solution group")
    one_line_error(tool("plot_solution", runs["pinn"], "--slice-along", "y"), "no such input", "x, t")


# ---------------------------------------------------------------------------
# summary.py


def test_summary_of_results_and_checkpoint(runs):
    attrs, h = history(runs["adam_np2"])
    text = ok(tool("summary", runs["adam_np2"]))
    assert "ddnn results file" in text
    assert "solver adam, 2 rank(s)" in text
    assert f"stop: {attrs['stop_reason']}" in text and "20 iterations" in text
    for column in h:
        assert f"  {column} " in text
    assert "    name: adam" in text  # the configuration
    assert "/history/" in text and "/params" in text
    checkpoint = ok(tool("summary", os.path.join(runs["adam_np2"], "checkpoint.h5"), "--depth", "3"))
    assert "ddnn checkpoint file" in checkpoint
    assert "/state/params" in checkpoint and "/state/ranks/1/" in checkpoint


# ---------------------------------------------------------------------------
# errors shared by every tool

ALL_TOOLS = ["plot_history", "compare", "scaling", "plot_solution", "summary"]


@pytest.mark.parametrize("name", ALL_TOOLS)
def test_missing_file(name, runs):
    missing = os.path.join(runs["tmp"], "nowhere", "results.h5")
    one_line_error(tool(name, missing), "no such file or directory")


def test_directory_without_results(runs):
    one_line_error(tool("plot_history", runs["tmp"]), "no results.h5 or checkpoint.h5")


@pytest.mark.parametrize("name", ALL_TOOLS)
def test_not_our_file(name, runs):
    one_line_error(tool(name, runs["not_hdf5"]), "not an HDF5 file")
    one_line_error(tool(name, runs["foreign"]), "not a ddnn", "no 'format' attribute")


def test_bad_output_extension(runs, tmp_path):
    one_line_error(tool("plot_history", runs["adam_s0"], "-o", tmp_path / "h.svg"), ".png or .pdf")


def test_no_tool_shadows_a_standard_library_module():
    """``python tools/x.py`` puts tools/ first on sys.path: a tool named like a stdlib module breaks numpy."""
    names = {os.path.splitext(f)[0] for f in os.listdir(TOOLS) if f.endswith(".py")}
    assert not names & set(sys.stdlib_module_names)
    proc = subprocess.run([sys.executable, "-c", "import numpy, h5py"], cwd=TOOLS, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------------------
# multilevel_table.py


def _fake_run(directory, solver: dict, history: dict, reason: str = "TARGET_METRIC") -> str:
    """A results file of the layout the driver writes (the table reads config, stop reason and history)."""
    import yaml

    from ddnn.io import write_results

    os.makedirs(directory)
    config = yaml.safe_dump({"problem": {"name": "logistic"}, "solver": solver})
    attrs = {"config": config, "stop_reason": reason, "solver": solver["name"], "problem": "logistic", "world_size": 1}
    columns = {k: np.asarray(v, dtype=np.float64) for k, v in history.items()}
    write_results(os.path.join(directory, "results.h5"), attrs, columns, np.zeros(3))
    return str(directory)


def test_multilevel_table_in_the_seeds_layout(tmp_path):
    tr = {"name": "trust_region", "hessian": "exact"}
    astrom = {"name": "multilevel", "control": "trust_region", "levels": [{"fraction": 0.01, "solver": tr}]}
    ssn = {"name": "multilevel", "control": "line_search", "levels": [{"fraction": 0.25, "solver": {"name": "newton"}}]}
    svrg = {"name": "multilevel", "levels": [{"fraction": 0.02, "resample": "step", "solver": {"name": "sgd"}}]}
    history = {
        "grad_work": [1, 2, 3.5],
        "hessian_work": [0.5, 1, 1.25],
        "cg_iterations": [10, 20, 30],
        "cg_work": [4, 9, 12.5],
        "loss": [3, 2, 1],
    }
    runs = [
        _fake_run(tmp_path / "tr", tr, history),
        _fake_run(tmp_path / "astrom", astrom, history),
        _fake_run(tmp_path / "ssn", ssn, history, reason="MAX_ITER"),
        _fake_run(tmp_path / "svrg", svrg, {"grad_work": [10, 20], "loss": [2, 1]}),
    ]
    text = ok(tool("multilevel_table", *runs, "--format", "csv"))
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["method", "TR", "ASTROM 1%", "SSN 25%*", "SVRG"]
    table = {row[0]: row[1:] for row in rows[1:]}
    assert table["iterations"] == ["3", "3", "3", "2"]
    assert table["∇L evals"] == ["3.5", "3.5", "3.5", "20"]
    assert table["CG iterations"] == ["30", "30", "30", "0"]
    assert table["CG work"] == ["12.5", "12.5", "12.5", "0"]
    one_line_error(tool("multilevel_table", *runs, "--label", "only-one"), "labels")
