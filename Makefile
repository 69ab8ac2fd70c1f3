# Two commands: `make run` (demo pipeline) and `make test`. Both create and fill .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= all
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: test-compile test-resume run report run-sparse validate validate-tables claims bench docs test test-fast test-scenarios test-containers test-cuda-image test-slurm lint dry-run paper-dry-run clean-results

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES)

# Tables, figures and the HTML report from the results that exist (PRESET=demo by default).
PRESET ?= demo
report: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) tables figures --config preset=$(PRESET)
	$(BIN)/snakemake --report results/report.html --config preset=$(PRESET)

# The sparse suite at demo scale (HalfCheetah, 5% of the weights vs dense; about 15 min on 2 cores).
run-sparse: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) sparse --config preset=demo_sparse

# The reduced-budget validation study of both papers (config.yaml's `validate` preset; docs/reproducing.md): 30
# continual + 12 sparse jobs, 17.7 core-hours measured on engine 0.3.0 (results/validation/cost.md); outputs under
# results/validation/.
# VALIDATE=validate_revisit / validate_packnet / validate_sparse / validate_ant / validate_cw run the other studies
# (docs/evidence.md).
# Interrupt it any time: jobs resume from their checkpoints and a rerun only adds what is missing.
VALIDATE ?= validate
validate: $(STAMP)
	$(BIN)/python -m rlrepro adopt --preset $(VALIDATE)
	$(BIN)/snakemake --cores $(CORES) --keep-going --config preset=$(VALIDATE)

# The study's tables and figures from the runs that exist (committed ones included), training nothing.
validate-tables: $(STAMP)
	$(BIN)/python -m rlrepro adopt --preset $(VALIDATE)
	$(BIN)/snakemake --cores $(CORES) tables figures --configfile config/overlays/partial.yaml --config preset=$(VALIDATE)

# The papers' claims, each decided from the studies' committed tables: holds / does not hold / undecided at the
# study's budget (docs/evidence.md). Reads tables only; `make validate-tables VALIDATE=<preset>` rebuilds them.
STUDIES ?= validate validate_revisit validate_packnet validate_sparse validate_ant validate_cw
claims: $(STAMP)
	$(BIN)/python -m rlrepro claims $(addprefix --preset ,$(STUDIES)) --study engine-0.2.0=results/validation/engine-0.2.0 \
	  --compare engine-0.2.0,validate --out results/validation/claims.md

# Every benchmark of benchmarks/ (ratios measured in the same run; about 75 min on 2 cores, SB3 installed here).
bench: $(STAMP)
	$(BIN)/pip install --quiet -c requirements.lock -e ".[bench]"
	$(BIN)/python benchmarks/sac_update.py
	$(BIN)/python benchmarks/brax_collection.py
	$(BIN)/python benchmarks/pipeline.py
	$(BIN)/python benchmarks/sac_halfcheetah.py
	$(BIN)/python benchmarks/scaling.py

# The documentation site into site/ (docs/, mkdocs.yml). --strict: a broken link or anchor, or a page missing from the
# nav, fails the build. The reference pages are generated from the schema and registries as it builds (offline).
docs: $(STAMP)
	$(BIN)/pip install --quiet -c requirements.lock -e ".[docs]"
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=15 -m "not scenarios and not containers and not cuda_image and not slurm and not compile and not resume"

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not scenarios and not containers and not cuda_image and not slurm and not compile and not resume"

# The compiled update (engine.compile: true) of every method: one graph per branch, no break, no recompile, the eager
# function's numbers (about 10 min on 2 cores: each case pays its compile).
test-compile: $(STAMP)
	$(BIN)/python -m pytest -q -m compile tests/test_compiled_update.py

# Real training processes SIGKILLed at random moments and restarted (Brax, MuJoCo, MetaWorld): identical outputs.
test-resume: $(STAMP)
	$(BIN)/python -m pytest -q -m resume

test-scenarios: $(STAMP)
	$(BIN)/python -m pytest -q -m scenarios

# Real container build and runs (root; apt: podman buildah runc debootstrap uidmap fuse-overlayfs slirp4netns).
test-containers: $(STAMP)
	$(BIN)/python -m pytest -q -s -m containers tests/test_containers.py

# The CUDA image (docker/Dockerfile's default flavour) built and checked without a GPU: CUDA torch and JAX plugin
# present, `device: cuda` refused with the preflight's message. ~5 min and ~4 GB of downloads; not in CI.
test-cuda-image: $(STAMP)
	$(BIN)/python -m pytest -q -s -m cuda_image tests/test_containers.py

# A real one-node SLURM cluster (root; apt: slurmctld slurmd slurm-client munge).
test-slurm: $(STAMP)
	$(BIN)/python -m pytest -q -s -m slurm tests/test_slurm.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/hadolint docker/Dockerfile
	$(BIN)/snakemake --lint

dry-run: $(STAMP)
	$(BIN)/snakemake -n

paper-dry-run: $(STAMP)
	$(BIN)/snakemake -n --quiet rules --config preset=paper

clean-results:
	rm -rf results/runs results/sparse results/tables results/figures results/logs results/_ckpt results/benchmarks results/report.html
