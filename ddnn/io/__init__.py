"""HDF5 results and checkpoints (see :mod:`ddnn.io.files` for the layout)."""

from ddnn.io.files import CHECKPOINT, RESULTS, read_checkpoint, write_checkpoint, write_results
from ddnn.io.h5tree import read_tree, write_tree

__all__ = ["CHECKPOINT", "RESULTS", "read_checkpoint", "write_checkpoint", "write_results", "read_tree", "write_tree"]
