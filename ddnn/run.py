"""The run driver: build, loop, stop rules, progress, checkpoints, results.

The loop lives here, not in the solvers. Every decision that steers control
flow (stop, checkpoint, resample) is taken from values that are identical on
all ranks (reduced losses, counters of global evaluations, a reduced flag
for signals and wall time), so every rank takes the same branch.
"""

from __future__ import annotations

import datetime
import math
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import ddnn
from ddnn import config as cfg
from ddnn import registry
from ddnn.counters import Counters, Timers
from ddnn.errors import InputError
from ddnn.history import History
from ddnn.io import CHECKPOINT, RESULTS, read_checkpoint, write_checkpoint, write_results
from ddnn.parallel import Comm, select_device, set_threads
from ddnn.solvers.base import Reason, SolverContext, StepReport

__all__ = ["RunResult", "Run", "agree", "default_output_dir"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}
# Parts of the configuration a checkpoint must match to be resumed.
_RESUME_KEYS = ("problem", "model", "solver")


@dataclass
class RunResult:
    """What a finished run returns on every rank."""

    reason: Reason
    iterations: int
    loss: float
    metrics: dict[str, float]
    out_dir: str | None


def agree(comm: Comm, build: Callable[[], Any]) -> Any:
    """Collective. Run ``build`` on every rank; if it raised ``InputError`` anywhere, raise it everywhere."""
    error: str | None = None
    result = None
    try:
        result = build()
    except InputError as err:
        error = str(err)
    errors = comm.allgather_object(error) if comm.size > 1 else [error]
    first = next((e for e in errors if e), None)
    if first is not None:
        raise InputError(first)
    return result


def default_output_dir(input_path: str, config: cfg.Config, out: str | None) -> str:
    """``--out``, else ``output.dir``, else ``runs/<input stem>``."""
    if out:
        return out
    if config.output.dir:
        return config.output.dir
    stem = os.path.splitext(os.path.basename(input_path))[0]
    return os.path.join("runs", stem)


