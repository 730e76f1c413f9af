"""`quantlab run --ray-address`: the lab's steps as Ray tasks on a real local cluster (a head and a worker process on
127.0.0.1, tests/conftest.py), which declare their memory so that two that do not fit one node together never share
it. That a lab on the cluster makes the very artifacts and figures the local run makes: tests/test_sweep.py (its
labs are `quantlab run --ray-address` processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from tests.conftest import LAB_ARGS
from tests.helpers import run_cli

ENV = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")  # as the `cluster` fixture's


SCRIPT = textwrap.dedent("""
    import json, sys, time
    from quantlab.lab.ray_steps import RayRunner
    from quantlab.lab.scheduler import run_steps
    from quantlab.lab.stages import Step

    def span():
        import os, time
        import ray
        t0 = time.time()
        time.sleep(4)
        return [ray.get_runtime_context().get_node_id(), t0, time.time(), os.environ["QUANTLAB_THREADS"]]

    big = [Step(f"big{i}", span) for i in range(3)]
    small = [Step(f"small{i}", span) for i in range(2)]
    speed = Step("speed", span, needs=("big0",), exclusive=True)
    declared = {**{s.name: 2000.0 for s in big}, **{s.name: 200.0 for s in small}, "speed": 200.0}
    spans = {}
    with RayRunner(sys.argv[1], log=lambda s: None) as r:
        run_steps([*big, *small, speed], r.backend(lambda s: declared[s.name]),
                  lambda s, res, peak, secs, where: spans.__setitem__(s.name, res + [secs]))
        print(json.dumps({"spans": spans, "mine": r.node_id}))
""")


def test_steps_that_do_not_fit_one_node_together_never_share_it(cluster):
    """Each node offers 3 GiB to tasks: three steps declaring 2 GB each run one per node at a time (on both nodes), never
    two on one node at once; an exclusive step runs on the lab's node, alone, with every CPU of that node. Each step's
    seconds are its own 4 s, not the time Ray held it for a free node (the third big step waits ~4 s)."""
    p = subprocess.run([sys.executable, "-c", SCRIPT, cluster], capture_output=True, text=True, env=ENV, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    data = json.loads(p.stdout.strip().splitlines()[-1])
    spans = data["spans"]
    assert set(spans) == {"big0", "big1", "big2", "small0", "small1", "speed"}

    def overlap(a, b):
        return spans[a][1] < spans[b][2] and spans[b][1] < spans[a][2]

    bigs = ["big0", "big1", "big2"]
    assert len({spans[b][0] for b in bigs}) == 2  # the memory sent one of them to the other node
    for i, a in enumerate(bigs):
        for b in bigs[i + 1:]:
            assert not (spans[a][0] == spans[b][0] and overlap(a, b)), (a, b, spans)
    assert spans["speed"][0] == data["mine"] and spans["speed"][3] == "2"
    assert not any(overlap("speed", s) for s in spans if s != "speed")
    assert spans["speed"][1] >= spans["big0"][2]
    assert all(spans[s][3] == "1" for s in spans if s != "speed")
    assert all(3.9 <= spans[s][4] < 6.0 for s in spans), {s: spans[s][4] for s in spans}


ROWS = textwrap.dedent("""
    import json, sys
    import ray
    from quantlab.analyze.sensitivity import Bench
    from quantlab.quantize.groups import build_recipe

    ray.init(address=sys.argv[1], log_to_driver=False)
    recipes = [build_recipe(16, {"attn_o": 8}), build_recipe(16, {}, weight_overrides={"mlp_in": 4})]

    @ray.remote(num_cpus=2)  # as the lab's analyze step: every CPU of its node, while its actors need CPUs too
    def analyze_step(folder):
        import os
        bench = Bench(folder, tokens=40)
        res = bench.measure_all(recipes, on_ray=True)
        left = sorted(f for f in os.listdir(folder) if f.startswith(".analyze-"))
        bench.cleanup()
        return {"scores": res, "left": left}

    print(json.dumps(ray.get(analyze_step.remote(sys.argv[2]))))
""")


def test_sensitivity_rows_on_ray_actors_score_as_one_process(cluster, quantized_copy):
    """The search's rows measured by Ray actors (from inside a task holding its node's CPUs, as the lab's analyze step
    does) give the scores the bench gives measuring them itself: KL and perplexity within 1e-6 relative, top-1 and
    bytes equal; the actors' scratch files and the FP32 logits file are gone afterwards."""
    import pytest

    from quantlab.analyze.sensitivity import Bench
    from quantlab.quantize.groups import build_recipe

    folder, _ = quantized_copy
    p = subprocess.run([sys.executable, "-c", ROWS, cluster, str(folder)], capture_output=True, text=True, env=ENV,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["left"] == [".analyze-candidate.tflite"] or out["left"] == []  # the main bench's own scratch file only
    recipes = [build_recipe(16, {"attn_o": 8}), build_recipe(16, {}, weight_overrides={"mlp_in": 4})]
    alone = Bench(folder, tokens=40).measure_all(recipes)
    for a, b in zip(out["scores"], alone):
        assert a["kl"] == pytest.approx(b["kl"], rel=1e-6, abs=1e-9)
        assert a["perplexity"] == pytest.approx(b["perplexity"], rel=1e-6)
        assert a["top1_agreement"] == b["top1_agreement"] and a["bytes"] == b["bytes"]


def test_ray_address_where_nothing_answers_is_one_line_before_anything_runs(tmp_path):
    res = run_cli(["run", *LAB_ARGS, "--out", str(tmp_path / "r"), "--ray-address", "127.0.0.1:1"], timeout=120)
    assert res.rc == 2 and res.err.strip().startswith("quantlab: error: --ray-address 127.0.0.1:1: nothing answers")
    assert len(res.err.strip().splitlines()) == 1 and not (tmp_path / "r").exists()
