"""Fuzzing the readers of points (.csv, .npy, .npz) and the gfncp argument space: whatever the
input, either a valid result or a one-line error with exit status 2, never an uncaught exception."""

import io
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gfncp_pyro.checkpoint import save_checkpoint
from gfncp_pyro.cli import main
from gfncp_pyro.config import preset
from gfncp_pyro.data.points import PointsFileError, read_points
from gfncp_pyro.nn import EnergyNet

SMALL = dict(net_h_dim=8, net_g_dim=16, net_hidden=16)


def _check_read(path: Path) -> None:
    try:
        points = read_points(path)
    except PointsFileError as err:
        assert str(err) and "\n" not in str(err).strip()
        return
    assert points.dtype == np.float64 and points.ndim == 2 and min(points.shape) >= 1
    assert np.isfinite(points).all()


CSV_TEXT = st.text(alphabet="0123456789.,-+eE \n\tnaifx#\"'", max_size=80)


@settings(max_examples=30, deadline=None)
@given(text=CSV_TEXT)
def test_csv_reader_never_raises_anything_else(text):
    with tempfile.TemporaryDirectory() as root:
        path = Path(root) / "p.csv"
        path.write_text(text)
        _check_read(path)


def _array(draw_kind: str, shape, values):
    if draw_kind == "float":
        return np.asarray(values[: int(np.prod(shape))] + [0.0] * int(np.prod(shape)), dtype=np.float64)[
            : int(np.prod(shape))].reshape(shape)
    if draw_kind == "int":
        return np.arange(int(np.prod(shape)), dtype=np.int32).reshape(shape)
    if draw_kind == "bool":
        return np.ones(shape, dtype=bool)
    if draw_kind == "complex":
        return np.ones(shape, dtype=np.complex64)
    if draw_kind == "str":
        return np.full(shape, "a")
    return np.full(shape, None, dtype=object)


ARRAYS = st.tuples(
    st.sampled_from(["float", "int", "bool", "complex", "str", "object"]),
    st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple),
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), max_size=20),
)


@settings(max_examples=30, deadline=None)
@given(spec=ARRAYS, container=st.sampled_from([".npy", ".npz", ".npz-named", ".npz-two"]),
       garble=st.one_of(st.none(), st.integers(0, 400)))
def test_npy_and_npz_readers_never_raise_anything_else(spec, container, garble):
    array = _array(*spec)
    with tempfile.TemporaryDirectory() as root:
        path = Path(root) / ("p.npy" if container == ".npy" else "p.npz")
        buffer = io.BytesIO()
        if container == ".npy":
            np.save(buffer, array, allow_pickle=True)
        elif container == ".npz":
            np.savez(buffer, array)
        elif container == ".npz-named":
            np.savez(buffer, features=array, labels=np.zeros(3))
        else:
            np.savez(buffer, a=array, b=array)
        data = buffer.getvalue()
        if garble is not None:  # truncate, or flip one byte
            data = data[:garble] if garble % 2 else data[:garble] + bytes([data[garble % len(data)] ^ 0xFF]) + \
                data[garble + 1:]
        path.write_bytes(data)
        _check_read(path)


@settings(max_examples=30, deadline=None)
@given(data=st.binary(max_size=200), suffix=st.sampled_from([".csv", ".npy", ".npz", ".txt", ".bin"]))
def test_random_bytes_are_refused_in_one_line(data, suffix):
    with tempfile.TemporaryDirectory() as root:
        path = Path(root) / f"p{suffix}"
        path.write_bytes(data)
        _check_read(path)


