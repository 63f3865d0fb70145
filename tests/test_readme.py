"""The README's quick start runs as printed, and its links point at files that exist."""
import contextlib
import io
import os
import re

ROOT = os.path.join(os.path.dirname(__file__), "..")
MARKER = "<!-- quick-start: tests/test_readme.py runs this block -->"
def readme():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        return f.read()


def quick_start():
    """The ```python block right after the marker."""
    text = readme()
    assert text.count(MARKER) == 1
    after = text.split(MARKER, 1)[1]
    match = re.match(r"\s*```python\n(.*?)\n```", after, re.S)
    assert match, "the marker must be followed by a ```python block"
    return match.group(1)


def test_quick_start_runs_and_trains():
    out = io.StringIO()
    namespace = {}
    with contextlib.redirect_stdout(out):
        exec(compile(quick_start(), "README.md quick start", "exec"), namespace)
    line = out.getvalue().strip()
    match = re.fullmatch(r"test accuracy (\d+\.\d)%, SAM gradients on (\d+) of (\d+) steps", line)
    assert match, line
    accuracy, sampled, steps = float(match[1]), int(match[2]), int(match[3])
    per_epoch = namespace["steps_per_epoch"]
    assert steps == 6 * per_epoch == 6 * (1437 // 32)
    assert 3 * per_epoch <= sampled < steps  # 3 epochs of SAM, then ARSAM reuses the PSF
    assert accuracy > 80.0  # 6 epochs on clean digits learn them (chance: 10 %)


def test_local_links_exist():
    links = re.findall(r"\]\(((?!https?://)[^)#]+)\)", readme())
    assert links
    missing = {link for link in links if not os.path.exists(os.path.join(ROOT, link))}
    assert not missing
