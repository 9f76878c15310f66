# One entry point for set-up, demo and tests on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# torch is installed first so pip takes the build that lies on this machine's disk when there is one.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --upgrade pip setuptools wheel
	$(BIN)/pip install "torch>=2.2,<3" "torchvision>=0.17,<1"
	$(BIN)/pip install -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/yolocompress demo

test: $(STAMP)
	$(BIN)/python -m pytest tests

clean:
	rm -rf runs build *.egg-info
