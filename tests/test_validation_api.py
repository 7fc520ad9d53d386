"""validation.validate as a library call: its report, its agreement with the command line, the
model taken from the checkpoints, mismatches refused, and validation's independence of the CLI."""

import ast
import json
import warnings
from pathlib import Path

import pytest
import torch

from gfncp_pyro.checkpoint import save_checkpoint
from gfncp_pyro.config import preset
from gfncp_pyro.loading import ModelMismatchError, load_pretrained
from gfncp_pyro.models import CRPMixture
from gfncp_pyro.nn import EnergyNet
from validation import ValidationReport, validate
from validation.exact import main

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(net_h_dim=8, net_g_dim=16, net_hidden=16)
TINY = dict(orders=2, importance=40, sdpp_orders=8)
TINY_FLAGS = ["--orders", "2", "--importance", "40", "--sdpp-orders", "8"]


def _checkpoint(path, seed=0, **changes):
    config = preset("mog2d-small", **SMALL, **changes)
    torch.manual_seed(seed)
    save_checkpoint(path, {"config": config.to_dict(), "model": EnergyNet(config.net).state_dict()})
    return str(path)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("validate")
    return {"GFNCP": _checkpoint(root / "g.pt", seed=0), "NCP": _checkpoint(root / "n.pt", seed=1),
            "alpha3": _checkpoint(root / "a3.pt", alpha=3.0), "dim3": _checkpoint(root / "d3.pt", net_x_dim=3)}


def _without_time(data: dict) -> dict:
    return {k: v for k, v in data.items() if k != "elapsed_s"}


def test_validate_returns_a_report_of_every_model_and_data_set(checkpoints):
    models = {"GFNCP": checkpoints["GFNCP"], "NCP": checkpoints["NCP"]}
    report = validate(models, N=4, datasets=2, seed=3, **TINY)
    assert isinstance(report, ValidationReport)
    assert (report.N, report.datasets, report.seed, report.method) == (4, 2, 3, "enumeration")
    assert report.model == {"alpha": 1.0, "sigma_mu": 5.0, "sigma_x": 1.0, "dim": 2}  # the checkpoints' model
    assert report.checkpoints == models and list(report.models) == ["GFNCP", "NCP"]
    for name in models:
        rows = report.per_dataset[name]
        assert len(rows) == 2 and 0 <= report.models[name]["tv"]["mean"] <= 1
        assert report.models[name]["tv"]["mean"] == pytest.approx(sum(r["tv"] for r in rows) / 2, abs=1e-15)
    assert set(report.exact) == {"log_evidence", "entropy", "map_is_true"}
    assert len(report.cases) == 2
    data = report.to_json()
    assert list(data) == ["N", "datasets", "seed", "method", "model", "orders", "importance_samples", "sdpp_orders",
                          "elapsed_s", "checkpoints", "exact", "models", "per_dataset"]
    json.dumps(data)  # JSON-ready
    again = ValidationReport.from_json(json.loads(json.dumps(data)))
    assert again == report and again.table() == report.table()


def test_the_json_and_table_equal_the_commands(checkpoints, tmp_path, capsys):
    """``validate(...).to_json()`` is the file ``python -m validation.exact --json`` writes for the
    same arguments (the time aside), and ``.table()`` is what it prints."""
    models = {"GFNCP": checkpoints["GFNCP"], "NCP": checkpoints["NCP"]}
    report = validate(models, N=5, datasets=2, seed=7, **TINY)
    path = tmp_path / "r.json"
    assert main(["--N", "5", "--datasets", "2", "--seed", "7", "--gfncp", models["GFNCP"], "--ncp", models["NCP"],
                 *TINY_FLAGS, "--out", str(tmp_path / "fig"), "--json", str(path), "--no-progress"]) == 0
    written = json.loads(path.read_text())
    assert _without_time(written) == _without_time(report.to_json())
    printed = capsys.readouterr().out
    same_time = ValidationReport.from_json({**report.to_json(), "elapsed_s": written["elapsed_s"]})
    assert "\n" + same_time.table() + "\n" in printed
    # one model, the other skipped; the DP
    report = validate({"NCP": models["NCP"]}, N=13, datasets=1, seed=1, dp=True, importance=30, sdpp_orders=4)
    assert main(["--N", "13", "--dp", "--datasets", "1", "--seed", "1", "--gfncp", "none", "--ncp", models["NCP"],
                 "--importance", "30", "--sdpp-orders", "4", "--out", str(tmp_path), "--json", str(path),
                 "--no-progress"]) == 0
    assert _without_time(json.loads(path.read_text())) == _without_time(report.to_json())
    assert report.method == "subset DP" and "coclustering_mae" in report.models["NCP"]


