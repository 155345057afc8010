"""Feed malformed IDX files, images and checkpoints to numcnn's real loaders and count what goes wrong.

    python benchmarks/fuzz_inputs.py                  # 2,400 IDX, 400 images, 400 checkpoints (a few minutes)
    python benchmarks/fuzz_inputs.py --scale 0.1      # a quick look

Every case runs in a worker process with a memory cap (``RLIMIT_AS``) and a per-case alarm, so that a
loader that allocates without bound or never returns is *counted*, not suffered. Outcomes per case:

* ``ok`` -- loaded, and the result is right (or the input was still valid);
* ``refused`` -- a one-line :class:`numcnn.NumcnnError` (what a malformed input should get);
* ``traceback`` -- any other exception: it would reach the user as a traceback;
* ``hang`` -- the per-case time limit ran out;
* ``memory`` -- ``MemoryError`` or the worker killed at the memory cap;
* ``wrong`` -- silently accepted wrong data: a mutated file that loads although its content was checked
  (an MNIST file read with its SHA-256; a checkpoint with altered shapes, dtypes, keys or non-finite
  values), or a loaded result of the wrong shape.

Prints the counts per kind and exits non-zero when any of the last four is not 0.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import random
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

BAD_OUTCOMES = ("traceback", "hang", "memory", "wrong")
MEMORY_CAP = 2 << 30  # bytes of address space per worker
CASE_SECONDS = 20


# -- generating cases ---------------------------------------------------------------------------------
def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random corruption of ``data``."""
    kind = rng.randrange(9)
    buffer = bytearray(data)
    if kind == 0 and buffer:  # truncation
        return bytes(buffer[: rng.randrange(len(buffer))])
    if kind == 1:  # bit flips
        for _ in range(rng.randint(1, 8)):
            position = rng.randrange(len(buffer))
            buffer[position] ^= 1 << rng.randrange(8)
        return bytes(buffer)
    if kind == 2:  # header bytes replaced
        for _ in range(rng.randint(1, 4)):
            buffer[rng.randrange(min(16, len(buffer)))] = rng.randrange(256)
        return bytes(buffer)
    if kind == 3:  # trailing junk
        return bytes(buffer) + os.urandom(rng.randint(1, 64))
    if kind == 4:  # a random byte string
        return os.urandom(rng.randint(0, 64))
    if kind == 5:  # a huge dimension in the header
        if len(buffer) >= 8:
            buffer[4:8] = struct.pack(">I", rng.choice([2**32 - 1, 2**31, 10**9, 0]))
        return bytes(buffer)
    if kind == 6:  # many dimensions
        if len(buffer) >= 4:
            buffer[3] = rng.choice([0, 5, 200, 255])
        return bytes(buffer)
    if kind == 7:  # gzip-compressed corruption
        return gzip.compress(mutate(data, rng))[: None if rng.random() < 0.5 else rng.randrange(40)]
    return data[: len(data) // 2] + data[len(data) // 2 :][::-1]  # scrambled payload


def gzip_bomb(size: int) -> bytes:
    """A gzip stream of ``size`` zero bytes after an IDX header that claims them (about size/1000 bytes)."""
    header = bytes([0, 0, 0x08, 1]) + struct.pack(">I", size)
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)  # level 1: quick to make, still ~ 1:200
    chunks = [compressor.compress(header)]
    block = bytes(1 << 20)
    for _ in range(size >> 20):
        chunks.append(compressor.compress(block))
    chunks.append(compressor.flush())
    return b"".join(chunks)


def make_idx_cases(folder: Path, count: int, rng: random.Random) -> list[dict]:
    images = np.random.default_rng(0).integers(0, 256, size=(50, 28, 28), dtype=np.uint8)
    labels = np.random.default_rng(1).integers(0, 10, size=50, dtype=np.uint8)
    originals = {"images": idx_bytes(images), "labels": idx_bytes(labels)}
    cases = []
    bomb = gzip_bomb(5 << 29)  # 2.5 GiB of zeros, more than a worker may hold
    for number in range(count):
        which = "images" if number % 2 == 0 else "labels"
        original = originals[which]
        data = bomb if number % 400 == 7 else mutate(original, rng)
        if rng.random() < 0.3 and number % 400 != 7:
            data = gzip.compress(data)
        path = folder / f"idx-{number}"
        path.write_bytes(data)
        try:
            payload = gzip.decompress(data) if data[:2] == b"\x1f\x8b" and len(data) < 10**7 else data
        except Exception:
            payload = data
        cases.append({"kind": "idx", "path": str(path), "which": which, "mutated": payload != original,
                      "sha256": hashlib.sha256(original).hexdigest()})  # fmt: skip
    return cases


