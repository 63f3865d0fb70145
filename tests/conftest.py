import sys

import pytest


@pytest.fixture(autouse=True)
def no_leaked_default_scope():
    """mmengine's Runner sets a process-global default scope; tests must not inherit one."""
    yield
    if "mmengine.registry" in sys.modules:
        sys.modules["mmengine.registry"].DefaultScope._instance_dict.clear()
