# The two commands a new user runs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# torch 2.13.0 is the CPU build this project is developed against; a torch already in the
# venv (for example a CUDA build a GPU user installed first) is kept.
TORCH  := torch==2.13.0

.PHONY: demo test venv clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install $(TORCH)
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(PY) -m pip install -e .
	touch $@

# torchattacks (the PGD family's oracle) without its declared dependencies: its metadata asks for
# torchvision and requests~=2.25.1, which would bring a CUDA torch 2.14 and downgrade requests;
# it imports neither (docs/usage.md, "Dependencies and why")
TORCHATTACKS := torchattacks==3.5.1

$(VENV)/.installed-test: pyproject.toml $(VENV)/.torch
	$(PY) -m pip install -e '.[test]'
	$(PY) -m pip install --no-deps $(TORCHATTACKS)
	touch $@ $(VENV)/.installed

venv: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/veilnet demo

test: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -n 2 --dist loadscope

clean:
	rm -rf $(VENV) runs
