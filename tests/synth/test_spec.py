"""Workload schema: a valid file loads; every bad value is an error naming the file and key path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from sheaftune.errors import EXIT_INPUT, InputError
from sheaftune.gfp import GFP_KERNEL, GFP_NOWAIT
from sheaftune.synth.spec import load_spec, parse_spec

BASE: dict[str, Any] = {
    "workload": 1,
    "name": "t",
    "cpus": 2,
    "nodes": 1,
    "caches": {
        "maple_node": {"object_size": 256, "sheaf_capacity": 32},
        "kmalloc-64": {"object_size": 64, "sheaf_capacity": 0, "kmalloc": True},
    },
    "streams": [
        {
            "name": "single",
            "cache": "maple_node",
            "rate": 1000,
            "call_site": "mas_preallocate+0x442/0x480",
            "lifetime_us": {"dist": "expon", "scale": 50},
            "free": {"kfree_rcu": 1.0},
        },
        {
            "name": "pops",
            "cache": "maple_node",
            "kind": "prefill",
            "rate": 100,
            "call_site": {"mas_wr_bnode+0x103b/0x1770": 3, "mas_push_data+0x836": 1},
            "prefill": {
                "upper_bound": {"choice": {3: 1, 7: 1}},
                "used": {"dist": "poisson", "mu": 2, "max": 7},
            },
            "lifetime_us": 20,
            "free": {"call_site": "foo+0x10", "remote_cpu": 0.5},
        },
        {
            "name": "km",
            "cache": "kmalloc-64",
            "rate": 500,
            "call_site": "bar+0x1",
            "bytes_req": {"dist": "randint", "low": 33, "high": 65},
            "burst": {"size": 4},
            "lifetime_us": {"dist": "lognorm", "s": 1, "scale": 10},
            "free": {"call_site": "baz+0x2"},
        },
    ],
}


def write(tmp_path: Path, data: Any, name: str = "w.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data, sort_keys=False) if not isinstance(data, str) else data)
    return p


def test_valid_spec_loads(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, BASE))
    assert spec.cpus == 2 and [c.name for c in spec.caches] == ["maple_node", "kmalloc-64"]
    single, pops, km = spec.streams
    assert single.gfp == GFP_KERNEL and pops.gfp == GFP_NOWAIT  # prefill pops default to NOWAIT
    assert pops.kind == "prefill" and pops.upper_bound.choices == (3, 7)
    assert pops.call_site.sites[1].name == "mas_push_data+0x836"
    assert pops.call_site.sites[0].ftrace == "mas_wr_bnode+0x103b/0x1770"
    assert km.free.event == "kfree" and km.burst.mean() == 4
    assert single.free.visible == 0.0 and pops.free.visible == 1.0


def mutate(path: str, value: Any) -> dict[str, Any]:
    """A copy of BASE with the key at ``path`` (dots, [i]) set to value; `DELETE` removes it."""
    d = copy.deepcopy(BASE)
    parts = path.replace("[", ".").replace("]", "").split(".")
    cur: Any = d
    for p in parts[:-1]:
        cur = cur[int(p)] if p.isdigit() else cur[p]
    last = parts[-1]
    key: Any = int(last) if last.isdigit() else last
    if value is DELETE:
        del cur[key]
    else:
        cur[key] = value
    return d


DELETE = object()

BAD = [
    # (path to change, new value, expected key path in the message, expected words)
    ("cpus", "two", "cpus", "expected a number"),
    ("cpus", 0, "cpus", ">= 1"),
    ("cpus", 10**9, "cpus", "<= 8192"),
    ("cpus", True, "cpus", "expected a number"),
    ("cpus", 2.5, "cpus", "whole number"),
    ("nodes", 3, "nodes", "only 2 CPUs"),
    ("name", DELETE, "name", "required key is missing"),
    ("workload", 99, "workload", "newer"),
    ("events", -5, "events", ">= 1"),
    ("events", 10**13, "events", "<= 2e+09"),
    ("colour", "blue", "colour", "unknown key"),
    ("caches.maple_node.object_size", -256, "caches.maple_node.object_size", ">= 1"),
    ("caches.maple_node.sheaf_capacity", DELETE, "caches.maple_node.sheaf_capacity", "missing"),
    ("caches.maple_node.sheaf_capacity", 1 << 20, "caches.maple_node.sheaf_capacity", "<="),
    ("caches.maple_node.size", 1, "caches.maple_node.size", "unknown key"),
    ("caches.kmalloc-64.object_size", 128, "caches.kmalloc-64.object_size", "does not match"),
    ("caches", {}, "caches", "at least one cache"),
    ("streams", [], "streams", "non-empty list"),
    ("streams[0].cache", "dentry", "streams[0].cache", "unknown cache"),
    ("streams[0].rate", 0, "streams[0].rate", "> 0"),
    ("streams[0].rate", -1.0, "streams[0].rate", "> 0"),
    ("streams[0].rate", 1e12, "streams[0].rate", "<= 1e+09"),
    ("streams[0].rate", "fast", "streams[0].rate", "expected a number"),
    ("streams[0].kind", "magic", "streams[0].kind", "alloc, prefill, bulk or kfree_null"),
    ("streams[0].gfp", "GFP_SOMETIMES", "streams[0].gfp", "unknown gfp flag"),
    ("streams[0].call_site", "not a site!", "streams[0].call_site", "not sym"),
    ("streams[0].call_site", "f+0x500/0x100", "streams[0].call_site", "inside the function"),
    ("streams[0].cpus", [0, 5], "streams[0].cpus[1]", "<= 1"),
    ("streams[0].cpus", "some", "streams[0].cpus", "all, even, odd"),
    ("streams[0].lifetime_us", DELETE, "streams[0].lifetime_us", "required unless"),
    ("streams[0].lifetime_us.dist", "nonsense", "streams[0].lifetime_us.dist", "not a scipy"),
    ("streams[0].lifetime_us.dist", "poisson", "streams[0].lifetime_us.dist", "continuous"),
    ("streams[0].lifetime_us.scale", -3, "streams[0].lifetime_us", "invalid for expon"),
    ("streams[0].lifetime_us.scale", 0, "streams[0].lifetime_us", "invalid for expon"),
    ("streams[0].lifetime_us.shape", 2, "streams[0].lifetime_us", "bad parameters"),
    (
        "streams[0].lifetime_us",
        {"dist": "norm", "loc": 0, "scale": 10},
        "streams[0].lifetime_us",
        "negative lifetimes",
    ),
    ("streams[0].lifetime_us", -4, "streams[0].lifetime_us", ">= 0"),
    ("streams[0].free.kfree_rcu", 1.5, "streams[0].free.kfree_rcu", "<= 1"),
    ("streams[0].free.bulk", 0.5, "streams[0].free", "exceeds 1"),
    ("streams[0].free.kfree_rcu", 0.5, "streams[0].free.call_site", "required when"),
    ("streams[0].free.remote_node", 0.2, "streams[0].free.remote_node", "exceeds remote_cpu"),
    ("streams[0].free.oops", 1, "streams[0].free.oops", "unknown key"),
    ("streams[1].prefill", DELETE, "streams[1].prefill", "missing"),
    ("streams[1].prefill.used", {"dist": "expon"}, "streams[1].prefill.used.dist", "discrete"),
    ("streams[1].prefill.used", {"choice": {}}, "streams[1].prefill.used.choice", "at least"),
    ("streams[1].prefill.upper_bound", 0, "streams[1].prefill.upper_bound", ">= 1"),
    ("streams[1].prefill.upper_bound", 10**7, "streams[1].prefill.upper_bound", "<= 65536"),
    ("streams[1].burst", {"size": 3}, "streams[1].burst", "only for kind: alloc"),
    ("streams[1].free.remote_choice", "far", "streams[1].free.remote_choice", "random or next"),
    ("streams[2].free.event", "kmem_cache_free", "streams[2].free.event", "kfree"),
    ("streams[2].gfp", "GFP_KERNEL_ACCOUNT", "streams[2].gfp", "kmalloc-cg-64"),
    ("streams[2].bytes_req", 65, "streams[2].bytes_req", "<= 64"),
    ("streams[0].bytes_req", 8, "streams[0].bytes_req", "only for kmalloc"),
    ("streams[2].name", "single", "streams[2].name", "used twice"),
    ("streams[0].comm", "a-very-long-task-name", "streams[0].comm", "15 characters"),
]


@pytest.mark.parametrize(
    ("path", "value", "where", "words"), BAD, ids=[b[0] + "=" + repr(b[1])[:20] for b in BAD]
)
def test_bad_values_name_file_and_key(
    tmp_path: Path, path: str, value: Any, where: str, words: str
) -> None:
    f = write(tmp_path, mutate(path, value))
    with pytest.raises(InputError) as ei:
        load_spec(f)
    e = ei.value
    assert e.exit_code == EXIT_INPUT
    assert e.path == str(f)
    assert e.where == where, str(e)
    assert words in e.detail, str(e)
    assert str(f) in str(e) and where in str(e)


def test_invalid_scipy_parameters_are_refused_without_warnings(tmp_path: Path) -> None:
    # scipy warns ('invalid value encountered in multiply') before answering NaN for a scale
    # of 0: the refusal must be the only line the user sees
    import warnings

    f = write(tmp_path, mutate("streams[0].lifetime_us.scale", 0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InputError):
            load_spec(f)


def test_remote_frees_need_two_cpus_and_nodes(tmp_path: Path) -> None:
    d = mutate("cpus", 1)
    d["streams"] = [d["streams"][1]]
    with pytest.raises(InputError, match=r"streams\[0\]\.free\.remote_cpu: needs cpus >= 2"):
        parse_spec(d, "x.yaml")
    d = mutate("streams[1].free.remote_node", 0.1)
    with pytest.raises(InputError, match="remote_node: needs nodes >= 2"):
        parse_spec(d, "x.yaml")


def test_yaml_problems(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"w\.yaml: line 3: invalid YAML"):
        load_spec(write(tmp_path, "workload: 1\nname: [unclosed\n"))
    with pytest.raises(InputError, match="'cpus' is given twice"):
        load_spec(write(tmp_path, "workload: 1\ncpus: 2\ncpus: 4\n"))
    with pytest.raises(InputError, match="expected a mapping"):
        load_spec(write(tmp_path, "- just\n- a list\n"))
    with pytest.raises(InputError, match="no such workload file"):
        load_spec(tmp_path / "absent.yaml")


def test_yaml_1e6_is_a_number(tmp_path: Path) -> None:
    d = mutate("streams[0].rate", "1e6")  # YAML 1.1 reads 1e6 as a string
    assert parse_spec(d).streams[0].rate == 1e6


def test_kfree_null_streams() -> None:
    d = copy.deepcopy(BASE)
    d["streams"].append(
        {"name": "null", "kind": "kfree_null", "rate": 10, "call_site": "vm_area_free+0x1c"}
    )
    spec = parse_spec(d, "x.yaml")
    null = spec.streams[-1]
    assert null.kind == "kfree_null" and null.cache == "" and null.free.event == "kfree"
    d["streams"][-1]["cache"] = "maple_node"
    with pytest.raises(InputError, match=r"streams\[3\]\.cache: not for kind: kfree_null"):
        parse_spec(d, "x.yaml")


@pytest.mark.parametrize(
    ("dist", "params"),
    [
        ("lognorm", {"s": 1.13, "scale": 620.0}),
        ("lognorm", {"s": 0.2, "scale": 1.2, "loc": 3.0}),
        ("expon", {"scale": 40.0}),
        ("expon", {"scale": 1.25, "loc": 0.5}),
        ("gamma", {"a": 2.0, "scale": 10.0}),
    ],
)
def test_fast_lifetimes_are_scipys_bits(dist: str, params: dict[str, float]) -> None:
    """The in-place lifetime draws equal scipy.stats' rvs bit for bit (same bytes per seed)."""
    import scipy.stats

    from sheaftune.synth.spec import Lifetime, _fast_rvs

    for seed in range(3):
        want = getattr(scipy.stats, dist).rvs(
            size=10_001, random_state=np.random.default_rng(seed), **params
        )
        got = _fast_rvs(dist, params, np.random.default_rng(seed), 10_001)
        assert got is not None and got.tobytes() == np.asarray(want, dtype=float).tobytes()
        life = Lifetime(dist, params).sample(np.random.default_rng(seed), 10_001)
        assert life.tobytes() == np.clip(want, 0.0, 3.6e9).tobytes()
    assert _fast_rvs("weibull_min", {"c": 1.5}, np.random.default_rng(0), 3) is None


def test_per_record_sentinel_agrees() -> None:
    from sheaftune.synth import _replay, generate

    assert generate.PER_RECORD == _replay.PER_RECORD


def test_weighted_choices_are_rng_choice() -> None:
    """Count's compiled weighted choice draws exactly what ``rng.choice`` draws."""
    from sheaftune.synth.spec import Count

    c = Count(choices=(3, 5, 7, 10, 13), weights=(2458, 381, 898, 171, 489), lo=4, hi=12)
    for seed in range(3):
        w = np.asarray(c.weights, dtype=float)
        idx = np.random.default_rng(seed).choice(5, size=50_001, p=w / w.sum())
        want = np.clip(np.asarray(c.choices)[idx], 4, 12)
        assert np.array_equal(c.sample(np.random.default_rng(seed), 50_001), want)
