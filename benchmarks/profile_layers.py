"""Where a training step of a registry model spends its time, layer by layer (forward and backward).

    python benchmarks/profile_layers.py --backend numpy --batch-size 64

A wrapper around ``numcnn bench --profile`` without PyTorch; timing code lives in :mod:`numcnn.benchmark`.
"""

import sys

from numcnn.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--profile", "--no-torch", "--no-compile-time", "--repeats", "3", *sys.argv[1:]]))
