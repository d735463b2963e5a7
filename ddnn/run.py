"""The run driver: build, loop, stop rules, progress, checkpoints, results.

The loop lives here, not in the solvers. One iteration is one solver step
on one batch of the sampler (:mod:`ddnn.sampler`); epochs are counted by the
sampler. Every decision that steers control flow (stop, checkpoint, next
batch) is taken from values that are identical on all ranks (reduced
losses and metrics, counters of global evaluations, the sampler's state,
one reduced flag vector for signals, wall time and a non-finite iterate),
so every rank takes the same branch.

A run stops for one of its own reasons (:class:`StopReason`) or because the
solver reported a terminal :class:`~ddnn.solvers.base.Status` (converged or
failed; a non-finite loss or iterate is ``DIVERGED_NAN``); ``stop_reason``
and ``stop_code`` in the files are the name and code of whichever it was
(negative codes: failures).
"""

from __future__ import annotations

import datetime
import enum
import math
import os
import signal
import socket
import sys
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
from ddnn.sampler import Sampler
from ddnn.solvers.base import SolverContext, Status, StepReport
from ddnn.solvers.objective import Objective

__all__ = ["StopReason", "RunResult", "Run", "agree", "default_output_dir"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}
# Parts of the configuration a checkpoint must match to be resumed.
_RESUME_KEYS = ("problem", "model", "solver", "data")


class StopReason(enum.IntEnum):
    """Why a run stopped, when the solver did not decide it (see the module docstring)."""

    RUNNING = 0
    MAX_ITER = 1
    MAX_GRAD_EVALS = 2
    TARGET_LOSS = 3
    TARGET_METRIC = 4
    WALL_TIME = 5
    SIGNAL = 6
    MAX_EPOCHS = 9


