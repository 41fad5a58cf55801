PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SPACE ?= mobilenetv2_ulsam

.PHONY: setup test search lint bench clean

setup: $(STAMP)

# Re-installs only when the dependency declarations change.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

test: setup
	RAY_AUTH_MODE=disabled $(BIN)/python -m pytest -q -x --durations=15 $(PYTEST_ARGS)

search: setup
	RAY_AUTH_MODE=disabled $(BIN)/python search.py --space $(SPACE) $(ARGS)

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
