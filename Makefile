# Two commands do all the set-up: `make repro` (runs the pipeline) and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build lies on disk on our machines; on a GPU machine use e.g. TORCH="torch>=2.2".
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: install repro paper yaleb grid seeds test format bench clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)" "setuptools<81" wheel
	# face_recognition declares `dlib` (source-only, 10+ min compile); dlib-bin provides it.
	$(BIN)/python -m pip install --quiet --no-deps "face_recognition==1.3.0"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Stage commands call `python`: put the venv first on PATH so they use it.
RUN    := PATH="$(abspath $(BIN)):$$PATH"

repro: $(STAMP)
	$(RUN) dvc repro

# The grid of the paper's Tables 2 and 3: arch x {end-to-end (A), encoding C}, 2 at a time.
# SEEDS=3: every cell a seed group of 3 trainings (opt-in; the table then gives the noise).
grid: $(STAMP)
	$(RUN) deepflash grid queue --run 2 $(if $(SEEDS),--seeds $(SEEDS))
	$(RUN) deepflash grid table --out reports/grid.md

# N seeds of one configuration as DVC experiments seeds-<arch>-<enc>-seed<k>, 2 at a time, one
# MLflow parent run over them: make seeds [SEEDS=3] [ARCH=deepflash] [ENC=C] [SET="-S k=v ..."]
seeds: $(STAMP)
	$(RUN) deepflash grid queue --prefix seeds --archs $(or $(ARCH),deepflash) \
		--encodings $(or $(ENC),C) --seeds $(or $(SEEDS),3) --run 2 $(SET)
	$(RUN) deepflash grid table --out reports/grid.md

# The paper's full settings (params-paper.yaml) as one DVC experiment.
paper: $(STAMP)
	$(RUN) dvc exp run -n paper $$($(BIN)/deepflash params-overrides params-paper.yaml)

# Extended Yale B (params-yaleb.yaml) as one DVC experiment on the raw folder given as RAW
# (the folder holding CroppedYale/yaleBNN/): make yaleb RAW=/data/yaleb
# ENC=A or ENC=B: the same budget with another encoding (experiment yaleb-A, yaleb-B).
yaleb: $(STAMP)
	@test -n "$(RAW)" || { echo "usage: make yaleb RAW=<folder with CroppedYale/yaleBNN/*.pgm> [ENC=A|B|C]"; exit 2; }
	@test -d "$(RAW)" || { echo "make yaleb: RAW=$(RAW) is not a folder"; exit 2; }
	$(RUN) dvc exp run -n yaleb$(if $(ENC),-$(ENC)) \
		$$($(BIN)/deepflash params-overrides params-yaleb.yaml) \
		-S data.raw_dir=$(abspath $(RAW)) $(if $(ENC),-S loss.encoding=$(ENC))

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(RUN) python -m pytest -q --durations=15

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(RUN) python $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
