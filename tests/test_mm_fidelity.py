"""The fidelity options through mmengine's Runner equal the core given the same information:
ASAM learns the biases from the model the wrapper sees, K-SAM* the run's length from the loop."""
import pytest
from mm_tiny import (PerSampleClassifier, TinyClassifier, assert_same_weights, make_model,
                     make_runner, optim_cfg, reference)

import arsam

STEPS = 4


@pytest.mark.parametrize("name, kwargs, model_class", [
    ("SAM", dict(rho=0.5, adaptive=True), TinyClassifier),                     # eta 0.01
    ("SAM", dict(rho=0.5, adaptive=True, eta=0.1), TinyClassifier),
    ("ESAM", dict(rho=0.05, beta=0.5, gamma=0.5, radius="eq6"), PerSampleClassifier),
    ("ESAM", dict(rho=0.05, beta=0.5, gamma=0.5, adaptive=True), PerSampleClassifier),
])
def test_runner_steps_equal_core_steps(tmp_path, name, kwargs, model_class):
    """The reference core is given ``model`` (ASAM: T = 1 on conv.bias, bn.bias and fc.bias);
    the Runner's core gets it from the wrapper."""
    model = make_model(model_class)
    expected, _ = reference(model, getattr(arsam, name), STEPS, **kwargs)
    runner = make_runner(tmp_path, model, optim_cfg(f"{name}OptimWrapper", **kwargs),
                         max_iters=STEPS)
    runner.train()
    assert_same_weights(runner.model, expected)
    core, net = runner.optim_wrapper.optimizer, runner.model
    if kwargs.get("adaptive"):
        assert core._bias_ids() == {id(net.conv.bias), id(net.bn.bias), id(net.fc.bias)}


def test_ksam_star_halves_k2_at_the_midpoint_of_the_runner_loop(tmp_path):
    """k2_halve_at=0.5 of max_iters=4: K2 = 4 of 8 for two steps, then 2; the same steps as the
    core told total_steps=4."""
    kwargs = dict(rho=0.05, k1=0.25, k2=0.5, k2_halve_at=0.5)
    model = make_model(PerSampleClassifier)
    expected, stats = reference(model, arsam.KSAM, STEPS, total_steps=STEPS, **kwargs)
    assert [s["backward_samples"] for s in stats] == [2 + 4, 2 + 4, 2 + 2, 2 + 2]
    runner = make_runner(tmp_path, model, optim_cfg("KSAMOptimWrapper", **kwargs),
                         max_iters=STEPS)
    runner.train()
    assert_same_weights(runner.model, expected)
    assert runner.optim_wrapper.optimizer.total_steps == STEPS
