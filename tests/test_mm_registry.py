"""Our components' registered names cannot collide with the OpenMMLab libraries': the
classification components live in arsam's scope, every name we put elsewhere is one no library
uses, and each scope resolves its own classes."""
import pytest
from mmengine import registry as mm_registry
from mmengine.registry import DATASETS, METRICS, MODELS, DefaultScope, Registry

import arsam  # noqa: F401
import arsam.mmlab.classification  # noqa: F401
import pose  # noqa: F401
import quant.mmlab  # noqa: F401
import seg  # noqa: F401

LIBRARIES = ("mmseg", "mmpose", "mmdet", "mmpretrain")
OURS = ("arsam", "seg", "pose", "quant")


def nodes(registry):
    yield registry
    for child in registry.children.values():
        yield from nodes(child)


@pytest.fixture(scope="module")
def trees():
    """Every root registry of mmengine with all the libraries' modules registered."""
    for library in LIBRARIES:
        pytest.importorskip(library)
        __import__(f"{library}.utils", fromlist=["register_all_modules"]).register_all_modules(
            init_default_scope=False)
    return [r for r in vars(mm_registry).values() if isinstance(r, Registry) and r.parent is None]


def test_no_name_we_register_outside_our_scope_is_a_librarys(trees):
    """Names in mmengine's root or a library's scope, where an unscoped type resolves, are ours
    alone; names in the arsam scope are reached only as 'arsam.<Name>'."""
    shared = scoped = 0
    for root in trees:
        ours, theirs = set(), set()
        for node in nodes(root):
            for name, obj in node.module_dict.items():
                package = getattr(obj, "__module__", "").split(".")[0]
                if package not in OURS:
                    theirs.add(name)
                elif node.scope == "arsam":
                    scoped += 1
                else:
                    ours.add(name)
        assert not ours & theirs, f"{root.name}: {sorted(ours & theirs)}"
        shared += len(ours)
    assert shared >= 6 + 2 and scoped == 6  # the wrappers, seg/pose datasets; the classification


def test_classification_components_live_in_the_arsam_scope_only(trees):
    for registry, names in ((MODELS, ["ImageClassifier"]), (METRICS, ["Accuracy"]),
                            (DATASETS, ["CIFAR10", "CIFAR100", "ImageNetFolder", "Digits"])):
        arsam_node = registry.children["arsam"]
        for name in names:
            assert name not in registry.module_dict  # not in mmengine's root
            assert arsam_node.get(name).__module__.startswith("arsam.mmlab.classification")
            assert registry.get(f"arsam.{name}") is arsam_node.get(name)
    # mmpretrain's names resolve to mmpretrain's classes in its scope, ours by their scope there
    with DefaultScope.overwrite_default_scope("mmpretrain"):
        for registry, name in ((MODELS, "ImageClassifier"), (DATASETS, "CIFAR10"),
                               (METRICS, "Accuracy")):
            scoped = registry.children["mmpretrain"]
            assert scoped.get(name).__module__.startswith("mmpretrain.")
            assert scoped.get(f"arsam.{name}").__module__.startswith("arsam.")
