"""How training cost grows with width and batch: seconds per 60,000-image epoch for sk_0.2 … sk_2 at
batch 16, 64 and 256, numcnn next to PyTorch (interleaved runs, median (min–max)), as a Markdown table.

    python benchmarks/cost_growth.py                          # the table in docs/performance.md
    python benchmarks/cost_growth.py --steps 2 --repeats 3    # shorter runs on a busy machine

Uses numcnn.benchmark (the code behind ``numcnn bench``) with a short warm-up and a small
inference pass, since only training is tabulated.
"""

from __future__ import annotations

import argparse
import os

from numcnn.benchmark import BenchConfig, run_benchmark, summary

MODELS = ("sk_0.2", "sk_0.5", "sk_1", "sk_1.5", "sk_2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--batch-sizes", default="16,64,256")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    batches = tuple(int(size) for size in args.batch_sizes.split(","))
    print(f"load average at start {os.getloadavg()[0]:.1f}")
    print("| model | batch | numcnn s/epoch | PyTorch s/epoch | numcnn/PyTorch |")
    print("| --- | --- | --- | --- | --- |")
    for model in args.models.split(","):
        config = BenchConfig(
            model=model, batch_sizes=batches, steps=args.steps, repeats=args.repeats, warmup_steps=2,
            infer_images=64, threads=args.threads, compile_time=False, onnxruntime=False,
        )  # fmt: skip
        result = run_benchmark(config, log=lambda line: None)
        for m in result.measurements:
            if m.task == "train":
                cells = [model, str(m.batch_size), summary(m.numcnn, 1), summary(m.torch, 1), summary(m.ratios)]
                print("| " + " | ".join(cells) + " |", flush=True)
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
