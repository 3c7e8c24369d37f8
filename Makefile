# Two commands do everything on a fresh machine with Python 3.11:
#   make demo   install, then `dvc repro` on the profile in params.yaml (default: CPU demo)
#   make test   install, then the whole test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test contact-sheet bench-render clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the CPU build of torch first, so nothing pulls a multi-GB CUDA build
	$(PY) -m pip install -q torch==2.13.0 || $(PY) -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	@test -d .dvc || $(VENV)/bin/dvc init -q --no-scm
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/dvc repro

test: install
	$(PY) -m pytest -n 2 -q --durations=15

contact-sheet: install
	$(PY) -m anyhead.contact_sheet --n 16 --out docs/images/heads_contact_sheet.png

clean:
	rm -rf $(VENV) .pytest_cache
