# Set-up and the two everyday jobs. Each target creates .venv if missing and reuses it otherwise.
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin
# PyTorch's CPU wheels; where that index is out of reach, torch==2.13.0 comes
# from the package index pip is configured with (PyPI's Linux wheel is the multi-GB CUDA build).
TORCH_CPU_INDEX = https://download.pytorch.org/whl/cpu

.PHONY: setup embed test

$(BIN)/exlm-chem: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
	if $(BIN)/python -c "import urllib.request as u; u.urlopen('$(TORCH_CPU_INDEX)/torch/', timeout=10)" 2>/dev/null; \
	then $(BIN)/python -m pip install -q torch==2.13.0 --index-url $(TORCH_CPU_INDEX); \
	else $(BIN)/python -m pip install -q torch==2.13.0; fi
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

setup: $(BIN)/exlm-chem

embed: setup
	$(BIN)/exlm-chem embed data/drugs.csv -o data/drugs.embeddings.parquet --overwrite

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q