def png_with_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width × height`` pixels (a decompression bomb's header)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def make_image_cases(folder: Path, count: int, rng: random.Random) -> list[dict]:
    from PIL import Image, ImageDraw

    digit = Image.new("L", (60, 90), 255)
    ImageDraw.Draw(digit).line([(30, 10), (30, 80)], fill=0, width=9)
    originals = []
    for form in ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP"):
        buffer = io.BytesIO()
        digit.save(buffer, format=form)
        originals.append(buffer.getvalue())
    big = Image.new("1", (10000, 10000), 1)  # a real 10000×10000 picture (compresses to ~ 12 KB)
    ImageDraw.Draw(big).line([(5000, 1000), (5000, 9000)], fill=0, width=800)
    buffer = io.BytesIO()
    big.save(buffer, format="PNG")
    specials = [buffer.getvalue(), png_with_size(10000, 10000), png_with_size(2**31 - 1, 2**31 - 1),
                png_with_size(100000, 1), png_with_size(0, 0)]  # fmt: skip
    cases = []
    for number in range(count):
        data = specials[number % len(specials)] if number % 20 < len(specials) else mutate(rng.choice(originals), rng)
        path = folder / f"image-{number}.png"
        path.write_bytes(data)
        cases.append({"kind": "image", "path": str(path)})
    return cases


def _save_npz(path: Path, arrays: dict, compress: bool = False) -> None:
    (np.savez_compressed if compress else np.savez)(path, **arrays)


def make_checkpoint_cases(folder: Path, count: int, rng: random.Random) -> list[dict]:
    from numcnn import models
    from numcnn.checkpoint import save_checkpoint

    reference = folder / "reference.npz"
    save_checkpoint(reference, models.build("lenet5", rng=0), "lenet5", meta={"epoch": 1})
    with np.load(reference, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    original = reference.read_bytes()
    state_keys = [key for key in arrays if key.startswith("state/")]
    meta = json.loads(str(arrays["meta"]))
    cases = []

    def add(data_or_arrays, expect_refusal: bool, pickle: bool = False) -> None:
        path = folder / f"checkpoint-{len(cases)}.npz"
        if isinstance(data_or_arrays, bytes):
            path.write_bytes(data_or_arrays)
        elif pickle:
            np.savez(path, **data_or_arrays)  # object arrays are pickled
        else:
            _save_npz(path, data_or_arrays, compress=rng.random() < 0.5)
        cases.append({"kind": "checkpoint", "path": str(path), "expect_refusal": expect_refusal})

    # One zip bomb: a member that inflates to 3 GiB.
    bomb = folder / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("meta.npy", _npy(arrays["meta"]))
        with archive.open(f"{state_keys[0]}.npy", "w", force_zip64=True) as member:
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (5 << 27,)})
            member.write(header.getvalue())
            block = bytes(1 << 20)
            for _ in range(5 << 9):  # 2.5 GiB of zeros
                member.write(block)
    bomb_bytes = bomb.read_bytes()

    while len(cases) < count:
        choice = len(cases) % 16
        changed = dict(arrays)
        key = rng.choice(state_keys)
        if choice == 0:
            add(original[: rng.randrange(len(original))], True)
        elif choice == 1:
            add(mutate(original, rng), False)  # may still be valid (zip padding): only errors count
        elif choice == 2:  # wrong shape
            value = changed[key]
            changed[key] = value.reshape(-1) if value.ndim > 1 else np.concatenate([value, value[:1]])
            add(changed, True)
        elif choice == 3:  # wrong dtype
            changed[key] = changed[key].astype(rng.choice([np.complex64, "U3", np.bool_, np.int64, np.float16]))
            add(changed, changed[key].dtype.kind != "f")  # float16 weights are a valid (cast) checkpoint
        elif choice == 4:  # object array (pickled)
            changed[key] = np.array([None, {"x": 1}], dtype=object)
            add(changed, True, pickle=True)
        elif choice == 5:  # a missing state key
            del changed[key]
            add(changed, True)
        elif choice == 6:  # an extra state key
            changed["state/ghost.weight"] = np.zeros(3, np.float32)
            add(changed, True)
        elif choice == 7:  # non-finite weights
            value = changed[key].copy()
            value.flat[rng.randrange(value.size)] = rng.choice([np.nan, np.inf, -np.inf])
            changed[key] = value
            add(changed, True)
        elif choice == 8:  # metadata that is not JSON, or JSON of the wrong kind
            changed["meta"] = np.array(rng.choice(["{", "[1, 2]", "null", '"text"', "42", "{}"]))
            add(changed, True)
        elif choice == 9:  # metadata with wrong values
            bad = dict(meta)
            field = rng.choice(["model", "version", "dtype", "format"])
            bad[field] = rng.choice([None, 3, "lenet7", "bogus", [1], {"a": 1}, 10**30])
            changed["meta"] = np.array(json.dumps(bad))
            add(changed, bad[field] != meta.get(field))
        elif choice == 10:  # no metadata, or metadata that is not a string
            if rng.random() < 0.5:
                del changed["meta"]
            else:
                changed["meta"] = np.arange(3)
            add(changed, True)
        elif choice == 11:
            add(bomb_bytes if len(cases) < 200 else mutate(bomb_bytes[:4096], rng), True)
        elif choice == 12:  # a zip that holds something else
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w") as archive:
                name = rng.choice(["meta.npy", "x.txt", "state/0.weight.npy"])
                archive.writestr(name, os.urandom(rng.randint(0, 200)))
            add(buffer.getvalue(), True)
        elif choice == 13:  # a scalar or 0-d array where a tensor belongs
            changed[key] = np.float32(1.0)
            add(changed, True)
        elif choice == 14:  # an optimiser entry of the wrong shape: the model loads, resume would refuse
            changed["optimizer/0.velocity"] = np.zeros(7, np.float32)
            add(changed, False)
        else:  # a valid copy (must load)
            add(original, False)
    return cases


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


