""":class:`SolverOptimizer`: any ddnn solver as a ``torch.optim.Optimizer`` driven by a closure.

One :meth:`~SolverOptimizer.step` call runs ``max_iter`` iterations of the
solver on a :class:`~ddnn.optim.closure.ClosureObjective` over the
parameters, which live in one flat buffer (:mod:`ddnn.optim.params`).

Nothing fails silently:

* a cast or move of the parameters after construction (``model.double()``,
  ``model.to(device)``, ``p.data = t``) is followed: the parameters are
  re-homed with their current values and the solver's state is carried over
  in the new dtype and device (its cached loss and gradient are evaluated anew);
* :meth:`~SolverOptimizer.add_param_group`, or a parameter whose
  ``requires_grad`` changed, restarts the solver on the new set of
  parameters (a fresh history; counters continue);
* the ``lr`` of the param groups drives the solver at every step, so LR
  schedulers work; options that cannot change after construction raise
  when they do; all groups must agree on every option;
* complex parameters, and options a closure cannot serve (exact
  Hessian-vector products, sample decompositions), raise a ``ValueError``
  naming them; so does every invalid option (:class:`OptionError`).

References
----------
A. Paszke et al., PyTorch: an imperative style, high-performance deep
learning library, *NeurIPS* 2019 (the ``torch.optim`` closure protocol).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from ddnn import config, registry
from ddnn.counters import Counters, Timers
from ddnn.errors import ConfigError
from ddnn.options import Section
from ddnn.parallel.comm import Comm, SerialComm
from ddnn.solvers.base import SolverContext, Status, StepReport
from ddnn.solvers.first_order import clone_state

from .blocks import layout
from .closure import ClosureObjective, _Closure
from .comm import resolve_comm
from .params import FlatParamList

__all__ = ["OptionError", "SolverOptimizer"]

#: attributes of an optimiser that copies do not take (hooks, an LR scheduler's wrapper of ``step``), as torch
_NOT_COPIED = frozenset(
    {
        "step",
        "_optimizer_step_pre_hooks",
        "_optimizer_step_post_hooks",
        "_optimizer_state_dict_pre_hooks",
        "_optimizer_state_dict_post_hooks",
        "_optimizer_load_state_dict_pre_hooks",
        "_optimizer_load_state_dict_post_hooks",
    }
)


class OptionError(ConfigError, ValueError):
    """An invalid optimiser option: a ``ValueError`` naming the option (and a ddnn ``ConfigError``)."""

    def __reduce__(self):
        return (OptionError, (self.key, self.message, self.source))


@contextlib.contextmanager
def options_errors() -> Iterator[None]:
    """Raise the ``ConfigError`` of option validation as an :class:`OptionError` (a ``ValueError``)."""
    try:
        yield
    except OptionError:
        raise
    except ConfigError as err:
        raise OptionError(err.key, err.message, err.source) from None


def _plain(value: Any) -> Any:
    """A one-element tensor option (a tensor ``lr``) as a Python number."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"a tensor option must have one element, got shape {tuple(value.shape)}")
        return value.item()
    return value


def _same(a: Any, b: Any) -> bool:
    return _plain(a) == _plain(b)


def _sections(section: Section) -> Iterator[Section]:
    """``section`` and every component section nested in its options."""
    yield section
    for value in vars(section.options).values():
        if isinstance(value, Section):
            yield from _sections(value)


def _keys(tree: Any) -> Iterator[int]:
    """Every ``key`` entry of a nested solver state (the objective keys its cached evaluations hold)."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            if k == "key" and isinstance(v, int):
                yield v
            else:
                yield from _keys(v)


def _find_comms(obj: Any, seen: set[int], out: list[Comm]) -> None:
    """Every :class:`~ddnn.parallel.comm.Comm` reachable from ``obj`` through ddnn objects, dicts and lists."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, Comm):
        out.append(obj)
    elif isinstance(obj, dict):
        for v in obj.values():
            _find_comms(v, seen, out)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _find_comms(v, seen, out)
    elif type(obj).__module__.startswith("ddnn") and hasattr(obj, "__dict__"):
        for v in vars(obj).values():
            _find_comms(v, seen, out)


