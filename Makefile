# Every install step of the project lives here. `make test` and `make demo` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q

.PHONY: setup setup-core data demo test clean

$(VENV)/.core:
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) torch==2.14.1 torchvision==0.29.1 || $(PIP) "torch>=2.1" torchvision
	$(PIP) -e '.[dev]'
	touch $@

# OpenMMLab: see ../shared/NOTES-openmmlab.md. mmpose's declared requirements pull chumpy, which
# does not build in isolation and is never imported, so mmpose goes in without them; xtcocotools is
# built against the installed numpy.
$(VENV)/.mm: $(VENV)/.core pyproject.toml
	$(PIP) -e '.[mm,dev]'
	$(PIP) cython
	$(PIP) --no-build-isolation --no-binary xtcocotools xtcocotools==1.14.3
	$(PIP) --no-deps mmpose==1.3.2
	touch $@

# mmcv-lite has no compiled ops; mmseg/mmpose/mmpretrain import them. Instead of building the full
# mmcv (~11 min on 2 cores, with a C++20 workaround), a stand-in for mmcv._ext becomes part of the
# venv: a .pth file that registers it at interpreter start (arsam/mmlab/mmcv_ext.py; nothing is
# written when a compiled mmcv._ext is present).
$(VENV)/.mmcv-ext: $(VENV)/.mm
	$(PY) -c "from arsam.mmlab.mmcv_ext import write_pth; print(write_pth())"
	touch $@

setup-core: $(VENV)/.core
setup: $(VENV)/.mm $(VENV)/.mmcv-ext

# Fashion-MNIST under data/FashionMNIST/raw (arsam/fashion_mnist.py; torchvision's FashionMNIST
# and mmpretrain's read it there): Debian's package dataset-fashion-mnist where apt-get runs as
# root, else torchvision's download (needs network); a clear error otherwise.
DEBIAN_FMNIST := /usr/share/datasets/fashion-mnist
data: $(VENV)/.core
	@if [ ! -d $(DEBIAN_FMNIST) ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
		{ apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; } || true; fi
	$(PY) -m arsam.fashion_mnist --root data

demo: $(VENV)/.core
	$(PY) -m arsam.demo

# the data is put in place first (CI: root with apt-get); where that cannot work (no root, no
# network) the tests that read it skip, saying why, and the rest still run
test: setup
	@$(MAKE) --no-print-directory data || echo "make data failed (above): the Fashion-MNIST tests skip"
	$(PY) -m pytest

clean:
	rm -rf $(VENV)
