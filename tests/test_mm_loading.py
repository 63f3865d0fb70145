"""Checkpoint loading runs no code from the file: a checkpoint whose unpickling writes a file is
refused by every loading path we ship, and importing arsam changes no loader."""
import copy
import fractions
import os
import os.path as osp
import subprocess
import sys
import uuid

import pytest
import torch
from mm_tiny import TinyClassifier, make_model, make_runner, optim_cfg
from mmengine.config import Config
from mmengine.logging import HistoryBuffer
from mmengine.registry import MODELS
from mmengine.runner import Runner
from mmengine.runner.checkpoint import CheckpointLoader, load_checkpoint, load_from_http

import quant.mmlab  # noqa: F401  (QuantizedClassifier)
from arsam.mmlab import checkpoint as ckpt
from arsam.mmlab.classification import ImageClassifier
from arsam.mmlab.runner import ArsamFlexibleRunner, ArsamRunner
from arsam.mmlab.train import main

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DIGITS = osp.join(ROOT, "configs", "digits", "smallcnn_sgd.py")
REFUSED = r"(?s)Weights only load failed.*Unsupported global: GLOBAL exec was not an allowed"
#: imported before the snapshot of the process's settings: these torch modules allow-list their
#: own types (DTensor, exceptions, ...) when imported, whoever imports them
TORCH_MODULES = "torch.distributed.tensor, torch.distributed._serialization, torch._dynamo, " \
    "torch.nested"


class Payload:
    """Unpickled fully, it writes a file: a stand-in for any code a checkpoint could run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return exec, (f"open({self.path!r}, 'w').write('pwned')",)


@pytest.fixture(scope="module")
def run_checkpoint(tmp_path_factory):
    """A real checkpoint of a 2-iteration ARSAM run of the tiny classifier (message hub,
    optimizer state): loaded with the allow-list, it needs no other global."""
    work = tmp_path_factory.mktemp("run")
    make_runner(work, make_model(TinyClassifier), optim_cfg("ARSAMOptimWrapper", start_iter=1),
                max_iters=2, default_hooks=dict(checkpoint=dict(
                    type="CheckpointHook", interval=2, by_epoch=False))).train()
    return work / "iter_2.pth"


def with_payload(tmp_path, checkpoint, hub=True):
    """``checkpoint`` (a path or dict) with a payload that writes ``tmp_path/pwned``; ``hub``
    False drops the message hub, which mmengine's own loaders refuse first."""
    if not isinstance(checkpoint, dict):
        with ckpt.checkpoint_loading():
            checkpoint = torch.load(checkpoint, map_location="cpu")
    if not hub:
        checkpoint = {k: v for k, v in checkpoint.items() if k != "message_hub"}
    path = tmp_path / f"evil-{uuid.uuid4().hex}.pth"
    torch.save(dict(checkpoint, payload=Payload(tmp_path / "pwned")), path)
    return path


def test_the_payload_runs_when_unpickled_fully(tmp_path, run_checkpoint):
    """The premise of the tests below: unpickled fully, the checkpoint writes the file."""
    torch.load(with_payload(tmp_path, run_checkpoint), weights_only=False)
    assert (tmp_path / "pwned").read_text() == "pwned"


def test_import_arsam_replaces_no_loader_and_changes_no_setting(tmp_path):
    """In a fresh interpreter: mmengine's loaders, torch's safe globals, the environment and
    the module hooks are the same before and after importing every package we ship; the
    malicious checkpoint is then refused by mmengine's loader, as without arsam."""
    evil = with_payload(tmp_path, dict(state_dict={}))
    script = f"""
import os, torch, mmengine.runner, {TORCH_MODULES}
from mmengine.runner.checkpoint import CheckpointLoader
from torch.nn.modules import module
def state():
    return (dict((p, (f.__module__, f.__qualname__)) for p, f in CheckpointLoader._schemes.items()),
            torch.serialization.get_safe_globals(), torch.load, torch.hub.load_state_dict_from_url,
            dict((k, v) for k, v in os.environ.items() if k.startswith("TORCH_FORCE")),
            dict(module._global_forward_pre_hooks), dict(module._global_forward_hooks))
before = state()
import arsam, arsam.mmlab.classification, quant, quant.mmlab, seg, pose
assert state() == before, (before, state())
try:
    CheckpointLoader.load_checkpoint({str(evil)!r})
except Exception as e:
    print(type(e).__name__)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "UnpicklingError"
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("load, hub", [
    (lambda path: CheckpointLoader.load_checkpoint(str(path)), False),
    (lambda path: load_checkpoint(make_model(TinyClassifier), str(path)), False),
    (lambda path: ckpt.load_checkpoint(str(path)), True),
    (lambda path: MODELS.build(dict(type="QuantizedClassifier", fp_checkpoint=str(path), net=dict(
        type="small_cnn", num_classes=10, in_channels=1, width=16))), True),
], ids=["CheckpointLoader", "load_checkpoint", "arsam-load_checkpoint", "quant-fp_checkpoint"])
def test_loaders_refuse_the_payload_after_import_arsam(tmp_path, run_checkpoint, load, hub):
    """mmengine's loaders (as without arsam) and ours, which admit the message hub."""
    with pytest.raises(Exception, match=REFUSED) as info:
        load(with_payload(tmp_path, run_checkpoint, hub))
    assert type(info.value).__name__ == "UnpicklingError"
    assert not (tmp_path / "pwned").exists()


