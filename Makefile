# Every target sets itself up on a fresh machine: .venv, the project, and the
# Debian packages the tests need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORKSPACE ?= demo-workspace

.PHONY: install constraints test test-fast demo console bench clean system-deps platform-env

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The versions every host installs with (constraints.txt, written by `make constraints`). ACCELERATOR=cuda
# installs the CUDA build of TensorFlow (extra `gpu`) instead of the CPU build (extra `cpu`), as a server's
# "accelerator" does for bootstrap (remote/config.py ACCELERATOR_EXTRAS); never both in one venv.
ACCELERATOR ?= cpu
TF_EXTRA = $(if $(filter cuda,$(ACCELERATOR)),gpu,cpu)

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,$(TF_EXTRA),ray]'
	touch $(STAMP)

install: $(STAMP)

constraints: $(STAMP)
	$(BIN)/python scripts/write_constraints.py

# openssh-server provides the real sshd the remote/console tests talk to. chromium draws the HTML report
# in tests/test_report.py; when it cannot be installed that test is skipped, so a failure here is only a note.
system-deps:
	@command -v /usr/sbin/sshd >/dev/null 2>&1 || { \
	  echo "installing openssh-server"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq openssh-server >/dev/null; }
	@command -v /usr/bin/chromium >/dev/null 2>&1 || { \
	  echo "installing chromium"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  { $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; } \
	    || echo "note: chromium could not be installed; the report's browser test will be skipped"; }

# The platform's runtime (Python 3.10 + TensorFlow 2.10) for the Epoch File tests; created once, kept.
platform-env:
	@bash scripts/platform_env.sh

# One pytest worker per core (pytest-xdist), a whole test file per worker so module fixtures are built
# once: most tests wait on sshd, subprocesses or TensorFlow start-up, so two workers on two cores take
# about 60% of the serial time. PYTEST_WORKERS=0 runs them in this process.
PYTEST_WORKERS ?= auto
PYTEST_PARALLEL = $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile)

test: install system-deps platform-env
	$(BIN)/python -m pytest -q $(PYTEST_PARALLEL)

test-fast: install system-deps platform-env
	$(BIN)/python -m pytest -q $(PYTEST_PARALLEL) -m "not slow"

demo: install
	bash scripts/demo.sh $(WORKSPACE)

console: install
	$(BIN)/epoch-console

# bench_training.py's default covers every family at the default profile (hours on a small CPU for the
# recurrent ones): BENCH_TRAINING_ARGS limits it; on a GPU machine `bash bench/gpu_check.sh` runs it all.
BENCH_TRAINING_ARGS ?= --families DNN,CDNN,CNN
bench: install
	for f in bench/bench_*.py; do \
	  case $$f in *bench_training.py) args="$(BENCH_TRAINING_ARGS)";; *) args="";; esac; \
	  $(BIN)/python $$f $$args || exit 1; done

clean:
	rm -rf $(VENV) .venv-tf210 $(WORKSPACE) .pytest_cache
