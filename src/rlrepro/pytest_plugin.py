"""pytest plugin (pyproject's addopts: `-p rlrepro.pytest_plugin`): the test process runs with the MKL kernels the
`rlrepro` command runs with.

On an AMD CPU the CLI re-executes itself with MKL's vendor shim (rlrepro.blas); so does pytest, here. pytest imports
`-p` plugins before it starts capturing output, so the re-executed process still writes to the terminal (a conftest
is imported later, with stdout already redirected to pytest's capture files). Without the shim MKL takes its AVX2
path and every pinned end state (tests/snapshots, made with the AVX-512 kernels that an Intel CPU or the shim
selects) differs in the last bits. `RLREPRO_MKL_SHIM=off` runs the tests without it (the pins then fail on AMD).
"""

from __future__ import annotations

import sys

from rlrepro import blas

if blas.wanted():
    # The command line as typed (`python -m pytest ...`, `pytest ...`, or a script calling pytest.main): the re-executed
    # process runs it again, and this plugin then finds the shim active and steps aside.
    blas.reexec_with_shim(sys.orig_argv[1:])
