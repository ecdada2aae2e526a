# Every target installs what it needs first, so each works on a fresh machine.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
NODE_DIR := tests/interop/node
NODE_STAMP := $(NODE_DIR)/node_modules/.installed

.PHONY: demo test install sysdeps lint typecheck unit bench clean vectors

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

$(NODE_STAMP): $(NODE_DIR)/package.json
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build
	touch $@

install: $(STAMP) $(NODE_STAMP) sysdeps

# The official SDK's tests run in a network namespace (ip netns + veth): iproute2 is needed.
sysdeps:
	@command -v ip >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq iproute2)

demo: $(STAMP)
	$(BIN)/livekit-rpc demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: install
	PYTHONASYNCIODEBUG=1 $(BIN)/pytest -q

test: install lint typecheck unit

vectors: $(STAMP)
	$(BIN)/python spec/vectors.py

bench: install
	$(BIN)/python bench/streams.py

clean:
	rm -rf $(VENV) $(NODE_DIR)/node_modules $(NODE_DIR)/dist
