"""ddnn's solvers as ``torch.optim`` optimisers driven by a closure.

::

    from ddnn.optim import LBFGS, ASPQN

    opt = LBFGS(model.parameters(), line_search_fn="strong_wolfe")   # torch.optim.LBFGS's arguments
    opt = ASPQN(model, blocks="layers", subdomains=4)                  # ASPQN on any module

    def closure():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        return loss

    for _ in range(100):
        opt.step(closure)

Optimisers
----------
* :class:`LBFGS` — a drop-in replacement of ``torch.optim.LBFGS`` (its
  arguments, their meaning, the returned loss; :mod:`ddnn.optim.lbfgs`);
* :class:`ASPQN`, :class:`MSPQN` — L-BFGS right-preconditioned by additive
  or multiplicative Schwarz over blocks of parameters (:mod:`ddnn.optim.schwarz`);
* :class:`TrustRegion`, :class:`APTS` — trust regions, and APTS in weights
  (:mod:`ddnn.optim.trust_region`);
* :class:`SolverOptimizer` — any registered solver by name, e.g.
  ``SolverOptimizer(params, "adam", lr=1e-3)`` or
  ``SolverOptimizer(model, "lbfgs", npc={"name": "schwarz"})``.

Design choices
--------------
* **One flat buffer.** The parameters are re-homed into one contiguous
  buffer when the optimiser is built: every ``p.data`` becomes a slice of a
  flat tensor and every ``p.grad`` a slice of a flat gradient buffer (the
  parameter objects are kept, so the model stays valid). The closure's
  ``backward()`` then leaves ∇L in the buffer with no gathering copy, and the
  solvers work on flat vectors as inside ``python -m ddnn``. Hence
  :meth:`~SolverOptimizer.zero_grad` zeroes the buffer in place: gradients
  are zeros, never ``None`` (``set_to_none`` is ignored), and gradients a
  closure leaves elsewhere (``model.zero_grad()``) are copied back in.
  Casting or moving the model afterwards is detected and followed.
* **The state is the iterate.** :meth:`~SolverOptimizer.state_dict` holds the
  solver's iterate, and :meth:`~SolverOptimizer.load_state_dict` sets the
  parameters to it: loading an optimiser's state resumes the run, also in a
  fresh model.
* **One closure call per evaluation.** A step reuses the loss and gradient
  the previous step ended with when the closure is the same object and the
  parameters were not changed outside (``reevaluate="auto"``); closure calls
  are counted in ``opt.state["closure_calls"]`` (and, for :class:`LBFGS`, in
  torch's ``func_evals``).
* **One set of options.** Param groups may split the parameters (for Schwarz
  methods every group is a block) but share their options; ``lr`` follows
  the groups at every step, so LR schedulers work.
* **Parallel runs.** ``comm=`` (a ddnn ``Comm``, an mpi4py communicator or a
  ``torch.distributed`` process group) reduces every evaluation over the
  ranks and shares Schwarz blocks among them; see :mod:`ddnn.optim.closure`
  for what a closure returns on each rank.
* **Copies work.** ``copy.deepcopy`` and pickle give a working optimiser
  (the copy's parameters are re-homed into the copy's buffer); a copy needs
  the closure again at its next step.
"""

from __future__ import annotations

from .closure import ClosureObjective, Shard
from .comm import TorchDistComm, resolve_comm
from .lbfgs import LBFGS
from .optimizer import OptionError, SolverOptimizer
from .params import FlatParamList
from .schwarz import ASPQN, MSPQN
from .trust_region import APTS, TrustRegion

__all__ = [
    "LBFGS",
    "ASPQN",
    "MSPQN",
    "TrustRegion",
    "APTS",
    "SolverOptimizer",
    "OptionError",
    "Shard",
    "ClosureObjective",
    "FlatParamList",
    "TorchDistComm",
    "resolve_comm",
]
