# Two commands do all the set-up on a fresh clone:
#   make demo   trains on the bundled data/fashion with the bundled default module
#   make test   runs the whole test suite (slow tests with the real module included)
# Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast lint bench clean-venv

$(BIN)/retrain: pyproject.toml setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,beam,onnx,mediapipe,serve]'
	touch $@

demo: $(BIN)/retrain
	$(BIN)/python -m retrain --images data/fashion

lint: $(BIN)/retrain
	$(BIN)/ruff check retrain tests bench

# -n 2: one test process per core (pytest-xdist); each test is independent of the others.
test: lint
	$(BIN)/python -m pytest -n 2

test-fast: lint
	$(BIN)/python -m pytest -m "not slow" -n 2

bench: $(BIN)/retrain
	bash bench/run.sh

clean-venv:
	rm -rf $(VENV)
