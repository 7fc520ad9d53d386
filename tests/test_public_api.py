"""The public API at the package root (Pyro style: a sorted __all__, names resolved lazily)."""

import subprocess
import sys

import gfncp_pyro

REQUIRED = {"CRPMixture", "ChineseRestaurantProcess", "AmortizedPartition", "GFNCPGuide", "load_pretrained",
            "exact_posterior", "subset_posterior", "importance", "independence_mh", "fit", "collapsed_gibbs",
            "total_variation", "co_clustering", "sdpp"}


def test_all_is_sorted_complete_and_every_name_resolves():
    assert gfncp_pyro.__all__ == sorted(gfncp_pyro.__all__)
    assert REQUIRED <= set(gfncp_pyro.__all__)
    for name in gfncp_pyro.__all__:
        value = getattr(gfncp_pyro, name)
        assert getattr(value, "__name__", name) == name, name


def test_importing_the_package_loads_neither_torch_nor_pyro():
    code = "import sys, gfncp_pyro; print('torch' in sys.modules, 'pyro' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_an_unknown_name_is_an_attribute_error():
    try:
        gfncp_pyro.no_such_name
    except AttributeError as err:
        assert "no_such_name" in str(err)
    else:
        raise AssertionError("expected AttributeError")