def runner(work_dir, runner_class=ArsamRunner, model=None, **kwargs):
    return make_runner(work_dir, model or make_model(TinyClassifier),
                       optim_cfg("SAMOptimWrapper"), max_iters=2, runner_class=runner_class,
                       **kwargs)


@pytest.mark.parametrize("runner_class", [ArsamRunner, ArsamFlexibleRunner, Runner])
@pytest.mark.parametrize("resume", [False, True], ids=["load_from", "resume"])
def test_runners_refuse_the_payload_before_training(tmp_path, run_checkpoint, runner_class,
                                                    resume):
    model = make_model(TinyClassifier)
    initial = copy.deepcopy(model.state_dict())
    settings = set(torch.serialization.get_safe_globals())
    evil = with_payload(tmp_path, run_checkpoint, hub=runner_class is not Runner)
    r = runner(tmp_path / "work", runner_class, model=model, load_from=str(evil), resume=resume)
    with pytest.raises(Exception, match=REFUSED):
        r.train()
    assert not (tmp_path / "pwned").exists() and r.iter == 0
    for key, value in initial.items():
        torch.testing.assert_close(r.model.state_dict()[key], value, rtol=0, atol=0, msg=key)
    assert set(torch.serialization.get_safe_globals()) == settings  # the scope is over
    assert not [k for k in os.environ if k.startswith("TORCH_FORCE")]


def test_pretrained_weights_load_weights_only(tmp_path, run_checkpoint):
    """``init_cfg=dict(type='Pretrained')`` runs in the Runner's init_weights."""
    model = make_model(TinyClassifier)
    model.init_cfg = dict(type="Pretrained", checkpoint=str(with_payload(tmp_path, run_checkpoint)))
    with pytest.raises(Exception, match=REFUSED):
        runner(tmp_path / "work", model=model).train()
    assert not (tmp_path / "pwned").exists()


def test_url_schemes_load_weights_only_in_the_scope(tmp_path):
    """mmengine's http loader (also behind torchvision://, open-mmlab://, mmcls://) asks
    torch.hub for full unpickling (weights_only=False); inside the scope it is weights-only."""
    url = with_payload(tmp_path, dict(state_dict={})).as_uri()  # file:// goes through urllib
    with ckpt.checkpoint_loading(), pytest.raises(Exception, match=REFUSED):
        load_from_http(url, model_dir=str(tmp_path / "hub"))
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("start", [["--load-from"], ["--resume"]])
def test_arsam_train_refuses_the_payload(tmp_path, start):
    model = MODELS.build(Config.fromfile(DIGITS).model)
    evil = with_payload(tmp_path, dict(meta=dict(epoch=0, iter=0), state_dict=model.state_dict()))
    with pytest.raises(Exception, match=REFUSED):
        main([DIGITS, "--work-dir", str(tmp_path / "work"), *start, str(evil), "--cfg-options",
              f"experiment_name={uuid.uuid4().hex}"])
    assert not (tmp_path / "pwned").exists()


def test_arsam_train_unsafe_load_pickle_is_the_named_opt_in(tmp_path):
    """A checkpoint with an object outside the allow-list: refused by default, loaded with
    --unsafe-load-pickle (which would run any code the file holds)."""
    model = MODELS.build(Config.fromfile(DIGITS).model)
    with torch.no_grad():
        model.net.fc.bias.fill_(0.5)
    path = tmp_path / "other.pth"
    torch.save(dict(meta=dict(note=fractions.Fraction(1, 3)), state_dict=model.state_dict()), path)
    args = [DIGITS, "--work-dir", str(tmp_path / "work"), "--load-from", str(path)]

    def options():
        return ["--cfg-options", "train_cfg.max_epochs=1", "default_hooks.checkpoint.interval=1",
                "train_cfg.val_interval=1", f"experiment_name={uuid.uuid4().hex}"]
    with pytest.raises(Exception, match=r"Unsupported global: GLOBAL fractions.Fraction"):
        main(args + options())
    with pytest.warns(UserWarning, match="TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"):
        main(args + ["--unsafe-load-pickle"] + options())
    with ckpt.checkpoint_loading():
        trained = torch.load(tmp_path / "work" / "epoch_1.pth")["state_dict"]
    assert not torch.equal(trained["net.fc.bias"], torch.full((10,), 0.5))  # it trained from it


