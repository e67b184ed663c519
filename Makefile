# Two commands (see README):
#   make all    create .venv if missing, install, run every numbered notebook on the embedded
#               default profile (in place), writing figures/ and results/default/
#   make test   create .venv if missing, install, run pytest and nbval over a temporary copy of the
#               notebooks (empty cache, results and figures there; leaves the work tree as it was)
#   make timing notebook 05 with RETIME=True: every method (Retrain too) timed again in one run,
#               into runs/default/05_retime.ipynb and results/default/efficiency.csv
# python3.11 where there is one, else python3 (>= 3.10); or `make PYTHON=/path/to/python`
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
STRIP := $(BIN)/nbstripout --keep-output --keep-count --extra-keys "metadata.papermill cell.metadata.papermill cell.metadata.execution metadata.widgets"

.PHONY: all install test unit nbval notebooks timing benchmark clean-cache

all: notebooks

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

notebooks: install
	@for nb in $(NOTEBOOKS); do \
	  echo "== $$nb (default profile)"; \
	  $(BIN)/papermill "$$nb" "$$nb" --cwd notebooks -k python3 --no-progress-bar || exit 1; \
	  $(STRIP) "$$nb" || exit 1; \
	done
	$(BIN)/python -m cu.report results/default --readme README.md > /dev/null
	$(BIN)/python -m cu.report --forgetting --readme README.md > /dev/null

test: unit nbval

unit: install
	MPLBACKEND=Agg $(BIN)/python -m pytest tests -q

# nbval replays a copy of the notebooks in a temporary folder: their relative CACHE_DIR, RESULTS_DIR and
# FIGURES_DIR (../checkpoints, ../results, ../figures) then point into it, so every model is computed
# from scratch by the code under test and nothing tracked is rewritten; CUDA_VISIBLE_DEVICES= keeps
# DEVICE=auto on the CPU, where the committed outputs were made.
nbval: install
	@tmp=$$(mktemp -d) && cp -r notebooks "$$tmp/" && \
	  CUDA_VISIBLE_DEVICES= $(BIN)/python -m pytest --nbval "$$tmp/notebooks" --nbval-current-env \
	    --nbval-sanitize-with tests/nbval_sanitize.cfg -q -p no:cacheprovider --rootdir "$$tmp"; \
	  rc=$$?; rm -rf "$$tmp"; exit $$rc

timing: install
	mkdir -p runs/default
	$(BIN)/papermill notebooks/05_efficiency.ipynb runs/default/05_retime.ipynb --cwd notebooks -k python3 \
	  --no-progress-bar -p RETIME True

benchmark: install
	$(BIN)/python benchmarks/train_loop.py

clean-cache:
	rm -rf checkpoints