def params_and_module(params: Any, module: nn.Module | None) -> tuple[Any, nn.Module | None]:
    """Accept a module in place of its parameters: ``(its parameters, the module)``."""
    if isinstance(params, nn.Module):
        if module is not None and module is not params:
            raise ValueError("module: given twice (as params and as module=), and they differ")
        return list(params.parameters()), params
    if isinstance(params, torch.Tensor):
        raise TypeError("params: expected an iterable of tensors or of param-group dicts (or a module), got a tensor")
    return params, module


class SolverOptimizer(torch.optim.Optimizer):
    """A registered ddnn solver (``lbfgs``, ``adam``, ``sgd``, ``trust_region``, ``schwarz``) as a torch optimiser.

    Parameters
    ----------
    params : an ``nn.Module``, an iterable of tensors, or of param-group dicts
        (all groups share the options; with a Schwarz preconditioner every
        group is one block)
    solver : the registered solver name (``python -m ddnn --list`` lists them and their options)
    max_iter : solver iterations per :meth:`step`
    reevaluate : when to evaluate the closure at the start of a step.
        ``"auto"`` (default): when the closure is another object than at the
        previous step or the parameters were changed outside the optimiser;
        else the loss and gradient the previous step ended with are reused
        (no redundant closure call). ``True``: every step (a closure that
        reads a batch changing between steps while remaining the same
        object needs this). ``False``: only when the parameters changed.
    comm : ``None`` (serial), a ddnn ``Comm``, an mpi4py communicator, a
        ``torch.distributed`` process group or ``"world"``: every evaluation
        is reduced over its ranks (see :mod:`ddnn.optim.closure` for what the
        closure returns on each rank) and Schwarz blocks are shared among them
    module : the module the parameters belong to (names in messages, ``blocks``)
    blocks : the blocks a Schwarz preconditioner (``npc``) groups into
        subdomains: ``"layers"``, ``"children"`` or a list of module names
        (:mod:`ddnn.optim.blocks`); unless ``npc.subdomains`` says otherwise
        every block is one subdomain
    options : the solver's options, validated as in an input file
        (component options such as ``line_search`` or ``npc`` take a name or
        a mapping with ``name``); ``lr`` may be a one-element tensor

    Attributes
    ----------
    solver : the ddnn solver
    last_report : the :class:`~ddnn.solvers.base.StepReport` of the last iteration
    counters : evaluations on this rank (``closure_calls``, ``grad_evals``,
        ``local_grad_evals``, ``effective_local_grad_evals``, ...)
    state : torch's optimiser state; ``state["closure_calls"]`` counts the
        closure calls of this rank so far

    Raises
    ------
    OptionError
        (a ``ValueError``) for an invalid option, naming it.
    """

    def __init__(
        self,
        params: Any,
        solver: str,
        *,
        max_iter: int = 1,
        reevaluate: bool | str = "auto",
        comm: Any = None,
        module: nn.Module | None = None,
        blocks: Any = None,
        **options: Any,
    ):
        self._init(params, solver, options, {}, {}, (), max_iter, reevaluate, comm, module, blocks)

    # -- construction -------------------------------------------------------------
    def _init(
        self,
        params: Any,
        solver: str,
        options: dict[str, Any],
        group: dict[str, Any],
        live: dict[str, str],
        fixed: tuple[str, ...],
        max_iter: int,
        reevaluate: bool | str,
        comm: Any,
        module: nn.Module | None,
        blocks: Any,
    ) -> None:
        """Validate, build the param groups, the flat buffer, the objective and the solver.

        ``group`` holds extra param-group options, ``live`` maps param-group keys
        to the solver options they drive at every step, ``fixed`` names
        param-group keys that may not change after construction.
        """
        self._ready = False
        name = type(self).__name__
        if not isinstance(solver, str):
            raise OptionError(f"{name}.solver", f"expected a registered solver name, got {solver!r}")
        try:
            entry = registry.lookup("solver", solver)
        except KeyError as err:
            raise OptionError(f"{name}.solver", str(err.args[0])) from None
        if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
            raise OptionError(f"{name}.max_iter", f"expected an integer >= 1, got {max_iter!r}")
        if reevaluate not in (True, False, "auto"):
            raise OptionError(f"{name}.reevaluate", f"expected True, False or 'auto', got {reevaluate!r}")
        params, module = params_and_module(params, module)
        options = dict(options)
        lr = options.get("lr")
        if isinstance(lr, torch.Tensor):
            with options_errors():
                if lr.numel() != 1:
                    raise ConfigError(f"{name}.lr", "a tensor lr must have one element")
            options["lr"] = float(lr)
        self._raw = {"name": solver, **options}
        with options_errors():
            section = config.section("solver", self._raw, name)  # validate before touching the parameters
        defaults: dict[str, Any] = {}
        if "lr" in {f.name for f in dataclasses.fields(entry.options)}:
            defaults["lr"] = lr if isinstance(lr, torch.Tensor) else section.options.lr
            live = {"lr": "lr", **live}
        defaults.update(group)
        defaults.update(max_iter=max_iter, reevaluate=reevaluate)
        self._live, self._fixed_keys = dict(live), tuple(fixed)
        self._module, self._blocks = module, blocks
        super().__init__(params, defaults)
        self._check_groups()
        self._fixed = {k: self.param_groups[0][k] for k in self._fixed_keys}
        self._comm = resolve_comm(comm)
        self.counters = Counters()
        self.timers = Timers()
        self.solver: Any = None
        self._objective: ClosureObjective | None = None
        self.last_report: StepReport | None = None
        self._build()
        self._ready = True
        self._publish()

    def _solver_raw(self, units: int, raw: dict[str, Any] | None = None) -> dict[str, Any]:
        """The solver section with library defaults: a Schwarz ``npc`` has one subdomain per block."""
        raw = dict(self._raw if raw is None else raw)
        npc = raw.get("npc")
        if isinstance(npc, str):
            npc = {"name": npc}
        if isinstance(npc, dict) and npc.get("name") == "schwarz":
            npc = dict(npc)
            by_layers = npc.get("decomposition", "layers") == "layers" and npc.get("blocks", "layers") != "slices"
            if by_layers and npc.get("subdomains") is None and npc.get("layers") is None:
                npc["subdomains"] = units
            raw["npc"] = npc
        if raw.get("name") == "schwarz" and raw.get("subdomains") is None and raw.get("layers") is None:
            if raw.get("decomposition", "layers") == "layers" and raw.get("blocks", "layers") != "slices":
                raw["subdomains"] = units
        return raw

    def _check_supported(self, section: Section) -> None:
        """Refuse what a closure cannot serve, naming the option."""
        name = type(self).__name__
        for sec in _sections(section):
            o = sec.options
            if sec.name == "schwarz" and o.decomposition == "samples":
                raise OptionError(
                    f"{name}.decomposition",
                    "samples: a closure decides its own data and cannot be split into chunks "
                    "(decompose the parameters: decomposition='layers')",
                )
            if sec.name == "schwarz" and o.local_data == "chunk":
                raise OptionError(f"{name}.local_data", "chunk needs ddnn's samples; a closure's data is its own")
            if sec.name == "trust_region" and o.order == 2 and o.hessian == "exact":
                raise OptionError(
                    f"{name}.hessian",
                    "exact Hessian-vector products need the loss graph, which a closure does not return "
                    "(use 'sr1' or 'lbfgs')",
                )

    def _build(self) -> None:
        """(Re)build the flat buffer, the objective and a fresh solver from the current param groups."""
        lay = layout([g["params"] for g in self.param_groups], self._module, self._blocks)
        with options_errors():
            section = config.section("solver", self._solver_raw(len(lay.units)), type(self).__name__)
        self._check_supported(section)
        old = self._objective.closure if self._objective is not None else None
        closure = _Closure(old.key + 1 if old is not None else 0)
        if old is not None:
            closure.fn, closure.takes_shard, closure.loss_type = old.fn, old.takes_shard, old.loss_type
        flat = FlatParamList(lay.params, lay.names)
        objective = ClosureObjective(flat, self._comm, self.counters, "grad_evals", lay.units, closure=closure)
        context = SolverContext(self._comm or SerialComm(), self.counters, self.timers)
        with options_errors():
            solver = registry.build("solver", section, context)
            solver.init(objective, flat.flat)
        self._flat, self._objective, self.solver, self._section = flat, objective, solver, section
        self._trainable = list(lay.params)  # the tensors (not ids: copies map them to their copies)

    def _check_groups(self) -> None:
        """All groups share every option; options fixed at construction did not change."""
        first = self.param_groups[0]
        for i, group in enumerate(self.param_groups[1:], start=1):
            for key in self.defaults:
                if not _same(group[key], first[key]):
                    raise OptionError(
                        f"param_groups[{i}].{key}",
                        f"{group[key]!r} differs from group 0's {first[key]!r}: "
                        f"{type(self).__name__} uses one set of options for all its parameters",
                    )
        for key, value in getattr(self, "_fixed", {}).items():
            if not _same(first[key], value):
                raise OptionError(key, f"cannot change after construction (from {value!r} to {first[key]!r})")

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (its options default to the current ones); the solver restarts on all parameters.

        With a Schwarz preconditioner over param groups the group is a new block.
        """
        ready = getattr(self, "_ready", False)
        if ready:
            for key, value in self.param_groups[0].items():
                if key != "params":
                    param_group.setdefault(key, value)
        super().add_param_group(param_group)
        if not ready:
            return
        try:
            self._check_groups()
            self._build()
        except Exception:
            self.param_groups.pop()
            self._build()
            raise
        self.counters.add("restarts")

    # -- following the parameters -----------------------------------------------
    def _follow(self) -> None:
        """Re-home parameters that were cast, moved or replaced, or restart when the trainable set changed."""
        trainable = {id(p) for g in self.param_groups for p in g["params"] if p.requires_grad}
        if trainable != {id(p) for p in self._trainable}:
            self._build()
            self.counters.add("restarts")
            return
        if self._flat.intact():
            return
        state, rank = self.solver.state_dict(), self.solver.rank_state_dict()
        self._build()  # the buffer takes the parameters' current values, dtype and device
        self.solver.load_state_dict(state)  # solvers cast their state to their iterate's dtype and device
        self.solver.load_rank_state_dict(rank)
        if not torch.equal(self.solver.theta, self._flat.flat):
            self.solver.set_point(self._flat.flat)

    def _sync_options(self) -> None:
        """Drive the solver's live options (``lr``, ...) from the param groups (LR schedulers)."""
        group = self.param_groups[0]
        changes = {}
        for key, field in self._live.items():
            value = self._option_value(key, _plain(group[key]))
            if value != getattr(self.solver.options, field):
                changes[field] = value
        if changes:
            raw = {**self._raw, **changes}
            units = len(self._objective.units)
            with options_errors():
                section = config.section("solver", self._solver_raw(units, raw), type(self).__name__)
            self._raw = raw
            self.solver.options = section.options

    def _option_value(self, key: str, value: Any) -> Any:
        """The solver option a live param-group value ``group[key]`` stands for (subclasses translate)."""
        return value

    # -- the step -------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero the flat gradient buffer in place (``set_to_none`` is ignored: gradients live in the buffer)."""
        self._flat.zero_grad()

    def _before_iteration(self) -> Any:
        """What :meth:`_stop` needs from before an iteration (subclasses)."""
        return None

    def _stop(self, report: StepReport, previous_loss: float | None, before: Any, calls: float) -> bool:
        """Whether to end the step after this iteration (subclasses add torch's tolerances)."""
        return False

    def _loss_like(self, value: float | None) -> Any:
        """``value`` as the closure returns its loss: a tensor of its dtype and device, or a float."""
        loss_type = self._objective.closure.loss_type
        if value is None:
            value = float("nan")
        if loss_type is None:
            return float(value)
        return torch.tensor(value, dtype=loss_type[0], device=loss_type[1])

    @torch.no_grad()
    def step(self, closure: Callable[..., Any]) -> Any:  # type: ignore[override]
        """Run ``max_iter`` solver iterations; returns the loss at the start of the step (as the closure returns it).

        Stops early when the solver reports a status other than running
        (converged or failed; see ``last_report``). *Collective* with a communicator.
        """
        if closure is None:
            raise ValueError(f"{type(self).__name__}.step needs a closure that evaluates the loss")
        if not callable(closure):
            raise TypeError(f"{type(self).__name__}.step: the closure is not callable")
        self._follow()
        self._check_groups()
        self._sync_options()
        group = self.param_groups[0]
        mode = group["reevaluate"]
        objective, solver, flat = self._objective, self.solver, self._flat.flat
        objective.closure.set(closure, renew=mode is True, judge=mode is not False)
        if not torch.equal(flat, solver.theta):  # the parameters were changed outside the optimiser
            solver.set_point(flat)
        start = solver.evaluate()[0] if hasattr(solver, "evaluate") else None
        # the closure calls of this step so far: the start evaluation counts as one, whether it was
        # cached or made now (as in torch), so the iterates do not depend on the cache
        calls = self.counters["closure_calls"] - 1
        previous = start
        for _ in range(int(group["max_iter"])):
            before = self._before_iteration()
            done = getattr(solver, "iteration", None)
            report = solver.step()
            self.last_report = report
            # iterations taken (a solver that stops at once, converged, takes none)
            self.counters.add("iterations", solver.iteration - done if done is not None else 1)
            if start is None:
                start = report.loss_before if report.loss_before is not None else report.loss
            if report.status != Status.RUNNING or self._stop(report, previous, before, calls):
                break
            previous = report.loss
        flat.copy_(solver.theta)
        self._publish()
        return self._loss_like(start)

    def _publish(self) -> None:
        """Mirror the counters into ``state`` (torch's place for them, saved with the state dict)."""
        self.state["closure_calls"] = int(self.counters["closure_calls"])

    # -- state ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """torch's optimiser state plus the solver's (``"solver"``, ``"solver_rank"``) and the counters.

        On several ranks every rank saves its own (the local solvers of its blocks differ).
        """
        self._follow()
        self._publish()
        state = super().state_dict()
        state["solver"] = clone_state(self.solver.state_dict())
        state["solver_rank"] = clone_state(self.solver.rank_state_dict())
        state["counters"] = self.counters.as_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`: options, solver state, counters, and the parameters to the saved iterate."""
        state_dict = dict(state_dict)
        solver_state = state_dict.pop("solver", None)
        rank_state = state_dict.pop("solver_rank", None)
        counters = state_dict.pop("counters", None)
        self._follow()
        super().load_state_dict(state_dict)
        self._check_groups()
        if counters is not None:
            self.counters.load(dict(counters))
        if solver_state is not None:
            self.solver.load_state_dict(clone_state(solver_state))
            if rank_state:
                self.solver.load_rank_state_dict(clone_state(rank_state))
            self._flat.flat.copy_(self.solver.theta)
            # the closure of the next step is judged anew: the saved evaluations hold other keys
            closure = self._objective.closure
            closure.key = max([closure.key, *_keys(solver_state), *_keys(rank_state or {})]) + 1
        self._publish()

    # -- copies --------------------------------------------------------------------
    def _copy_state(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in _NOT_COPIED}

    def __getstate__(self) -> dict[str, Any]:
        """What pickle keeps: everything but hooks, with the solver as its state dicts.

        Pickle copies every tensor with its own storage, so the views solvers keep
        into their own buffers would come back as copies; the solver is therefore
        rebuilt and loads its state, as when resuming.
        """
        if getattr(self, "_comm", None) is not None:
            raise TypeError(
                f"cannot pickle a {type(self).__name__} whose evaluations are reduced over "
                f"{self._comm.size} ranks: save state_dict() on every rank instead"
            )
        state = self._copy_state()
        state["solver"] = None
        state["_solver_state"] = (clone_state(self.solver.state_dict()), clone_state(self.solver.rank_state_dict()))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        saved = state.pop("_solver_state", None)
        super().__setstate__(state)  # the parameters re-home themselves (FlatParamList.__setstate__)
        if saved is not None:
            context = SolverContext(self._comm or SerialComm(), self.counters, self.timers)
            solver = registry.build("solver", self._section, context)
            solver.init(self._objective, self._flat.flat)
            solver.load_state_dict(saved[0])
            solver.load_rank_state_dict(saved[1])
            self.solver = solver

    def __deepcopy__(self, memo: dict[int, Any]) -> SolverOptimizer:
        """A working copy (parameters copied, as the model's); communicators are shared, not copied."""
        comms: list[Comm] = []
        _find_comms(self.__dict__, set(), comms)
        for comm in comms:
            memo[id(comm)] = comm
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new.__setstate__(copy.deepcopy(self._copy_state(), memo))
        return new