def _fmt_time(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--:--"
    return str(datetime.timedelta(seconds=int(seconds)))


def _tree_to(tree: Any, device: torch.device) -> Any:
    """Floating-point tensors of a state tree moved to ``device``."""
    if isinstance(tree, dict):
        return {k: _tree_to(v, device) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_tree_to(v, device) for v in tree)
    if isinstance(tree, torch.Tensor) and tree.is_floating_point():
        return tree.to(device)
    return tree


class _Signals:
    """SIGTERM / SIGUSR1 (a cluster's time limit) -> checkpoint and stop at the end of the iteration."""

    def __init__(self) -> None:
        self.received = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = True

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Run:
    """One training run on every rank.

    Parameters
    ----------
    config : the validated configuration
    comm : the job's communicator
    out_dir : where results and checkpoints go (created by rank 0 once everything is built)
    input_path : the input file (for messages)
    resume : a checkpoint to continue from
    """

    def __init__(
        self,
        config: cfg.Config,
        comm: Comm,
        out_dir: str | None,
        input_path: str = "<input>",
        resume: str | None = None,
        quiet: bool = False,
    ):
        self.config = config
        self.comm = comm
        self.out_dir = out_dir
        self.input_path = input_path
        self.resume_path = resume
        self.verbose = comm.rank == 0 and not quiet
        self.counters = Counters()
        self.timers = Timers()
        self.history = History()
        self.iteration = 0
        self.elapsed_before = 0.0
        self._metric_names: set[str] = set()
        self._final_metrics: dict[str, float] = {}
        agree(comm, self._build)
        self.resume_state = self._read_resume() if resume else None

    # -- construction ----------------------------------------------------
    def _build(self) -> None:
        """Collective. Device, threads, seeds, problem, model, solver; then the resume state."""
        run = self.config.run
        self.threads = set_threads(self.comm, run.threads)
        torch.set_flush_denormal(True)
        self.device = select_device(self.comm, run.device)
        self.dtype = DTYPES[run.dtype]
        torch.manual_seed(run.seed)  # identical initial network on every rank
        problem_entry = registry.lookup("problem", self.config.problem.name)
        model = registry.build("model", self.config.model, problem_entry.cls.input_dim, problem_entry.cls.output_dim)
        self.problem = problem_entry.cls(
            self.config.problem.options, model, device=self.device, dtype=self.dtype, seed=run.seed
        )
        generator = torch.Generator().manual_seed(run.seed + 7919 * self.comm.rank)
        self.context = SolverContext(self.problem, self.comm, self.counters, self.timers, generator)
        self.solver = self.context.build_solver(self.config.solver)
        self.objective = self.context.global_objective()
        self.solver.init(self.objective, self.problem.params.flat)

    def _read_resume(self) -> dict:
        """Collective. Rank 0 reads and checks the checkpoint; every rank gets it (or the same error)."""
        payload: Any = None
        if self.comm.rank == 0:
            try:
                attrs, state = read_checkpoint(self.resume_path)
                self._check_compatible(attrs)
                payload = state
            except InputError as err:
                payload = err
            except (OSError, ValueError) as err:
                payload = InputError(f"{self.resume_path}: cannot resume: {err}")
        payload = self.comm.bcast_object(payload)
        if isinstance(payload, InputError):
            raise payload
        return payload

    def _check_compatible(self, attrs: dict) -> None:
        import yaml

        where = f"{self.resume_path}"
        if int(attrs.get("world_size", -1)) != self.comm.size:
            raise InputError(
                f"{where}: checkpoint was written by {attrs.get('world_size')} ranks, this job has {self.comm.size}"
            )
        saved = yaml.safe_load(attrs.get("config", "")) or {}
        current = cfg.to_dict(self.config)
        for key in _RESUME_KEYS:
            if saved.get(key) != current.get(key):
                raise InputError(f"{where}: {key}: the input differs from the checkpoint's; cannot resume")
        for key in ("seed", "dtype"):
            if saved.get("run", {}).get(key) != current["run"][key]:
                raise InputError(f"{where}: run.{key}: the input differs from the checkpoint's; cannot resume")

    # -- state -----------------------------------------------------------
    def _rank_state(self) -> dict:
        state = {
            "torch_rng": torch.get_rng_state(),
            "counters": self.counters.as_dict(),
            "timers": self.timers.as_dict(),
            "comm": self.comm.stats(),
        }
        if self.context.generator is not None:
            state["solver_rng"] = self.context.generator.get_state()
        if torch.cuda.is_available() and self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def _state(self, elapsed: float) -> dict | None:
        """Collective. The checkpoint tree (on rank 0; ``None`` elsewhere)."""
        ranks = self.comm.allgather_object(self._rank_state())
        if self.comm.rank != 0:
            return None
        return {
            "iteration": self.iteration,
            "elapsed": elapsed,
            "params": self.problem.params.flat.detach().cpu().clone(),
            "solver": self.solver.state_dict(),
            "problem": self.problem.state_dict(),
            "history": self.history.state_dict(),
            "ranks": ranks,
        }

    def _restore(self, state: dict) -> None:
        rank = state["ranks"][self.comm.rank]
        self.iteration = int(state["iteration"])
        self.elapsed_before = float(state["elapsed"])
        self.problem.params.flat.copy_(state["params"].to(self.device))
        self.problem.load_state_dict(_tree_to(state["problem"], self.device))
        samples = self.problem.resample(self.iteration) if self._resample_due(self.iteration) else None
        if samples is not None:
            self._set_samples(samples)
        self.solver.init(self.objective, self.problem.params.flat)
        self.solver.load_state_dict(_tree_to(state["solver"], self.device))
        self.history.load_state_dict(state["history"])
        self.counters.load(rank["counters"])
        self.timers.load(rank["timers"])
        torch.set_rng_state(rank["torch_rng"])
        if "solver_rng" in rank and self.context.generator is not None:
            self.context.generator.set_state(rank["solver_rng"])
        if "cuda_rng" in rank and self.device.type == "cuda":
            torch.cuda.set_rng_state(rank["cuda_rng"], self.device)
        self.comm.bytes_communicated = int(rank["comm"]["bytes_communicated"])
        self.comm.seconds = float(rank["comm"]["communication_time"])

    # -- files -----------------------------------------------------------
    def _attrs(self) -> dict:
        return {
            "config": cfg.to_yaml(self.config),
            "ddnn_version": ddnn.__version__,
            "torch_version": torch.__version__,
            "world_size": self.comm.size,
            "device": str(self.device),
            "host": socket.gethostname(),
            "started": self.started,
            "problem": self.config.problem.name,
            "solver": self.config.solver.name,
            "input": self.input_path,
            "metrics": sorted(self._metric_names),
            "higher_is_better": sorted(type(self.problem).higher_is_better),
        }

    def _write(self, elapsed: float, reason: Reason | None) -> None:
        """Collective. Checkpoint (and results) written by rank 0."""
        state = self._state(elapsed)
        if self.comm.rank != 0 or self.out_dir is None:
            return
        with self.timers.phase("io"):
            attrs = self._attrs()
            attrs["iteration"] = self.iteration
            if reason is not None:
                attrs.update(finished=_now(), stop_reason=reason.name, stop_code=int(reason))
            else:
                attrs.update(finished="", stop_reason="RUNNING", stop_code=0)
            write_checkpoint(os.path.join(self.out_dir, CHECKPOINT), attrs, state)
            params = self.problem.params.flat.detach().cpu().numpy()
            solution = self.problem.solution() if reason is not None else None
            history = self.history.arrays()
            for name, value in self._final_metrics.items():
                history.setdefault(name, np.full(self.history.rows, np.nan))[-1] = value
            write_results(os.path.join(self.out_dir, RESULTS), attrs, history, params, solution)

    # -- the loop --------------------------------------------------------
    def _resample_due(self, iteration: int) -> bool:
        every = getattr(self.problem.options, "resample_every", 0) or 0
        return every > 0 and iteration > 0 and iteration % every == 0

    def _set_samples(self, samples: Any) -> None:
        self.objective.samples = samples.shard(self.comm.rank, self.comm.size)
        hook = getattr(self.solver, "samples_changed", None)
        if hook is not None:
            hook()

    def _metrics(self) -> dict[str, float]:
        """Collective. Metrics computed on rank 0 and broadcast, so stop decisions agree."""
        values = None
        if self.comm.rank == 0:
            with self.timers.phase("metrics"):
                values = self.problem.metrics()
        values = self.comm.bcast_object(values)
        self._metric_names.update(values)
        return values

    def _record(self, report: StepReport, metrics: dict[str, float], elapsed: float) -> None:
        row: dict[str, float | None] = {
            "iteration": self.iteration,
            "loss": report.loss,
            "grad_evals": self.counters["grad_evals"],
            "wall_time": elapsed,
            "grad_norm": report.grad_norm,
            "step_norm": report.step_norm,
            "step_size": report.step_size,
            "radius": report.radius,
            "accepted": float(report.accepted),
        }
        row.update({f"loss_{k}": v for k, v in report.terms.items()})
        row.update(metrics)
        row.update({k: v for k, v in self.counters.as_dict().items() if k != "grad_evals"})
        # the seed's cost measure: global gradients plus the local ones that run one after another
        row["effective_grad_evals"] = self.counters["grad_evals"] + self.counters["effective_local_grad_evals"]
        row.update({f"time_{k}": v for k, v in self.timers.as_dict().items()})
        row["bytes_communicated"] = self.comm.bytes_communicated
        self.history.append(row)

    def _stop_reason(self, report: StepReport | None, metrics: dict[str, float]) -> Reason:
        run = self.config.run
        if report is not None:
            if report.reason != Reason.RUNNING:
                return report.reason
            if not math.isfinite(report.loss):
                return Reason.DIVERGED_NAN
            if run.target_loss is not None and report.loss <= run.target_loss:
                return Reason.TARGET_LOSS
        if run.target_metric is not None and run.target_value is not None and run.target_metric in metrics:
            value = metrics[run.target_metric]
            higher = run.target_metric in type(self.problem).higher_is_better
            if (value >= run.target_value) if higher else (value <= run.target_value):
                return Reason.TARGET_METRIC
        if self.iteration >= run.max_iter:
            return Reason.MAX_ITER
        if run.max_grad_evals is not None and self.counters["grad_evals"] >= run.max_grad_evals:
            return Reason.MAX_GRAD_EVALS
        return Reason.RUNNING

    def _progress(self, report: StepReport, metrics: dict[str, float], elapsed: float) -> None:
        run = self.config.run
        fractions = [self.iteration / run.max_iter if run.max_iter else 0.0]
        if run.max_grad_evals:
            fractions.append(self.counters["grad_evals"] / run.max_grad_evals)
        if run.wall_time:
            fractions.append(elapsed / run.wall_time)
        done = max(fractions)
        eta = elapsed * (1 - done) / done if done > 0 else math.inf
        parts = [f"it {self.iteration:6d}", f"loss {report.loss:.4e}"]
        parts += [f"{k} {v:.4e}" for k, v in metrics.items()]
        if report.radius is not None:
            parts.append(f"radius {report.radius:.2e}")
        elif report.step_size is not None:
            parts.append(f"step {report.step_size:.2e}")
        parts += [f"grad_evals {int(self.counters['grad_evals'])}", f"elapsed {_fmt_time(elapsed)}"]
        parts.append(f"eta {_fmt_time(eta)}")
        print("  ".join(parts), flush=True)

    def execute(self) -> RunResult:
        """Collective. Train until a stop rule fires; write results and the final checkpoint."""
        run = self.config.run
        self.started = _now()
        if self.resume_state is not None:
            self._restore(self.resume_state)
            self.resume_state = None
        if self.comm.rank == 0 and self.out_dir is not None:
            os.makedirs(self.out_dir, exist_ok=True)
        if self.verbose:
            self._header()
        start = time.perf_counter() - self.elapsed_before
        metrics: dict[str, float] = {}
        report: StepReport | None = None
        reason = self._stop_reason(None, metrics)
        with _Signals() as signals:
            while reason == Reason.RUNNING:
                report = self.solver.step()
                self.iteration += 1
                _inject_fault(self.comm.rank, self.iteration)
                self.problem.params.flat.copy_(self.solver.theta)
                if self.iteration % run.metrics_every == 0:
                    metrics = self._metrics()
                elapsed = time.perf_counter() - start
                self._record(report, metrics if self.iteration % run.metrics_every == 0 else {}, elapsed)
                if self.verbose and run.print_every and self.iteration % run.print_every == 0:
                    self._progress(report, metrics, elapsed)
                reason = self._stop_reason(report, metrics)
                flags = torch.tensor(
                    [float(signals.received), float(run.wall_time is not None and elapsed >= run.wall_time)],
                    dtype=torch.float64,
                )
                self.comm.allreduce(flags, "max")
                if reason == Reason.RUNNING and flags[1] > 0:
                    reason = Reason.WALL_TIME
                if flags[0] > 0:
                    reason = Reason.SIGNAL
                if reason == Reason.RUNNING and run.checkpoint_every and self.iteration % run.checkpoint_every == 0:
                    self._write(elapsed, None)
                if reason == Reason.RUNNING and self._resample_due(self.iteration):
                    samples = self.problem.resample(self.iteration)
                    if samples is not None:
                        self._set_samples(samples)
        elapsed = time.perf_counter() - start
        if self.iteration % run.metrics_every != 0 and self.history.rows:
            # the final iterate's metrics, also when the cadence skipped the last iteration; they go to
            # the results file only, so that the checkpoint's history stays that of an uninterrupted run
            metrics = self._final_metrics = self._metrics()
        # A signal interrupts the run: the checkpoint records it as unfinished so that it can be resumed.
        self._write(elapsed, None if reason == Reason.SIGNAL else reason)
        loss = report.loss if report is not None else self.history.last("loss")
        if self.verbose:
            self._summary(reason, loss, metrics, elapsed)
        return RunResult(reason, self.iteration, loss, metrics, self.out_dir)

    def _header(self) -> None:
        where = f"output {self.out_dir}" if self.out_dir else "no output"
        resumed = f", resumed at iteration {self.iteration}" if self.iteration else ""
        print(
            f"ddnn {ddnn.__version__}: problem {self.config.problem.name} ({self.problem.params.numel} parameters), "
            f"solver {self.config.solver.name}, {self.comm.size} rank(s) on {self.device} "
            f"with {self.threads} thread(s) each, {self.config.run.dtype}, {where}{resumed}",
            flush=True,
        )

    def _summary(self, reason: Reason, loss: float, metrics: dict[str, float], elapsed: float) -> None:
        shown = ", ".join(f"{k} {v:.4e}" for k, v in metrics.items())
        print(
            f"stopped: {reason.name} after {self.iteration} iterations, "
            f"{int(self.counters['grad_evals'])} gradient evaluations, {_fmt_time(elapsed)}; "
            f"loss {loss:.4e}" + (f", {shown}" if shown else ""),
            flush=True,
        )
        if self.out_dir:
            note = " (interrupted: resume with --resume)" if reason == Reason.SIGNAL else ""
            print(f"results: {os.path.join(self.out_dir, RESULTS)}{note}", flush=True)


def _inject_fault(rank: int, iteration: int) -> None:
    """Fault-injection hook for tests: ``DDNN_FAIL_RANK=r DDNN_FAIL_ITER=k`` raise on rank r at iteration k."""
    if os.environ.get("DDNN_FAIL_RANK") is None:
        return
    if rank == int(os.environ["DDNN_FAIL_RANK"]) and iteration == int(os.environ.get("DDNN_FAIL_ITER", "1")):
        raise RuntimeError(f"injected failure on rank {rank} at iteration {iteration} (DDNN_FAIL_RANK)")


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")
