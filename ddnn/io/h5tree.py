"""Nested Python trees <-> HDF5 groups, exactly.

Dicts become groups (insertion order and integer keys kept), tensors and arrays datasets
(dtype kept; bit-exact round trip), numbers, strings, booleans and ``None``
attributes, lists and tuples groups marked as sequences. Solver states,
RNG states, counters and histories are all such trees.
"""

from __future__ import annotations

import json
from typing import Any

import h5py
import numpy as np
import torch

__all__ = ["write_tree", "read_tree"]

_KIND = "__kind__"
_NONE = "__none__"
_ORDER = "__order__"  # JSON list of a dict's keys: attributes and datasets do not share one creation order


def _tensor_to_numpy(t: torch.Tensor) -> tuple[np.ndarray, str | None]:
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy(), "bfloat16"
    return t.numpy(), None


def write_tree(group: h5py.Group, tree: dict[str, Any]) -> None:
    """Write the dict ``tree`` into ``group`` (recursively)."""
    names = [str(key) for key in tree]
    if len(set(names)) != len(names):
        raise ValueError(f"tree keys {list(tree)!r} collide as strings")
    for name, value in zip(names, tree.values()):
        if "/" in name or name in (_KIND, _ORDER):
            raise ValueError(f"tree key {name!r} is not allowed")
        _write(group, name, value)
    # integer keys (torch optimizer states are keyed by parameter index) come back as integers
    order = [k if isinstance(k, int) and not isinstance(k, bool) else n for k, n in zip(tree, names)]
    group.attrs[_ORDER] = json.dumps(order)


def _write(group: h5py.Group, key: str, value: Any) -> None:
    if isinstance(value, dict):
        write_tree(group.create_group(key, track_order=True), value)
    elif isinstance(value, (list, tuple)):
        sub = group.create_group(key, track_order=True)
        sub.attrs[_KIND] = "list" if isinstance(value, list) else "tuple"
        for i, item in enumerate(value):
            _write(sub, str(i), item)
    elif isinstance(value, torch.Tensor):
        array, special = _tensor_to_numpy(value)
        ds = group.create_dataset(key, data=array)
        ds.attrs[_KIND] = special or "tensor"
    elif isinstance(value, np.ndarray):
        ds = group.create_dataset(key, data=value)
        ds.attrs[_KIND] = "ndarray"
    elif value is None:
        group.attrs[key] = _NONE
    elif isinstance(value, (bool, np.bool_)):
        group.attrs[key] = np.bool_(value)
    elif isinstance(value, (int, np.integer)):
        group.attrs[key] = np.int64(value)
    elif isinstance(value, (float, np.floating)):
        group.attrs[key] = np.float64(value)
    elif isinstance(value, str):
        group.attrs[key] = str(value)
    elif isinstance(value, bytes):
        ds = group.create_dataset(key, data=np.frombuffer(value, dtype=np.uint8))
        ds.attrs[_KIND] = "bytes"
    else:
        raise TypeError(f"cannot store {type(value).__name__} at {group.name}/{key}")


def read_tree(group: h5py.Group) -> Any:
    """Read a tree written by :func:`write_tree` (tensors come back as CPU tensors)."""
    items: dict[str, Any] = {}
    for key, value in group.attrs.items():
        if key in (_KIND, _ORDER):
            continue
        items[key] = _attr(value)
    for key, node in group.items():
        if isinstance(node, h5py.Group):
            items[key] = read_tree(node)
        else:
            kind = node.attrs.get(_KIND, "ndarray")
            data = node[()]
            if kind == "tensor":
                items[key] = torch.from_numpy(np.array(data))
            elif kind == "bfloat16":
                items[key] = torch.from_numpy(np.array(data)).view(torch.bfloat16)
            elif kind == "bytes":
                items[key] = bytes(np.asarray(data, dtype=np.uint8))
            else:
                items[key] = np.array(data)
    kind = group.attrs.get(_KIND)
    if kind in ("list", "tuple"):
        seq = [items[str(i)] for i in range(len(items))]
        return seq if kind == "list" else tuple(seq)
    order = group.attrs.get(_ORDER)
    if order is not None:  # the written order: attributes and children interleave in the writer
        items = {key: items[str(key)] for key in json.loads(order)}
    return items


def _attr(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        return None if value == _NONE else value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value
