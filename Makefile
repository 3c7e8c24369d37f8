# Two commands do everything on a fresh machine with Python 3.11:
#   make demo   install, then `dvc repro` on the profile in params.yaml (default: CPU demo)
#   make test   install, then the whole test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test contact-sheet bench-render clean

$(STAMP): pyproject.toml
	@# open3d's import needs Debian's libusb-1.0-0; install it when we can (CI and dev machines run as root)
	@ldconfig -p | grep -q libusb-1.0 || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  (apt-get install -y -q libusb-1.0-0 >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q libusb-1.0-0 >/dev/null)); } || \
	  echo "warning: libusb-1.0-0 missing; open3d (TSDF meshes) will not import: apt-get install libusb-1.0-0"
	@# the web demo's browser test drives Debian's chromium through chromium-driver (selenium comes from .[dev])
	@command -v chromedriver >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  (apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null)); } || \
	  echo "warning: chromium/chromium-driver missing; the demo's browser test will be skipped: apt-get install chromium chromium-driver"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the CPU build of torch first, and the torchvision made for it (lpips needs torchvision; an unpinned one
	# pulls the newest torch, a multi-GB CUDA build)
	$(PY) -m pip install -q torch==2.13.0 torchvision==0.28.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	@test -d .dvc || $(VENV)/bin/dvc init -q --no-scm
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/dvc repro

test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n 2 -q --durations=15

contact-sheet: install
	$(PY) -m anyhead.contact_sheet --n 16 --out docs/images/heads_contact_sheet.png

bench-render: install
	$(PY) -m benchmarks.bench_render

clean:
	rm -rf $(VENV) .pytest_cache
