"""LeNet-5 speed next to PyTorch, as in docs/performance.md: a thin wrapper around ``numcnn bench``.

    python benchmarks/lenet5_vs_torch.py                      # auto backend (numba if installed)
    python benchmarks/lenet5_vs_torch.py --backend numpy      # any ``numcnn bench`` option works

All timing code lives in :mod:`numcnn.benchmark`; this script only fixes the defaults.
"""

import sys

from numcnn.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--model", "lenet5", "--repeats", "7", *sys.argv[1:]]))