def test_quant_loader_follows_an_enclosing_opt_in(tmp_path):
    """QuantizedClassifier loads inside the Runner's scope: weights-only unless it opted in."""
    net = dict(type="small_cnn", num_classes=10, in_channels=1, width=16)
    fp = ImageClassifier(net=net)
    torch.save(dict(meta=dict(note=fractions.Fraction(1, 3)), state_dict=fp.state_dict()),
               tmp_path / "fp.pth")
    cfg = dict(type="QuantizedClassifier", net=net, fp_checkpoint=str(tmp_path / "fp.pth"))
    with pytest.raises(Exception, match=r"Unsupported global: GLOBAL fractions.Fraction"):
        MODELS.build(cfg)
    with ckpt.checkpoint_loading(unsafe_load_pickle=True), pytest.warns(UserWarning):
        model = MODELS.build(cfg)
    torch.testing.assert_close(model.net.fc.weight, fp.net.fc.weight, rtol=0, atol=0)


@pytest.mark.parametrize("runner_class", [ArsamRunner, ArsamFlexibleRunner])
def test_resume_ignores_config_code_in_the_checkpoint_meta(tmp_path, run_checkpoint,
                                                           runner_class):
    """mmengine's resume executes ``meta['config']`` as a Python config file; a checkpoint of
    tensors and strings alone could run code through it. ArsamRunner drops it (and
    ArsamFlexibleRunner, for FlexibleRunner's resume)."""
    code = f"x = __import__('pathlib').Path({str(tmp_path / 'pwned')!r}).write_text('pwned')"
    Config.fromstring(code, file_format=".py")  # the premise: mmengine executes it
    assert (tmp_path / "pwned").read_text() == "pwned"
    (tmp_path / "pwned").unlink()
    with ckpt.checkpoint_loading():
        checkpoint = torch.load(run_checkpoint, map_location="cpu")
    checkpoint["meta"]["config"] = code
    torch.save(checkpoint, tmp_path / "config.pth")
    r = runner(tmp_path / "work", runner_class, load_from=str(tmp_path / "config.pth"),
               resume=True, train_cfg=dict(by_epoch=False, max_iters=3))
    r.train()
    assert r.iter == 3 and not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("extra, message", [
    (dict(statistics_methods=dict(mean=torch.Tensor)),
     r"a HistoryBuffer in the checkpoint holds more than its history"),
    (dict(statistics_methods=dict(mean=HistoryBuffer.__init__)),
     r"getattr\(<class 'arsam.mmlab.checkpoint._CheckedHistoryBuffer'>, '__init__'\) in the "
     r"checkpoint; refused \(only HistoryBuffer's min, max, current, mean\)"),
    (dict(note="x"), r"a HistoryBuffer in the checkpoint holds more than its history \(keys "
                     r"\['_count_history', '_log_history', 'max_length', 'note'\]"),
], ids=["foreign-method", "other-attribute", "other-key"])
def test_the_allow_list_admits_a_history_buffer_s_history_only(tmp_path, extra, message):
    forged = HistoryBuffer([1.0, 2.0], [1, 1])  # pickled with the state below
    state = dict(max_length=forged.max_length, _log_history=forged._log_history,
                 _count_history=forged._count_history, **extra)
    forged.__getstate__ = lambda: state
    torch.save(dict(buffer=forged), tmp_path / "forged.pth")
    methods = dict(HistoryBuffer._statistics_methods)
    with ckpt.checkpoint_loading(), pytest.raises(Exception, match=message):
        torch.load(tmp_path / "forged.pth")
    assert HistoryBuffer._statistics_methods == methods  # mmengine's class left alone
    torch.save(dict(buffer=HistoryBuffer([1.0, 2.0], [1, 1])), tmp_path / "real.pth")
    with ckpt.checkpoint_loading():
        loaded = torch.load(tmp_path / "real.pth")["buffer"]
    assert type(loaded) is HistoryBuffer and loaded.mean() == 1.5


def test_scopes_nest_and_restore_the_process_settings(monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # a user's global opt-out
    settings = set(torch.serialization.get_safe_globals())
    assert not settings & set(ckpt.SAFE_GLOBALS)
    with ckpt.checkpoint_loading():
        assert os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD") == "1"
        assert os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD") is None  # weights-only regardless
        assert set(torch.serialization.get_safe_globals()) == settings | set(ckpt.SAFE_GLOBALS)
        with ckpt.checkpoint_loading(unsafe_load_pickle=True):
            assert os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD") == "1"
            with ckpt.checkpoint_loading():  # None: the enclosing scope's choice
                assert os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD") == "1"
                assert os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD") is None
    assert os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD") == "1"
    assert os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD") is None
    assert set(torch.serialization.get_safe_globals()) == settings
    with pytest.raises(ValueError, match=r"^unsafe_load_pickle must be None or a bool, got 1$"):
        with ckpt.checkpoint_loading(1):
            pass


def test_arsam_runner_checks_its_opt_in(tmp_path):
    with pytest.raises(ValueError, match=r"^unsafe_load_pickle must be a bool, got 'yes'$"):
        runner(tmp_path, unsafe_load_pickle="yes")
