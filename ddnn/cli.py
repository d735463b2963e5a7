"""Command line: ``python -m ddnn INPUT.yaml [--out DIR] [--set KEY=VALUE ...] [--resume CKPT]``.

Bad input (syntax, unknown keys, wrong types, impossible rank counts, missing
files) ends every rank with one line on stderr and exit code 2, before any
output is created. An exception on any rank prints that rank's traceback and
aborts the whole job.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from typing import NoReturn

from ddnn import config as cfg
from ddnn import registry
from ddnn.errors import InputError
from ddnn.options import describe_options

__all__ = ["main", "list_components"]

EXIT_INPUT = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2
        sys.stderr.write(f"ddnn: error: {message} (see python -m ddnn --help)\n")
        raise SystemExit(EXIT_INPUT)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m ddnn",
        description="Train a network with domain-decomposition and multilevel optimisers (SPMD under mpirun).",
    )
    p.add_argument("input", nargs="?", help="YAML input file")
    p.add_argument("--out", help="output directory (default: output.dir, else runs/<input stem>)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override an input value, e.g. run.max_iter=50"
    )
    p.add_argument("--resume", metavar="CHECKPOINT", help="continue from a checkpoint file")
    p.add_argument("--validate", action="store_true", help="check the input and exit (0: valid, 2: invalid)")
    p.add_argument("--list", action="store_true", help="print every problem, model and solver with its options")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def list_components() -> str:
    """The reference of the input format: every section and registered component with its options."""
    lines = ["ddnn input format. Top-level sections: problem, model, solver, data, run, output.", ""]
    for name, options in (("run", cfg.RunOptions), ("data", cfg.DataOptions), ("output", cfg.OutputOptions)):
        lines.append(f"{name}: {options.__doc__.strip().splitlines()[0]}")
        lines += describe_options(options)
    for kind in registry.kinds():
        lines.append("")
        lines.append(f"== {kind} (choose with name: ...) ==")
        for name in registry.names(kind):
            entry = registry.lookup(kind, name)
            lines.append(f"{name}: {entry.summary}")
            lines += describe_options(entry.options)
    return "\n".join(lines)


def _one_line(message: str, limit: int = 1000) -> str:
    """An error message as one line of at most ``limit`` characters (line breaks and control characters escaped)."""
    text = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in message)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _thread_variable_error() -> str | None:
    """A bad ``OMP_NUM_THREADS``, checked before torch loads: the OpenMP runtime would print its own complaint.

    The variable is removed, and the error reported once the job's ranks are known.
    """
    text = os.environ.get("OMP_NUM_THREADS", "").strip()
    if not text or (text.isdigit() and 1 <= int(text) <= 4096):
        return None
    del os.environ["OMP_NUM_THREADS"]
    return f"OMP_NUM_THREADS: expected an integer between 1 and 4096, got {text[:40]!r}"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.list:
        print(list_components())
        return 0
    if not args.input:
        _parser().error("an input file is required")

    environment_error = _thread_variable_error()
    from ddnn import parallel

    comm = parallel.init()
    try:
        if environment_error:
            raise InputError(environment_error)
        config = cfg.load(args.input, comm, args.set)
        if args.validate:
            if comm.rank == 0:
                print(f"{args.input}: valid")
            return 0
        from ddnn.run import Run, default_output_dir

        out_dir = default_output_dir(args.input, config, args.out)
        run = Run(config, comm, out_dir, input_path=args.input, resume=args.resume, quiet=args.quiet)
        run.execute()
        return 0
    except InputError as err:
        if comm.rank == 0:
            sys.stderr.write(f"ddnn: error: {_one_line(str(err))}\n")
        return EXIT_INPUT
    except KeyboardInterrupt:
        return 130
    except BaseException as err:  # noqa: BLE001 - any failure on one rank must end every rank
        if isinstance(err, SystemExit) and comm.size == 1:
            raise
        sys.stderr.write(f"[ddnn rank {comm.rank}/{comm.size}] {type(err).__name__}: {err}\n")
        traceback.print_exc()
        sys.stderr.flush()
        if comm.size > 1:
            # The launcher tears the job down on abort and may drop output it has not forwarded yet.
            time.sleep(0.5)
            comm.abort(1)
        return 1
