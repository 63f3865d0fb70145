"""README's command-line flags: ``--cfg-options``, ``--resume`` and ``--amp`` (or its stand-in)
with every wrapper, through ``arsam-train`` and mmpretrain's and mmseg's ``tools/train.py``.

One config of OptimWrapper (tests/mm_registered.py's tiny model and data); ``--cfg-options``
switches it to each wrapper with its arguments and ``rho=0.02``. Per wrapper, ``arsam-train
--amp`` runs it whole (4 iterations); each tool runs it killed after its checkpoint at iteration
2, then ``--resume`` to the end. Every resumed run ends bit for bit as the whole run (weights,
the wrapper's state, the loss scaler's). Each tool runs its runs in one fresh interpreter."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mm_tiny import assert_equal_states

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
WRAPPERS = {  # the seven wrappers' options, as a user switches a config by --cfg-options
    "SAM": [],
    "ESAM": ["optim_wrapper.beta=0.6", "optim_wrapper.gamma=0.5"],
    "KSAM": ["optim_wrapper.k1=0.25", "optim_wrapper.k2=0.5"],
    "PeriodicSAM": ["optim_wrapper.k=2"],
    "LookSAM": ["optim_wrapper.k=2"],
    "MSAM": [],
    "ARSAM": ["optim_wrapper.schedule=fixed", "optim_wrapper.rate=0.5",
              "optim_wrapper.start_iter=1"],
}
CONFIG = """\
custom_imports = dict(imports=['arsam', 'mm_registered'], allow_failed_imports=False)
default_scope = 'mmengine'
randomness = dict(seed=0)
model = dict(type='FlagsTinyClassifier')
train_dataloader = dict(dataset=dict(type='FlagsTinyData'), batch_size=8, num_workers=0,
                        persistent_workers=False,
                        sampler=dict(type='InfiniteSampler', shuffle=False),
                        collate_fn=dict(type='default_collate'))
train_cfg = dict(by_epoch=False, max_iters=4)
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1, momentum=0.9))
param_scheduler = dict(type='MultiStepLR', milestones=[3], gamma=0.1, by_epoch=False, end=4)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
                     logger=dict(type='LoggerHook', interval=1))
log_processor = dict(by_epoch=False)
"""
KILLED = "_base_ = ['config.py']\ncustom_hooks = [dict(type='KillAt', iters=2)]\n"
# each tool's runs, in one interpreter: argv, and the exception it ends with (None: none)
DRIVER = """
import json, runpy, sys
tool, runs = sys.argv[1], json.loads(sys.argv[2])
for argv, raises in runs:
    sys.argv = [tool, *argv]
    try:
        if tool == 'arsam-train':
            from arsam.mmlab.train import main
            main(argv)
        else:
            runpy.run_path(tool, run_name='__main__')
        error = None
    except Exception as e:
        error = e
    if type(error).__name__ != (raises or 'NoneType'):
        raise RuntimeError(f'{argv} ended with {error!r}, expected {raises}') from error
    print('ENDED', json.dumps([argv[1], raises and str(error)]), flush=True)
"""
TOOLS = {  # per tool: the flags and options for mixed precision and a resumable checkpoint
    "arsam-train": (["--amp"], []),
    # --amp sets AmpOptimWrapper, then --cfg-options (merged after it) sets our type back
    "mmpretrain": (["--amp"], ["runner_type=ArsamRunner"]),
    "mmseg": ([], ["optim_wrapper.loss_scale=dynamic", "runner_type=ArsamRunner"]),  # no --amp
}


def tool_path(tool):
    if tool == "arsam-train":
        return tool
    return osp.join(osp.dirname(pytest.importorskip(tool).__file__), ".mim", "tools",
                    "train.py")


def argv(config, work_dir, tool, name, resume=False):
    """The command line of ``tool`` training ``config`` switched by ``--cfg-options`` to
    ``name``'s wrapper, with mixed precision (upstream tools: with ArsamRunner, which can load
    the checkpoint to resume; README)."""
    flags, options = TOOLS[tool]
    return [config, "--work-dir", str(work_dir), *flags, *(["--resume"] if resume else []),
            "--cfg-options", f"optim_wrapper.type={name}OptimWrapper", "optim_wrapper.rho=0.02",
            *WRAPPERS[name], f"experiment_name={tool}-{name}-{resume}", *options]


def run_tool(tool, runs, cwd):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, osp.join(ROOT, "tests")]),
               OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", DRIVER, tool_path(tool), json.dumps(runs)],
                         cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    ended = [json.loads(line[len("ENDED "):]) for line in out.stdout.splitlines()
             if line.startswith("ENDED ")]
    return ended, out.stdout


def final_state(work_dir):
    state = torch.load(osp.join(work_dir, "iter_4.pth"), map_location="cpu", weights_only=False)
    return state["state_dict"], state["optimizer"], state["meta"]["iter"]


@pytest.fixture(scope="module")
def whole_runs(tmp_path_factory):
    """Each wrapper's uninterrupted run, by ``arsam-train --amp --cfg-options ...``."""
    tmp = tmp_path_factory.mktemp("whole")
    (tmp / "config.py").write_text(CONFIG)
    runs = [(argv(str(tmp / "config.py"), tmp / name, "arsam-train", name), None)
            for name in WRAPPERS]
    assert "resumed" not in run_tool("arsam-train", runs, tmp)[1]
    return {name: final_state(tmp / name) for name in WRAPPERS}


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_every_wrapper_resumes_with_the_tools_flags(tool, whole_runs, tmp_path):
    (tmp_path / "config.py").write_text(CONFIG)
    (tmp_path / "killed.py").write_text(KILLED)
    runs = []
    for name in WRAPPERS:
        runs.append((argv(str(tmp_path / "killed.py"), tmp_path / name, tool, name), "Killed"))
        runs.append((argv(str(tmp_path / "config.py"), tmp_path / name, tool, name,
                          resume=True), None))
    if tool == "mmseg":  # the refusal README names
        runs.append(([str(tmp_path / "config.py"), "--work-dir", str(tmp_path / "amp"),
                      "--amp", "--cfg-options", "optim_wrapper.type=SAMOptimWrapper"],
                     "AssertionError"))
    ended, stdout = run_tool(tool, runs, tmp_path)
    assert len(ended) == len(runs)
    assert stdout.count("resumed epoch: 0, iter: 2") == len(WRAPPERS)  # from the checkpoints
    if tool == "mmseg":
        assert ended[-1][1] == ("`--amp` is only supported when the optimizer wrapper type is "
                                "`OptimWrapper` but got SAMOptimWrapper.")
    for name in WRAPPERS:
        weights, optimizer, iters = final_state(tmp_path / name)
        whole_weights, whole_optimizer, _ = whole_runs[name]
        assert iters == 4 and os.path.exists(tmp_path / name / "iter_2.pth")
        assert optimizer["loss_scaler"]["scale"] == 2.0 ** 16  # mixed precision was on
        assert optimizer["param_groups"][0]["rho"] == 0.02  # --cfg-options
        assert_equal_states(weights, whole_weights)
        assert_equal_states(optimizer, whole_optimizer)