def test_loaded_networks_and_specs_give_the_same_report(checkpoints):
    net, _, _ = load_pretrained(checkpoints["GFNCP"])
    by_spec = validate({"GFNCP": checkpoints["GFNCP"]}, N=4, datasets=2, **TINY).to_json()
    by_net = validate({"GFNCP": net}, N=4, datasets=2, **TINY).to_json()
    assert by_net["checkpoints"] == {"GFNCP": None}
    assert _without_time(by_net) | {"checkpoints": None} == _without_time(by_spec) | {"checkpoints": None}


def test_the_model_comes_from_the_checkpoints_and_a_mismatch_is_an_error(checkpoints):
    report = validate({"GFNCP": checkpoints["alpha3"]}, N=4, datasets=1, **TINY)
    assert report.model["alpha"] == 3.0
    with pytest.raises(ModelMismatchError, match="different models.*alpha 3.0 vs 1.0.*force=True"):
        validate({"A": checkpoints["alpha3"], "B": checkpoints["GFNCP"]}, N=4, datasets=1, **TINY)
    with pytest.raises(ModelMismatchError, match="alpha"):  # requested hyper-parameters that differ
        validate({"GFNCP": checkpoints["GFNCP"]}, N=4, datasets=1, alpha=2.0, **TINY)
    with pytest.raises(ModelMismatchError, match="dimension"):  # never forced
        validate({"A": checkpoints["dim3"], "B": checkpoints["GFNCP"]}, N=4, datasets=1, force=True, **TINY)
    with pytest.warns(UserWarning, match="not trained for"):
        forced = validate({"A": checkpoints["alpha3"], "B": checkpoints["GFNCP"]}, N=4, datasets=1, force=True,
                          **TINY)
    assert forced.model["alpha"] == 3.0  # the first network's model
    with pytest.raises(ModelMismatchError, match="not trained for"):  # an explicit model, other than the trained
        validate({"GFNCP": checkpoints["GFNCP"]}, N=4, datasets=1, model=CRPMixture(1.0, 2.0, 1.0, 2), **TINY)


def test_bad_arguments_are_value_errors(checkpoints):
    torch.manual_seed(0)
    bare = EnergyNet(preset("mog2d-small", **SMALL).net)  # no training config: the model must be given
    with pytest.raises(ValueError, match="model=CRPMixture"):
        validate({"X": bare}, N=4, datasets=1, **TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = validate({"X": bare}, N=4, datasets=1, model=CRPMixture(1.0, 5.0, 1.0, 2), **TINY)
    assert report.checkpoints == {"X": None}
    for kwargs, match in (({"N": 21}, "N must be"), ({"datasets": 0}, "datasets"), ({"orders": -1}, "orders"),
                          ({"data": torch.zeros(4, 3)}, r"shape \(N, 2\)"),
                          ({"data": torch.full((4, 2), float("nan"))}, "NaN"),
                          ({"model": CRPMixture(1.0, 5.0, 1.0, 2), "alpha": 2.0}, "not both")):
        with pytest.raises(ValueError, match=match):
            validate({}, **{"N": 4, "datasets": 1, **kwargs})
    with pytest.raises(ValueError, match="checkpoint spec"):
        validate({"X": 3}, N=4, datasets=1)


def test_exact_only_given_points_and_the_dp_beyond_enumeration(tmp_path):
    points = CRPMixture(1.0, 5.0, 1.0, 2).sample_batch(torch.tensor([5]), torch.Generator().manual_seed(0),
                                                       dtype=torch.float64).x[0]
    report = validate({}, data=points)
    assert report.datasets == 1 and report.N == 5 and set(report.exact) == {"log_evidence", "entropy"}
    assert report.models == {} and report.plot(tmp_path / "none") == []
    assert validate({}, N=13, datasets=1).method == "subset DP"  # beyond enumeration: the DP without dp=True
    assert validate({}, N=4, datasets=1, dp=True).method == "subset DP"


def test_plot_writes_the_figures(checkpoints, tmp_path):
    report = validate({"GFNCP": checkpoints["GFNCP"]}, N=4, datasets=2, **TINY)
    paths = report.plot(tmp_path / "figs")
    assert [p.name for p in paths] == ["top_partitions_N4.png", "ecdf_N4.png"]
    assert all(p.stat().st_size > 10_000 for p in paths)


def _imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "validation").glob("*.py")), ids=lambda p: p.name)
def test_validation_imports_nothing_from_the_cli(path):
    """validation/ uses gfncp_pyro's library API (commands, loading, data.points), never cli.py."""
    bad = {name for name in _imports_of(path) if name == "gfncp_pyro.cli" or name.startswith("gfncp_pyro.cli.")}
    assert not bad, f"{path.name} imports {sorted(bad)}"