# -- running cases (in a worker) ----------------------------------------------------------------------
def run_case(case: dict) -> str:
    from numcnn.errors import NumcnnError

    try:
        if case["kind"] == "idx":
            from numcnn.data import mnist, read_idx
            from numcnn.data.idx import clear_cache

            clear_cache()
            array = read_idx(case["path"])
            mnist._check_kind(array, Path(case["path"]), images=case["which"] == "images")
            clear_cache()
            try:  # read as load_mnist(verify=True) does: a changed file must not pass
                read_idx(case["path"], sha256=case["sha256"])
            except NumcnnError:
                return "refused"
            return "wrong" if case["mutated"] else "ok"
        if case["kind"] == "image":
            from numcnn.data import load_digit_image

            digit = load_digit_image(case["path"])
            return "ok" if digit.shape == (28, 28) and np.isfinite(digit).all() else "wrong"
        from numcnn.checkpoint import load_checkpoint

        checkpoint = load_checkpoint(case["path"])
        state = checkpoint.model.state_dict()
        finite = all(np.isfinite(value).all() for value in state.values())
        return "wrong" if case["expect_refusal"] or not finite else "ok"
    except NumcnnError as error:
        return "refused" if "\n" not in str(error) else "traceback"
    except MemoryError:
        return "memory"
    except Exception as error:  # anything else would be a traceback for the user
        return f"traceback:{type(error).__name__}: {' '.join(str(error).split())[:160]}"


def worker() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("case time limit")))
    for line in sys.stdin:
        case = json.loads(line)
        signal.alarm(CASE_SECONDS)
        try:
            outcome = run_case(case)
        except TimeoutError:
            outcome = "hang"
        signal.alarm(0)
        if outcome.startswith("traceback:TimeoutError"):
            outcome = "hang"
        print(json.dumps({"path": case["path"], "outcome": outcome}), flush=True)


def run_all(cases: list[dict]) -> list[tuple[dict, str]]:
    """Run the cases in worker processes; a worker that dies takes the blame for its current case."""
    results: list[tuple[dict, str]] = []
    pending = list(cases)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    while pending:
        # The cases go through a file, not stdin: writing them all to a pipe while the worker fills
        # its stdout would deadlock both processes.
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as listing:
            listing.write("".join(json.dumps(case) + "\n" for case in pending))
        process = subprocess.Popen(
            [sys.executable, __file__, "--worker"], stdin=open(listing.name), stdout=subprocess.PIPE,  # noqa: SIM115
            stderr=subprocess.DEVNULL, text=True, env=env,
        )  # fmt: skip
        assert process.stdout is not None
        done = 0
        for line in process.stdout:
            results.append((pending[done], json.loads(line)["outcome"]))
            done += 1
        code = process.wait()
        os.unlink(listing.name)
        if done < len(pending):  # the worker died on pending[done]
            # Killed at the memory cap (SIGKILL/SIGSEGV, or exit 1 from an uncaught MemoryError), else a crash.
            outcome = "memory" if code in (-signal.SIGKILL, -signal.SIGSEGV, 1) else f"crash {code}"
            results.append((pending[done], outcome))
            done += 1
        pending = pending[done:]
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the default case counts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker()
        return 0
    rng = random.Random(args.seed)
    counts = {"idx": round(2400 * args.scale), "image": round(400 * args.scale), "checkpoint": round(400 * args.scale)}
    with tempfile.TemporaryDirectory(prefix="numcnn-fuzz-") as folder:
        cases = (
            make_idx_cases(Path(folder), counts["idx"], rng)
            + make_image_cases(Path(folder), counts["image"], rng)
            + make_checkpoint_cases(Path(folder), counts["checkpoint"], rng)
        )
        results = run_all(cases)
    tally: dict[str, Counter] = {kind: Counter() for kind in counts}
    examples: list[str] = []
    for case, outcome in results:
        tally[case["kind"]][outcome.split(":")[0]] += 1
        if outcome.split(":")[0] in BAD_OUTCOMES or outcome.startswith("crash"):
            examples.append(f"  {case['kind']} {Path(case['path']).name}: {outcome}")
    print(f"{'input':<12} {'cases':>6} " + " ".join(f"{name:>9}" for name in ("ok", "refused", *BAD_OUTCOMES)))
    for kind, counter in tally.items():
        row = " ".join(f"{counter[name]:>9}" for name in ("ok", "refused", *BAD_OUTCOMES))
        print(f"{kind:<12} {sum(counter.values()):>6} {row}")
    for line in examples[:40]:
        print(line)
    bad = sum(counter[name] for counter in tally.values() for name in BAD_OUTCOMES)
    return 1 if bad or any("crash" in line for line in examples) else 0


if __name__ == "__main__":
    sys.exit(main())
