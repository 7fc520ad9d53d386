"""The DAG of Fig. 2: built, verified, drawn."""

import math

import networkx as nx
import pytest

from gfncp_pyro.partitions import bell_number
from validation.dag import build_dag, main, verify_dag


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_dag_counts(n):
    dag = build_dag(n)
    counts = verify_dag(dag, n)
    assert counts["terminal_states"] == bell_number(n)
    assert counts["trajectories"] == math.factorial(n) * bell_number(n)


def test_verify_detects_a_missing_edge():
    dag = build_dag(3)
    edge = next((u, v) for u, v, in dag.edges() if dag.nodes[v]["kind"] == "terminal")
    dag.remove_edge(*edge)
    with pytest.raises(AssertionError, match="trajectories"):
        verify_dag(dag, 3)


def test_dag_cli_writes_png_and_graphml(tmp_path, capsys):
    assert main(["--N", "3", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "dag_N3.png").stat().st_size > 10_000
    graph = nx.read_graphml(tmp_path / "dag_N3.graphml")
    assert graph.number_of_nodes() == 1 + 6 + 12 + 5
    assert "verified" in capsys.readouterr().out
    assert main(["--N", "9", "--out", str(tmp_path)]) == 2
