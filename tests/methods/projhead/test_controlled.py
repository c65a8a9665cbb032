"""The cpu-theory preset: its arms are readouts that differ only where they say, its floors and headline are
the spec's controlled experiments, and shrunken runs show each effect (diagonal ReLU, feature-drop sweep)."""

import pytest
import torch

from methods.projhead import PRESETS
from methods.projhead.controlled import DROPS, LINEAR, RELU, run_linear, run_relu


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_cpu_theory_arms_floors_and_headline():
    exp = PRESETS["cpu-theory"]
    arms = exp.arms
    pairs = [("relu_post", "relu_pre")] + [(f"linear_{t}_post", f"linear_{t}_pre") for t in DROPS]
    for post, pre in pairs:  # a pre/post pair is one training read at two layers
        assert {k for k in arms[post] if arms[post][k] != arms[pre].get(k)} == {"readout"}
    assert [arms[f"linear_{t}_pre"]["drop"] for t in DROPS] == [0.0, 0.5, 0.75, 0.9]
    assert arms["untrained"] == {**arms["relu_post"], "untrained": True}
    assert arms["untrained_linear"] == {**arms["linear_p90_post"], "untrained": True}
    floors = exp.floor(list(arms))
    assert [f["arm"] for f in floors] == ["untrained", "untrained_linear"]
    assert all(f["metric"] == "loss" and f["direction"] == "less" for f in floors)
    assert set(floors[1]["arms"]) == {a for a in arms if a.startswith("linear_")}
    assert [(c.baseline, c.method, c.metric) for c in exp.headline] == [
        ("relu_post", "relu_pre", "probe_magnitude"),
        ("linear_p90_post", "linear_p90_pre", "relative_weight"),
    ]
    assert all(c.direction == "greater" for c in exp.comparisons)


def test_feature_drop_sweep_follows_the_square_root_law(one_thread):
    """Pre/post relative weights of the dropped feature: pre = √post at every p (balanced start), the gap
    grows with p, and training lowers the population loss far below the start's."""
    gaps = []
    for p in (0.0, 0.9):
        cfg = {**LINEAR, "drop": p, "probe_test": 300}
        pre, post = run_linear({**cfg, "readout": "pre"}, 0), run_linear({**cfg, "readout": "post"}, 0)
        assert pre["relative_weight"] == pytest.approx(post["relative_weight"] ** 0.5, rel=1e-6)
        assert pre["loss"] == post["loss"] < run_linear({**cfg, "readout": "post", "untrained": True}, 0)["loss"] - 1
        gaps.append(pre["relative_weight"] - post["relative_weight"])
    assert 0 < gaps[0] < gaps[1]


def test_diagonal_relu_output_loses_magnitudes_its_hidden_layer_keeps(one_thread):
    cfg = {**RELU, "steps": 600, "probe_test": 500}
    pre, post = run_relu({**cfg, "readout": "pre"}, 0), run_relu({**cfg, "readout": "post"}, 0)
    start = run_relu({**cfg, "readout": "post", "untrained": True}, 0)
    assert pre["loss"] == post["loss"] < start["loss"] - 1  # one trained network, two readouts
    assert pre["probe_magnitude"] > 0.95 and pre["absent_magnitudes"] == 0
    assert post["absent_magnitudes"] >= 1 and post["probe_magnitude"] < pre["probe_magnitude"] - 0.1
