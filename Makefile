# pos-offers: `make run` and `make test` work on a fresh clone; everything else builds on them.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROTO_SRC := $(wildcard proto/posoffers/v1/*.proto)
PROTO_STAMP := gen/.generated

.PHONY: all install proto run test test-fast lint fmt mypy bench clean ops-tools lock

all: lint test

# The venv holds exactly the versions in requirements.lock, each file checked against its hash (a tampered package
# cannot install); the project itself is installed editable.
$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) -c "import site, pathlib; pathlib.Path(site.getsitepackages()[0], 'pos_offers_gen.pth').write_text(str(pathlib.Path('gen').resolve()) + '\n')"
	touch $(STAMP)

install: $(STAMP) $(PROTO_STAMP)

# Generated code (python, grpc and mypy stubs) is reproducible from proto/ with the pinned grpcio-tools.
$(PROTO_STAMP): $(STAMP) $(PROTO_SRC)
	rm -rf gen && mkdir -p gen
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m grpc_tools.protoc -Iproto \
		--python_out=gen --grpc_python_out=gen --mypy_out=gen --mypy_grpc_out=gen $(PROTO_SRC)
	touch gen/posoffers/__init__.py gen/posoffers/v1/__init__.py gen/posoffers/py.typed
	touch $(PROTO_STAMP)

proto: $(PROTO_STAMP)

# Runs the service on embedded defaults: its own Redis, SQLite under var/, demo data.
run: install
	POS_OFFERS_DEMO_DATA=$${POS_OFFERS_DEMO_DATA:-1} $(PY) -m server

# promtool + prometheus for tests/ops (Debian's package; without root or apt those tests skip, saying why).
ops-tools:
	@bash scripts/ensure_prometheus.sh

test: install ops-tools
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -q -x -m "not postgres" tests/unit

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m scripts.metrics_doc --check
	$(PY) -m scripts.long_functions --max 60
	@bash scripts/buf_check.sh

fmt: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Starts the service and an echo server, drives them open-loop from another process, prints figures.
bench: install
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) gen var .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info

# After changing a pin in requirements.lock (or `.venv/bin/pip freeze --exclude-editable` into it): hash every file.
lock:
	$(PY) -m scripts.lock_hashes
