"""Time ``POST /api/trace`` of a running ``numcnn explore`` server, as the page calls it while one draws.

    numcnn explore --port 8000 &
    python benchmarks/explorer_latency.py http://127.0.0.1:8000 --calls 50

Sends the shipped MNIST test digits in turn (each with target null) over one keep-alive connection and
prints the median and the 90th percentile of the round trip (request, forward + backward pass, JSON
of every layer, response) and the size of one answer.
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx

from numcnn.explorer.samples import load_samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    bodies = [{"pixels": sample.pixels.ravel().tolist(), "target": None} for sample in load_samples()]
    times, size = [], 0
    with httpx.Client(base_url=args.url, timeout=60) as client:
        client.post("/api/trace", json=bodies[0]).raise_for_status()  # warm-up
        for call in range(args.calls):
            started = time.perf_counter()
            response = client.post("/api/trace", json=bodies[call % len(bodies)])
            times.append(time.perf_counter() - started)
            response.raise_for_status()
            size = len(response.content)
    quantiles = statistics.quantiles(times, n=10)
    print(
        f"{args.calls} calls of POST /api/trace: median {1000 * statistics.median(times):.1f} ms, "
        f"90th percentile {1000 * quantiles[-1]:.1f} ms; answer {size / 1024:.0f} KiB"
    )


if __name__ == "__main__":
    main()
