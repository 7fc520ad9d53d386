"""validation.race on tiny settings: the JSON schema, the figure, the DP path and bad input."""

import json

import pytest

from validation import race


def _run(tmp_path, *extra):
    out = tmp_path / "out"
    report = tmp_path / "race.json"
    code = race.main(["--datasets", "2", "--max-samples", "20", "--max-sweeps", "4", "--chains", "8",
                      "--burn-in", "1", "--out", str(out), "--json", str(report), *extra])
    return code, out, report


def _check_schema(data, key, thresholds):
    assert set(data["methods"]) == {"gfncp_is", "ncp_is", "gfncp_mh", "gibbs"}
    for name, method in data["methods"].items():
        assert set(method[key]) == set(thresholds)
        for seconds in method[key].values():
            assert seconds is None or seconds > 0
        budgets = method["sweeps" if name == "gibbs" else "samples"]
        assert len(method["curve"]) == len(budgets)
        for seconds, error in method["curve"]:
            assert seconds > 0 and 0 <= error <= 1
        # the threshold times are read off the curve
        for t, seconds in method[key].items():
            reached = [s for s, e in method["curve"] if e <= float(t)]
            assert seconds == (reached[0] if reached else None)


def test_race_at_n5_writes_json_and_png(tmp_path):
    code, out, report = _run(tmp_path, "--N", "5")
    assert code == 0
    data = json.loads(report.read_text())
    assert data["N"] == 5 and data["datasets"] == 2 and data["metric"] == "tv"
    _check_schema(data, "seconds_to_tv", ("0.1", "0.05", "0.02"))
    assert data["methods"]["gfncp_is"]["samples"] == [10, 20]
    assert data["methods"]["gibbs"]["sweeps"] == [1, 2, 4]
    for name in ("gfncp", "ncp"):
        assert data["training_excluded"][name]["total_s"] > 0
    assert (out / "race_N5.png").stat().st_size > 1000


def test_race_beyond_enumeration_uses_the_dp(tmp_path):
    code, _, report = _run(tmp_path, "--N", "13", "--datasets", "1")
    assert code == 0
    data = json.loads(report.read_text())
    assert data["metric"] == "coclustering_mae" and data["reference"] == "subset DP"
    _check_schema(data, "seconds_to_mae", ("0.05", "0.02", "0.01", "0.005", "0.002"))


@pytest.mark.parametrize("args", [["--N", "1"], ["--N", "21"], ["--datasets", "0"], ["--chains", "0"],
                                  ["--burn-in", "-1"], ["--gfncp", "/no/such/file.pt"]])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, args):
    assert race.main(["--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1


def test_budget_grid():
    assert race._grid(3000, 10) == [10, 20, 50, 100, 200, 500, 1000, 2000, 3000]
    assert race._grid(300, 1) == [1, 2, 5, 10, 20, 50, 100, 200, 300]
    assert race._grid(5, 1) == [1, 2, 5]


def test_training_time_adds_up_resumed_segments(tmp_path):
    log = tmp_path / "metrics.jsonl"
    rows = [{"step": 1, "elapsed_s": 1.0}, {"step": 2, "elapsed_s": 5.0}, {"step": 3, "elapsed_s": 2.0},
            {"step": 4, "elapsed_s": 4.0}]
    log.write_text("\n".join(json.dumps(r) for r in rows))
    t = race.training_seconds(str(tmp_path / "best.pt"))
    assert t["total_s"] == 9.0 and t["steps"] == 4
