"""HDF5 trees round trip exactly; checkpoints are written atomically and read back robustly."""

from __future__ import annotations

import math
import os

import h5py
import numpy as np
import pytest
import torch

from ddnn.io import CHECKPOINT, RESULTS, read_checkpoint, read_tree, write_checkpoint, write_results, write_tree
from ddnn.io.files import atomic_h5


def assert_same(a, b, where="tree"):
    """Exact equality of two trees: types, dtypes, shapes, values and dict key order."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert b.device.type == "cpu", where
        if a.is_floating_point():  # NaN-aware bitwise comparison
            assert torch.equal(a.view(-1).view(torch.uint8), b.view(-1).view(torch.uint8)) if a.numel() else True
        else:
            assert torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), where
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), where
    elif isinstance(a, dict):
        assert isinstance(b, dict), where
        assert list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert type(a) is type(b), f"{where}: {type(a)} != {type(b)}"
        assert a == b, where


def roundtrip(tmp_path, tree):
    path = tmp_path / "tree.h5"
    with h5py.File(path, "w") as f:
        write_tree(f.create_group("t", track_order=True), tree)
    with h5py.File(path, "r") as f:
        return read_tree(f["t"])


def sample_tree() -> dict:
    g = torch.Generator().manual_seed(3)
    return {
        "float32": torch.randn(5, 3, generator=g),
        "int": 3,
        "float64": torch.randn(7, generator=g, dtype=torch.float64),
        "bfloat16": torch.randn(4, 2, generator=g).to(torch.bfloat16),
        "float16": torch.randn(3, generator=g).to(torch.float16),
        "int64": torch.tensor([-(2**62), 0, 2**62 + 5], dtype=torch.int64),
        "int32": torch.tensor([[1, -2], [3, 4]], dtype=torch.int32),
        "uint8": torch.arange(256, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5, dtype=torch.float64),
        "bf16_scalar": torch.tensor(-1.25, dtype=torch.bfloat16),
        "empty": torch.empty(0),
        "empty2d": torch.empty(0, 3, dtype=torch.int64),
        "empty_bf16": torch.empty(0, dtype=torch.bfloat16),
        "special": torch.tensor([math.inf, -math.inf, math.nan, -0.0, 1e-45], dtype=torch.float32),
        "noncontiguous": torch.arange(12.0).reshape(3, 4).t(),
        "ndarray": np.arange(6, dtype=np.float32).reshape(2, 3),
        "ndarray_int": np.array([1, 2, 3], dtype=np.int16),
        "ndarray_empty": np.zeros((0,), dtype=np.float64),
        "none": None,
        "true": True,
        "false": False,
        "big": 2**62,
        "negative": -17,
        "zero": 0,
        "float": 0.1,
        "nan": math.nan,
        "inf": -math.inf,
        "str": "héllo ∇L",
        "empty_str": "",
        "bytes": b"\x00\x01binary\xff",
        "empty_bytes": b"",
        "list": [1, 2.5, "three", None, torch.ones(2), [True, (4, 5)]],
        "tuple": (torch.zeros(1, dtype=torch.int64), {"x": 1}),
        "empty_list": [],
        "empty_tuple": (),
        "empty_dict": {},
        "nested": {"a": {"b": {"c": torch.tensor([1.0, 2.0]), "d": 4}, "e": "f"}, "g": [{"h": None}]},
        "history": [torch.randn(3, generator=g) for _ in range(12)],  # keys "0".."11": order must not be lexical
    }


def test_tree_round_trip_is_exact(tmp_path):
    tree = sample_tree()
    back = roundtrip(tmp_path, tree)
    expected = dict(tree)
    expected["noncontiguous"] = tree["noncontiguous"].contiguous()
    assert_same(expected, back)


def test_dict_key_order_is_kept(tmp_path):
    tree = {"z": 1, "y": torch.ones(1), "x": None, "w": {"b": 2, "a": torch.zeros(1)}, "v": "s", "u": [1]}
    assert_same(tree, roundtrip(tmp_path, tree))


def test_integer_keys_are_kept(tmp_path):
    tree = {0: {"step": torch.tensor(3.0)}, 1: None, "a": {2: [1], "2b": 5}}
    back = roundtrip(tmp_path, tree)
    assert_same(tree, back)
    assert [type(k) for k in back] == [int, int, str]
    with pytest.raises(ValueError):
        roundtrip(tmp_path, {0: 1, "0": 2})


def test_torch_optimizer_state_round_trips(tmp_path):
    """An optimizer restored from a round-tripped state continues exactly like the original."""
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(4, dtype=torch.float64)), torch.nn.Parameter(torch.randn(2, 2))]
    opt = torch.optim.Adam(params, lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        sum((p.to(torch.float64) ** 2).sum() for p in params).backward()
        opt.step()
    state = opt.state_dict()
    back = roundtrip(tmp_path, {"optimizer": state})["optimizer"]
    assert_same(state, back)
    clones = [torch.nn.Parameter(p.detach().clone()) for p in params]
    restored = torch.optim.Adam(clones, lr=0.1)
    restored.load_state_dict(back)
    for ps, o in ((params, opt), (clones, restored)):
        o.zero_grad()
        sum((p.to(torch.float64) ** 2).sum() for p in ps).backward()
        o.step()
    for p, q in zip(params, clones):
        assert torch.equal(p, q)
    assert_same(opt.state_dict(), restored.state_dict())


def test_numpy_scalars_become_python_values(tmp_path):
    back = roundtrip(tmp_path, {"i": np.int32(4), "f": np.float32(0.5), "b": np.bool_(True)})
    assert back == {"i": 4, "f": 0.5, "b": True}
    assert (type(back["i"]), type(back["f"]), type(back["b"])) == (int, float, bool)


def test_unstorable_values_are_refused(tmp_path):
    with pytest.raises(TypeError):
        roundtrip(tmp_path, {"a": {1, 2}})
    with pytest.raises(ValueError):
        roundtrip(tmp_path, {"a/b": 1})


def test_rng_states_round_trip(tmp_path):
    g = torch.Generator().manual_seed(11)
    torch.randn(3, generator=g)
    tree = {"torch": torch.get_rng_state(), "gen": g.get_state()}
    back = roundtrip(tmp_path, tree)
    assert_same(tree, back)
    g2 = torch.Generator()
    g2.set_state(back["gen"])
    assert torch.equal(torch.randn(5, generator=g), torch.randn(5, generator=g2))


# ---------------------------------------------------------------------------
# checkpoints


def _state(value: float) -> dict:
    return {"iteration": int(value), "params": torch.full((4,), value, dtype=torch.float64), "solver": {"k": [1, 2]}}


def _write(path, value: float) -> None:
    write_checkpoint(str(path), {"iteration": int(value), "world_size": 1, "config": "a: 1\n"}, _state(value))


def test_checkpoint_round_trip_and_backup(tmp_path):
    path = tmp_path / CHECKPOINT
    _write(path, 1)
    assert not os.path.exists(f"{path}.bak")
    _write(path, 2)
    _write(path, 3)
    attrs, state, used = read_checkpoint(str(path))
    assert used == str(path)
    assert attrs["format"] == "ddnn-checkpoint" and attrs["iteration"] == 3 and attrs["config"] == "a: 1\n"
    assert isinstance(attrs["config"], str)
    assert_same(_state(3), state)
    # the previous checkpoint is kept as .bak; no temporary file is left behind
    _, previous, _ = read_checkpoint(f"{path}.bak")
    assert_same(_state(2), previous)
    assert sorted(os.listdir(tmp_path)) == [CHECKPOINT, f"{CHECKPOINT}.bak"]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "missing", "foreign"])
def test_read_checkpoint_falls_back_to_backup(tmp_path, damage):
    path = tmp_path / CHECKPOINT
    _write(path, 1)
    _write(path, 2)
    size = os.path.getsize(path)
    if damage == "truncate":
        with open(path, "r+b") as fh:
            fh.truncate(size // 2)
    elif damage == "garbage":
        with open(path, "r+b") as fh:
            fh.seek(0)
            fh.write(os.urandom(512))
    elif damage == "empty":
        open(path, "wb").close()
    elif damage == "missing":  # killed between the two renames
        os.remove(path)
    elif damage == "foreign":
        os.remove(path)
        with h5py.File(path, "w") as f:
            f.attrs["format"] = "something-else"
            f.create_dataset("state", data=[1])
    attrs, state, used = read_checkpoint(str(path))
    assert used == f"{path}.bak"
    assert attrs["iteration"] == 1
    assert_same(_state(1), state)


def test_read_checkpoint_fails_when_both_are_bad(tmp_path):
    path = tmp_path / CHECKPOINT
    _write(path, 1)
    _write(path, 2)
    for p in (path, f"{path}.bak"):
        with open(p, "r+b") as fh:
            fh.truncate(100)
    with pytest.raises((OSError, ValueError)) as info:
        read_checkpoint(str(path))
    assert str(path) in str(info.value) and f"{path}.bak" in str(info.value)
    with pytest.raises((OSError, ValueError)):
        read_checkpoint(str(tmp_path / "absent.h5"))


def test_files_that_are_not_ours_are_rejected(tmp_path):
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f.create_dataset("params", data=np.zeros(3))
    text = tmp_path / "text.h5"
    text.write_text("problem: {name: regression}\n")
    results = tmp_path / RESULTS
    write_results(str(results), {"world_size": 1}, {"loss": np.ones(2)}, np.zeros(3))
    for path in (plain, text, results, tmp_path):
        with pytest.raises((OSError, ValueError)):
            read_checkpoint(str(path))


def test_failed_write_leaves_the_previous_file(tmp_path):
    path = tmp_path / CHECKPOINT
    _write(path, 1)
    with pytest.raises(TypeError):
        write_checkpoint(str(path), {"iteration": 2}, {"bad": object()})
    assert not os.path.exists(f"{path}.tmp")  # no partial file left behind
    attrs, state, _ = read_checkpoint(str(path))
    assert attrs["iteration"] == 1
    assert_same(_state(1), state)
    _write(path, 3)  # a stale temporary file does not get in the way
    assert read_checkpoint(str(path))[0]["iteration"] == 3


def test_results_layout(tmp_path):
    path = tmp_path / RESULTS
    history = {"iteration": np.arange(1, 4), "loss": np.array([3.0, 2.0, 1.0]), "rel_l2_error": [0.5, math.nan, 0.1]}
    attrs = {"config": "x: 1\n", "world_size": 2, "stop_reason": "MAX_ITER", "finished": None}
    write_results(str(path), attrs, history, np.arange(5, dtype=np.float32))
    write_results(str(path), attrs, history, np.arange(5, dtype=np.float32))
    assert not os.path.exists(f"{path}.bak")  # results are rewritten, not backed up
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "ddnn-results"
        assert f.attrs["world_size"] == 2 and f.attrs["stop_reason"] == "MAX_ITER" and f.attrs["finished"] == ""
        assert list(f["history"]) == ["iteration", "loss", "rel_l2_error"]
        for name in f["history"]:
            assert f["history"][name].dtype == np.float64
        assert np.array_equal(f["history/rel_l2_error"][()], history["rel_l2_error"], equal_nan=True)
        assert np.array_equal(f["params"][()], np.arange(5, dtype=np.float32))


def test_atomic_write_does_not_touch_the_file_until_done(tmp_path):
    path = tmp_path / "x.h5"
    atomic_h5(str(path), lambda f: f.attrs.__setitem__("v", 1))

    def fill(f):
        f.attrs["v"] = 2
        with h5py.File(path, "r") as old:  # the old file is still in place while the new one is written
            assert old.attrs["v"] == 1
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        atomic_h5(str(path), fill)
    with h5py.File(path, "r") as f:
        assert f.attrs["v"] == 1
