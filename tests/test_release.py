"""Release hygiene: the version, `python -m arsam`, the license, the changelog, py.typed."""
import importlib.metadata
import os
import re
import subprocess
import sys

import torch
from mmengine.registry import OPTIM_WRAPPERS

import arsam
from arsam.schedules import SCHEDULES

ROOT = os.path.join(os.path.dirname(__file__), "..")


def read(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return f.read()


def pyproject_field(name):
    return re.search(rf'^{name} = (.*)$', read("pyproject.toml"), re.M).group(1)


def test_version_comes_from_the_package_metadata():
    assert arsam.__version__ == importlib.metadata.version("arsam")
    assert pyproject_field("version") == f'"{arsam.__version__}"'


def test_python_m_arsam_prints_version_environment_and_registered_names():
    out = subprocess.run([sys.executable, "-m", "arsam"], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0] == f"arsam {arsam.__version__} ({os.path.dirname(arsam.__file__)})"
    assert out[1].startswith(f"python {sys.version.split()[0]} (")
    versions = dict(item.rsplit(" ", 1) for item in out[2].split(", "))
    assert list(versions) == ["torch", "torchvision", "mmengine", "mmcv", "mmseg", "mmpose",
                              "mmpretrain"]
    assert versions["torch"] == importlib.metadata.version("torch")
    assert versions["mmseg"] == importlib.metadata.version("mmsegmentation")
    assert versions["mmpose"] == importlib.metadata.version("mmpose")
    device = r"cuda \(.+\)" if torch.cuda.is_available() else r"cpu \(\d+ threads; no CUDA device\)"
    assert re.fullmatch(f"device: {device}", out[3]), out[3]
    assert out[4] == ("optimizers: SAM, ESAM, KSAM, PeriodicSAM, LookSAM, MSAM, VSAM (= ARSAM), "
                      "ARSAM")
    assert out[5] == "ARSAM schedules: vsam, fixed, matched" and list(SCHEDULES) == [
        "vsam", "fixed", "matched"]
    wrappers = out[6].removeprefix("mmengine optim wrappers: ").split(", ")
    assert sorted(wrappers) == sorted(
        [f"{name}OptimWrapper" for name in arsam.OPTIMIZERS if name != "VSAM"]
        + ["VSAMOptimWrapper (= ARSAMOptimWrapper)"])
    for name in wrappers:
        assert OPTIM_WRAPPERS.get(name.split()[0]).__module__ == "arsam.mmlab.wrappers"
    assert len(out) == 7


def test_license_matches_pyproject():
    assert pyproject_field("license") == '{text = "Apache-2.0"}'
    text = read("LICENSE")
    assert text.split()[:5] == ["Apache", "License", "Version", "2.0,", "January"]
    assert "END OF TERMS AND CONDITIONS" in text


def test_changelog_starts_with_this_version():
    headings = re.findall(r"^## (\S+)", read("CHANGELOG.md"), re.M)
    assert headings[0] == arsam.__version__


def test_typed_packages_ship_py_typed():
    assert re.search(r'^\[tool\.setuptools\.package-data\]\narsam = \["py\.typed"\]\n'
                     r'quant = \["py\.typed"\]$', read("pyproject.toml"), re.M)
    for package in ("arsam", "quant"):
        assert os.path.isfile(os.path.join(ROOT, package, "py.typed"))
