#!/bin/sh
# Run a toy-family script with the environment the recipe was measured in:
# OpenBLAS (pthread build, 1 thread per process), passive OpenMP waiting, low priority.
export LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONHASHSEED=0
exec nice -n 5 /usr/bin/python3 "$@"
