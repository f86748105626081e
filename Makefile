# irep3d: `make demo` (the main job end to end on a built-in model) and `make test`.
# Both create .venv at the repo root and install everything they need into it.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.irep3d-installed
DEMO_OUT ?= out/demo

.PHONY: demo test test-fast lint bench clean venv sysdeps

venv: $(STAMP)

# bpy (Blender 5.0 as a Python module, the `blender` extra) renders scenes when no Blender
# binary is installed, and the add-on tests run against it.
# torch: the CPU build (torch==2.13.0) unless an NVIDIA GPU answers nvidia-smi, then the
# default CUDA build from PyPI. Installed before the package so pip never pulls a CUDA
# build just to satisfy `torch>=2.1` on a CPU machine.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	  $(PY) -m pip install -q torch; \
	else \
	  $(PY) -m pip install -q torch==2.13.0; \
	fi
	$(PY) -m pip install -q -e '.[dev,blender,ray,live]'
	touch $(STAMP)

# Debian tools the tests use: exrheader and oiiotool check our EXR files independently;
# chromium is the real browser the explorer's page is tested in (Playwright drives it:
# Playwright's own browser download cannot work here).
sysdeps:
	@if ! command -v exrheader >/dev/null 2>&1 || ! command -v oiiotool >/dev/null 2>&1 \
	    || ! command -v chromium >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && apt-get install -y -qq openexr openimageio-tools chromium >/dev/null; \
	  else \
	    echo "note: install Debian's openexr, openimageio-tools and chromium (as root) for the tests"; \
	  fi; \
	fi

IREP3D := $(VENV)/bin/irep3d
DEMO_MODEL := builtin:sg3t-256
DEMO_LAYER := L10_276_64

# The explorer, started as a user starts it, asked for its model and layers, then stopped.
define EXPLORE_CHECK
import json, signal, subprocess, sys, time, urllib.request
port, out = 8766, sys.argv[2]
proc = subprocess.Popen([sys.executable, "-m", "irep3d", "explore", sys.argv[1], "--port", str(port), "--out", out])
try:
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/layers", timeout=2) as reply:
                layers = json.loads(reply.read())
            break
        except OSError:
            time.sleep(0.1)
    else:
        sys.exit("the explorer did not answer")
    print(f"the explorer answers at http://127.0.0.1:{port}/: {len(layers)} layers of {sys.argv[1]}")
finally:
    proc.send_signal(signal.SIGINT)
    proc.wait(30)
endef
export EXPLORE_CHECK

demo: $(STAMP)
	mkdir -p $(DEMO_OUT)
	$(IREP3D) models
	$(IREP3D) layers $(DEMO_MODEL)
	$(IREP3D) convert $(DEMO_MODEL) $(DEMO_OUT)/sg3t-256.safetensors
	$(IREP3D) channels $(DEMO_OUT)/sg3t-256.safetensors --layer $(DEMO_LAYER) --seed 42 --out $(DEMO_OUT)/$(DEMO_LAYER)-sheet.png
	$(IREP3D) maps $(DEMO_OUT)/sg3t-256.safetensors --layer $(DEMO_LAYER) --channels auto --seeds 3,17,42,7 \
	  --frames-per-seed 15 --crop-margin --out $(DEMO_OUT)/maps --name demo_clip
	$(IREP3D) preview $(DEMO_OUT)/maps/demo_clip --out $(DEMO_OUT)/demo_clip.gif
	$(IREP3D) pack $(DEMO_MODEL) --layers L5_84_64,L7_148_64,L9_148_64 --clips-per-layer 2 --seeds-mode locked \
	  --seeds 0-3 --frames-per-seed 8 --out $(DEMO_OUT)/pack-locked
	$(IREP3D) pack $(DEMO_MODEL) --layers L5_84_64,L7_148_64,L9_148_64 --clips-per-layer 2 --seeds-mode locked \
	  --seeds 0-3 --frames-per-seed 8 --out $(DEMO_OUT)/pack-farm --ray local
	diff -rq $(DEMO_OUT)/pack-locked $(DEMO_OUT)/pack-farm && echo "the farm's pack is byte for byte the local pack"
	$(IREP3D) blender build $(DEMO_OUT)/maps/demo_clip --preset edge-point-light --out $(DEMO_OUT)/demo_scene.blend
	$(IREP3D) blender render $(DEMO_OUT)/demo_scene.blend --frames 1-3 --samples 16 --resolution 480x270 \
	  --out $(DEMO_OUT)/renders
	$(IREP3D) composite scenes/composite/hardlight-pair.toml --out $(DEMO_OUT)/composite/hardlight
	$(IREP3D) encode $(DEMO_OUT)/composite/hardlight --codec h264 --out $(DEMO_OUT)/hardlight.mp4
	$(IREP3D) encode $(DEMO_OUT)/maps/demo_clip --codec hap --out $(DEMO_OUT)/demo_clip_hap.mov
	$(IREP3D) release scenes/release/demo.toml --out $(DEMO_OUT)/release
	$(IREP3D) release scenes/release/internal-rep.toml --dry-run --out $(DEMO_OUT)/internal-rep
	$(PY) -c "$$EXPLORE_CHECK" $(DEMO_MODEL) $(DEMO_OUT)/explore
	@echo "demo outputs in $(DEMO_OUT)/: contact sheet, a looping EXR clip + GIF preview, a locked pack"
	@echo "(rendered again on a Ray instance: pack-farm/, the same bytes),"
	@echo "a displacement scene (demo_scene.blend) and its first path-traced frames (renders/),"
	@echo "a hard-light composite of two locked clips and VJ-ready loops (hardlight.mp4, demo_clip_hap.mov),"
	@echo "a whole release from scenes/release/demo.toml (release/loops/, release.json, contact.png)"
	@echo "and the plan of the full Internal Rep pack (its dry run, above);"
	@echo "explore a network in your browser: .venv/bin/irep3d explore $(DEMO_MODEL) --open"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Tests paced by the clock (NDI streams, the browser, Ctrl-C timings) run alone first; the
# rest on two processes (pytest-xdist, whole files to one process: fixtures stay shared).
XDIST := -n 2 --dist loadfile

test: lint sysdeps
	$(PY) -m pytest -q -m realtime --durations=5
	$(PY) -m pytest -q -m "not realtime" $(XDIST) --durations=15

test-fast: lint sysdeps
	$(PY) -m pytest -q -m "not slow" $(XDIST)

bench: $(STAMP)
	$(PY) benchmarks/bench_generator.py

clean:
	rm -rf $(VENV) out build *.egg-info