@dataclass
class RunResult:
    """What a finished run returns on every rank."""

    reason: StopReason | Status
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
    quiet : no progress output
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
        self._reached = {"loss": False, "metric": False}  # targets reached so far (run.stop_when: all)
        agree(comm, self._build)
        self.resume_state = self._read_resume() if resume else None

    # -- construction ----------------------------------------------------
    def _build(self) -> None:
        """Collective. Device, threads, seeds, problem, model, sampler, objective, solver."""
        run = self.config.run
        self.threads = set_threads(self.comm, run.threads)
        torch.set_flush_denormal(True)
        self.device = select_device(self.comm, run.device)
        self.dtype = DTYPES[run.dtype]
        torch.manual_seed(run.seed)  # identical initial network on every rank
        problem_entry = registry.lookup("problem", self.config.problem.name)
        try:
            input_shape, output_dim = problem_entry.cls.data_shapes(self.config.problem.options)
            model = registry.build("model", self.config.model, input_shape, output_dim)
            self.problem = problem_entry.cls(
                self.config.problem.options, model, device=self.device, dtype=self.dtype, seed=run.seed
            )
            self.sampler = Sampler.from_options(self.problem, self.config.data, run.seed)
        except (MemoryError, torch.OutOfMemoryError, RuntimeError) as err:
            # torch reports a failed CPU allocation as a RuntimeError ("... can't allocate memory ...")
            if isinstance(err, RuntimeError) and "allocate" not in str(err):
                raise
            reason = _one_line(err)
            raise InputError(f"{self.input_path}: problem, model: not enough memory to build them ({reason})") from None
        generator = torch.Generator().manual_seed(run.seed + 7919 * self.comm.rank)
        self.context = SolverContext(self.comm, self.counters, self.timers, generator)
        self.objective = Objective(self.problem, self.sampler, self.comm, self.counters, "grad_evals", self.timers)
        self.solver = self.context.build_solver(self.config.solver)
        self.solver.init(self.objective, self.problem.params.flat)

    def _read_resume(self) -> dict:
        """Collective. Rank 0 reads and checks the checkpoint; every rank gets the shared state and its own."""
        payload: Any = None
        if self.comm.rank == 0:
            try:
                attrs, state, used = read_checkpoint(self.resume_path)
                self._check_compatible(attrs)
                if used != self.resume_path:
                    sys.stderr.write(f"ddnn: warning: {self.resume_path} is unreadable; resuming from {used}\n")
                payload = state
            except InputError as err:
                payload = err
            except (OSError, ValueError) as err:
                payload = InputError(f"{self.resume_path}: cannot resume: {_one_line(err)}")
        failed = payload if isinstance(payload, InputError) else None
        failed = self.comm.bcast_object(failed)
        if failed is not None:
            raise failed
        ranks = payload.pop("ranks") if self.comm.rank == 0 else None
        shared = self.comm.bcast_object(payload)
        shared["rank"] = self.comm.scatter_object(ranks)
        return shared

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
            if saved.get(key, current.get(key)) != current.get(key):
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
            "solver": self.solver.rank_state_dict(),
        }
        if self.context.generator is not None:
            state["solver_rng"] = self.context.generator.get_state()
        if torch.cuda.is_available() and self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def _state(self, elapsed: float) -> dict | None:
        """Collective. The checkpoint tree (on rank 0; ``None`` elsewhere)."""
        ranks = self.comm.gather_object(self._rank_state())
        if self.comm.rank != 0:
            return None
        return {
            "iteration": self.iteration,
            "elapsed": elapsed,
            "params": self.problem.params.flat.detach().cpu().clone(),
            "solver": self.solver.state_dict(),
            "sampler": self.sampler.state_dict(),
            "problem": self.problem.state_dict(),
            "history": self.history.state_dict(),
            "ranks": ranks,
        }

    def _restore(self, state: dict) -> None:
        """Continue where the checkpoint left off: the state after its iteration, then the next batch."""
        rank = state["rank"]
        self.iteration = int(state["iteration"])
        self.elapsed_before = float(state["elapsed"])
        self.problem.params.flat.copy_(state["params"].to(self.device))
        self.problem.load_state_dict(_tree_to(state["problem"], self.device))
        self.sampler.load_state_dict(state["sampler"])
        self.solver.load_state_dict(_tree_to(state["solver"], self.device))
        self.solver.load_rank_state_dict(_tree_to(rank.get("solver", {}), self.device))
        self.history.load_state_dict(state["history"])
        self._targets_from_history()
        self.counters.load(rank["counters"])
        self.timers.load(rank["timers"])
        torch.set_rng_state(rank["torch_rng"])
        if "solver_rng" in rank and self.context.generator is not None:
            self.context.generator.set_state(rank["solver_rng"])
        if "cuda_rng" in rank and self.device.type == "cuda":
            torch.cuda.set_rng_state(rank["cuda_rng"], self.device)
        self.comm.bytes_communicated = int(rank["comm"]["bytes_communicated"])
        self.comm.seconds = float(rank["comm"]["communication_time"])
        if self.iteration:
            self.sampler.advance()  # what the loop does after the checkpointed iteration

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

    def _prepare_output(self) -> None:
        """Collective. Rank 0 creates the output directory; one clear error on every rank when it cannot."""
        error = None
        if self.comm.rank == 0 and self.out_dir is not None:
            if os.path.exists(self.out_dir) and not os.path.isdir(self.out_dir):
                error = f"{self.out_dir}: the output directory is a file (--out or output.dir)"
            else:
                try:
                    os.makedirs(self.out_dir, exist_ok=True)
                    if not os.access(self.out_dir, os.W_OK):
                        error = f"{self.out_dir}: the output directory is not writable"
                except OSError as err:
                    error = f"{self.out_dir}: cannot create the output directory: {err.strerror or err}"
        error = self.comm.bcast_object(error)
        if error:
            raise InputError(error)

    def _write(self, reason: StopReason | Status | None, state: dict | None) -> None:
        """Collective. Rank 0 writes the checkpoint (``state``, from :meth:`_state`; none when ``None``) and results.

        A failed write ends every rank with one line.
        """
        error = None
        if self.comm.rank == 0 and self.out_dir is not None:
            with self.timers.phase("io"):
                try:
                    self._write_files(state, reason)
                except OSError as err:
                    error = f"{self.out_dir}: cannot write results ({err.strerror or _one_line(err)}); stopped"
        error = self.comm.bcast_object(error)
        if error:
            raise InputError(error)

    def _write_files(self, state: dict | None, reason: StopReason | Status | None) -> None:
        attrs = self._attrs()
        attrs["iteration"] = self.iteration
        if reason is not None:
            attrs.update(finished=_now(), stop_reason=reason.name, stop_code=int(reason))
        else:
            attrs.update(finished="", stop_reason="RUNNING", stop_code=0)
        if state is not None:
            write_checkpoint(os.path.join(self.out_dir, CHECKPOINT), attrs, state)
        params = self.problem.params.flat.detach().cpu().numpy()
        solution = self.problem.solution() if reason is not None else None
        history = self.history.arrays()
        for name, value in self._final_metrics.items():
            history.setdefault(name, np.full(self.history.rows, np.nan))[-1] = value
        write_results(os.path.join(self.out_dir, RESULTS), attrs, history, params, solution)

    # -- the loop --------------------------------------------------------
    def _metrics(self) -> dict[str, float]:
        """Collective. The metrics on the evaluation set: each rank its share, the partial sums reduced."""
        model = self.problem.model
        with self.timers.phase("metrics"):
            model.eval()
            try:
                parts = self.problem.metric_parts(self.comm.rank, self.comm.size)
            finally:
                model.train()
            names = sorted(parts)
            sums = torch.tensor([parts[k] for k in names], dtype=torch.float64)
            if self.comm.size > 1:
                self.comm.allreduce(sums)
            values = self.problem.metrics_from(dict(zip(names, sums.tolist())))
        self._metric_names.update(values)
        return values

    def _record(self, report: StepReport, metrics: dict[str, float], elapsed: float) -> None:
        row: dict[str, float | None] = {
            "iteration": self.iteration,
            "epoch": self.sampler.epochs,
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
        # the seed's cost measure: global gradients plus the local ones that run one after another,
        # counted in evaluations and in units of full-data gradients (work)
        row["effective_grad_evals"] = self.counters["grad_evals"] + self.counters["effective_local_grad_evals"]
        row["effective_grad_work"] = self.counters["grad_work"] + self.counters["effective_local_grad_work"]
        row.update({f"time_{k}": v for k, v in self.timers.as_dict().items()})
        row["bytes_communicated"] = self.comm.bytes_communicated
        self.history.append(row)

    def _metric_reached(self, value: float) -> bool:
        run = self.config.run
        higher = run.target_metric in type(self.problem).higher_is_better
        return (value >= run.target_value) if higher else (value <= run.target_value)

    def _targets_from_history(self) -> None:
        """Which targets the recorded history already reached (after a resume)."""
        run = self.config.run
        columns = self.history.arrays()
        if run.target_loss is not None and "loss" in columns:
            self._reached["loss"] = bool(np.any(columns["loss"] <= run.target_loss))
        if run.target_metric is not None and run.target_metric in columns:
            values = columns[run.target_metric]
            self._reached["metric"] = any(self._metric_reached(v) for v in values[~np.isnan(values)])

    def _stop_reason(self, report: StepReport | None, metrics: dict[str, float]) -> StopReason | Status:
        run = self.config.run
        if report is not None:
            if report.status != Status.RUNNING:
                return report.status
            if not math.isfinite(report.loss):
                return Status.DIVERGED_NAN
            if run.target_loss is not None and report.loss <= run.target_loss:
                self._reached["loss"] = True
                if run.stop_when == "any" or run.target_metric is None or self._reached["metric"]:
                    return StopReason.TARGET_LOSS
        if run.target_metric is not None and run.target_value is not None and run.target_metric in metrics:
            if self._metric_reached(metrics[run.target_metric]):
                self._reached["metric"] = True
            if self._reached["metric"] and (run.stop_when == "any" or run.target_loss is None or self._reached["loss"]):
                return StopReason.TARGET_METRIC
        if self.iteration >= run.max_iter:
            return StopReason.MAX_ITER
        if run.max_epochs is not None and report is not None and self.sampler.completed_epochs >= run.max_epochs:
            return StopReason.MAX_EPOCHS
        if run.max_grad_evals is not None and self.counters["grad_evals"] >= run.max_grad_evals:
            return StopReason.MAX_GRAD_EVALS
        return StopReason.RUNNING

    def _progress(self, report: StepReport, metrics: dict[str, float], elapsed: float) -> None:
        run = self.config.run
        fractions = [self.iteration / run.max_iter if run.max_iter else 0.0]
        if run.max_epochs:
            fractions.append(self.sampler.epochs / run.max_epochs)
        if run.max_grad_evals:
            fractions.append(self.counters["grad_evals"] / run.max_grad_evals)
        if run.wall_time:
            fractions.append(elapsed / run.wall_time)
        done = max(fractions)
        eta = elapsed * (1 - done) / done if done > 0 else math.inf
        parts = [f"it {self.iteration:6d}"]
        if self.sampler.batches_per_epoch > 1:
            parts.append(f"epoch {self.sampler.epochs:7.2f}")
        parts.append(f"loss {report.loss:.4e}")
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
        self._prepare_output()
        if self.verbose:
            self._header()
        start = time.perf_counter() - self.elapsed_before
        metrics: dict[str, float] = {}
        report: StepReport | None = None
        reason = self._stop_reason(None, metrics)
        finite = True
        with _Signals() as signals:
            while reason == StopReason.RUNNING:
                report = self.solver.step()
                self.iteration += 1
                _inject_fault(self.comm.rank, self.iteration)
                self.problem.params.flat.copy_(self.solver.theta)
                ended, epochs = self.sampler.ends_epoch, self.sampler.completed_epochs
                measured = run.metrics_every.due(self.iteration, ended, epochs)
                if measured:
                    metrics = self._metrics()
                elapsed = time.perf_counter() - start
                self._record(report, metrics if measured else {}, elapsed)
                if self.verbose:
                    for warning in report.warnings:
                        sys.stderr.write(f"ddnn: warning: iteration {self.iteration}: {warning}\n")
                    if run.print_every.due(self.iteration, ended, epochs):
                        self._progress(report, metrics, elapsed)
                reason = self._stop_reason(report, metrics)
                flags = torch.tensor(
                    [
                        float(signals.received),
                        float(run.wall_time is not None and elapsed >= run.wall_time),
                        float(not bool(torch.isfinite(self.solver.theta).all())),
                    ],
                    dtype=torch.float64,
                )
                self.comm.allreduce(flags, "max")
                if flags[2] > 0:
                    reason, finite = Status.DIVERGED_NAN, False
                if reason == StopReason.RUNNING and flags[1] > 0:
                    reason = StopReason.WALL_TIME
                if finite and flags[0] > 0:
                    reason = StopReason.SIGNAL
                if reason == StopReason.RUNNING and run.checkpoint_every.due(self.iteration, ended, epochs):
                    self._write(None, self._state(elapsed))
                if reason == StopReason.RUNNING:
                    self.sampler.advance()
        elapsed = time.perf_counter() - start
        # A non-finite iterate is never checkpointed: the last finite checkpoint stays the one to resume.
        state = self._state(elapsed) if finite else None
        if finite and not run.metrics_every.due(self.iteration, self.sampler.ends_epoch, self.sampler.completed_epochs):
            if self.history.rows:
                # the final iterate's metrics, also when the cadence skipped the last iteration; they go to
                # the results file only, so that the checkpoint stays that of an uninterrupted run
                metrics = self._final_metrics = self._metrics()
        # A signal interrupts the run: the checkpoint records it as unfinished so that it can be resumed.
        self._write(None if reason == StopReason.SIGNAL else reason, state)
        loss = report.loss if report is not None else self.history.last("loss")
        if self.verbose:
            self._summary(reason, loss, metrics, elapsed)
        return RunResult(reason, self.iteration, loss, metrics, self.out_dir)

    def _header(self) -> None:
        where = f"output {self.out_dir}" if self.out_dir else "no output"
        resumed = f", resumed at iteration {self.iteration}" if self.iteration else ""
        batches = self.sampler.batches_per_epoch
        data = f", {batches} batches per epoch" if batches > 1 else ""
        print(
            f"ddnn {ddnn.__version__}: problem {self.config.problem.name} ({self.problem.params.numel} parameters), "
            f"solver {self.config.solver.name}, {self.comm.size} rank(s) on {self.device} "
            f"with {self.threads} thread(s) each, {self.config.run.dtype}{data}, {where}{resumed}",
            flush=True,
        )

    def _summary(self, reason: StopReason | Status, loss: float, metrics: dict[str, float], elapsed: float) -> None:
        shown = ", ".join(f"{k} {v:.4e}" for k, v in metrics.items())
        epochs = f", {self.sampler.epochs:.2f} epochs" if self.sampler.batches_per_epoch > 1 else ""
        print(
            f"stopped: {reason.name} after {self.iteration} iterations{epochs}, "
            f"{int(self.counters['grad_evals'])} gradient evaluations, {_fmt_time(elapsed)}; "
            f"loss {loss:.4e}" + (f", {shown}" if shown else ""),
            flush=True,
        )
        if self.out_dir:
            note = " (interrupted: resume with --resume)" if reason == StopReason.SIGNAL else ""
            if not bool(torch.isfinite(self.solver.theta).all()):
                note = " (the iterate is not finite; checkpoint.h5 holds the last finite one)"
            print(f"results: {os.path.join(self.out_dir, RESULTS)}{note}", flush=True)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:300]


def _inject_fault(rank: int, iteration: int) -> None:
    """Fault-injection hook for tests: ``DDNN_FAIL_RANK=r DDNN_FAIL_ITER=k`` raise on rank r at iteration k."""
    if os.environ.get("DDNN_FAIL_RANK") is None:
        return
    if rank == int(os.environ["DDNN_FAIL_RANK"]) and iteration == int(os.environ.get("DDNN_FAIL_ITER", "1")):
        raise RuntimeError(f"injected failure on rank {rank} at iteration {iteration} (DDNN_FAIL_RANK)")


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")