@pytest.fixture(scope="module")
def model_and_points(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    config = preset("mog2d-small", **SMALL)
    torch.manual_seed(0)
    save_checkpoint(root / "m.pt", {"config": config.to_dict(), "model": EnergyNet(config.net).state_dict()})
    np.savetxt(root / "p.csv", np.random.default_rng(0).normal(size=(7, 2)), delimiter=",")
    np.save(root / "p3.npy", np.ones((4, 3)))
    return root


VALUES = ["0", "1", "-1", "2", "nan", "inf", "1e400", "abc", "", "auto", "none", "0.5", "tpu", "cpu", "3.7"]
CLUSTER_FLAGS = ["--top-k", "--scale", "--output", "--png", "--json", "--input", "--bogus"]
TRAIN_FLAGS = ["--lr", "--lr-min", "--beta", "--alpha", "--sigma-x", "--sigma-mu", "--n-min", "--n-max", "--device",
               "--split", "--x-dim", "--objective", "--flow", "--mc-weight", "--grad-clip", "--labels", "--preset"]
EVALUATE_FLAGS = ["--sets", "--N", "--seed", "--sdpp-sets", "--sdpp-orders", "--test-alpha", "--json", "--figures",
                  "--data", "--labels", "--bogus"]


def _run(argv, capsys):
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse: --help, or an error
        status = exit_.code
    err = capsys.readouterr().err.strip()
    assert status in (0, 2), (argv, status, err)
    if status == 2:
        assert err and "Traceback" not in err, (argv, err)
        assert len([line for line in err.splitlines() if "error" in line]) == 1, (argv, err)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.tuples(st.sampled_from(CLUSTER_FLAGS), st.sampled_from(VALUES)), max_size=4))
def test_cluster_argument_space(model_and_points, capsys, picks):
    root = model_and_points
    argv = ["cluster", str(root / "m.pt"), "--input", str(root / "p.csv")]
    for flag, value in picks:
        if flag == "--json":
            argv.append(flag)
        elif flag in ("--output", "--png"):
            argv += [flag, str(root / (value or "x")) + (".png" if flag == "--png" and value == "0" else "")]
        elif flag == "--input":
            argv += [flag, str(root / ("p3.npy" if value == "1" else value or "none.csv"))]
        else:
            argv += [flag, value]
    _run(argv, capsys)
    assert not list(root.rglob("*.tmp"))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.tuples(st.sampled_from(TRAIN_FLAGS), st.sampled_from(VALUES)), min_size=1, max_size=3))
def test_train_argument_space(tmp_path_factory, capsys, picks):
    out = tmp_path_factory.mktemp("train_fuzz") / "run"
    argv = ["train", "--out", str(out), "--iterations", "1", "--batch-size", "2", "--n-max", "4", "--val-sets", "2",
            "--val-every", "1", "--panel-sets", "0", "--select-by", "loss", "--device", "cpu", "--no-progress",
            "--preset", "mog2d-small"]
    for flag, value in picks:
        argv += [flag, value]
    _run(argv, capsys)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.tuples(st.sampled_from(EVALUATE_FLAGS), st.sampled_from(VALUES)), min_size=1, max_size=3))
def test_evaluate_argument_space(model_and_points, capsys, picks):
    root = model_and_points
    argv = ["evaluate", str(root / "m.pt"), "--sets", "1", "--N", "3", "--sdpp-sets", "0", "--no-progress"]
    for flag, value in picks:
        if flag in ("--json", "--figures", "--data", "--labels"):
            value = str(root / (value or "x"))
        if flag in ("--sets", "--N", "--sdpp-orders", "--sdpp-sets") and value not in ("0", "1", "2", "-1"):
            value = {"3.7": "3", "0.5": "1"}.get(value, value)  # keep the evaluation small
        argv += [flag, value]
    _run(argv, capsys)
    assert not list(root.rglob("*.tmp"))


def test_the_readers_accept_what_they_should(tmp_path):
    x = np.random.default_rng(1).normal(size=(5, 3))
    np.save(tmp_path / "a.npy", x.astype(np.float32))
    np.savez(tmp_path / "b.npz", features=x, labels=np.arange(5))
    np.savez(tmp_path / "c.npz", x)
    np.savetxt(tmp_path / "d.csv", x, delimiter=",")
    np.save(tmp_path / "e.npy", np.arange(6, dtype=np.int64).reshape(3, 2))
    for name, expected in (("a.npy", x.astype(np.float32)), ("b.npz", x), ("c.npz", x), ("d.csv", x),
                           ("e.npy", np.arange(6.0).reshape(3, 2))):
        got = read_points(tmp_path / name)
        assert got.dtype == np.float64 and np.allclose(got, expected, rtol=0, atol=1e-15 if name != "d.csv" else 1e-12)
    np.save(tmp_path / "nan.npy", np.array([[1.0, math.nan]]))
    with pytest.raises(PointsFileError, match="NaN"):
        read_points(tmp_path / "nan.npy")
    np.save(tmp_path / "v.npy", np.ones(4))
    with pytest.raises(PointsFileError, match="reshape"):
        read_points(tmp_path / "v.npy")
