"""Peak memory of streaming a survey file through :func:`advrobust.data.open_images`.

For each format (``.npy`` float32, ``.npy`` big-endian float32, HDF5, FITS) a file of ``--size-gib``
GiB of 5x64x64 float32 cutouts is written chunk by chunk (bounded memory) into ``--folder``, then
read in a fresh process, ``--chunk-rows`` images at a time, twice: by ``reader.chunks`` and by the
NaN scan of ``SurveyDataset(..., nan_policy="reject")``. Reported: the process's resident-set
high-water mark (VmHWM) after the imports and its growth while streaming, the read throughput and a
checksum (the file's values are known). Each file is deleted after its measurement.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from advrobust.bench import harness

HELP = "peak memory of streaming a large survey file through the image readers (bench/RESULTS_readers.md)"

FORMATS = {"npy": "cube.npy", "npy-big-endian": "cube_be.npy", "h5": "cube.h5", "fits": "cube.fits"}
ROW_SHAPE = (5, 64, 64)


def add_arguments(parser) -> None:
    harness.add_common_arguments(parser, "RESULTS_readers.md")
    parser.add_argument("--size-gib", type=float, default=None, help="file size in GiB (default 2; --quick: 0.05)")
    parser.add_argument("--chunk-rows", type=int, default=256, help="images per read (default 256)")
    parser.add_argument("--folder", default="/tmp", help="where the files are written (default /tmp)")
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=list(FORMATS))


def _rows(n: int, start: int, stop: int) -> np.ndarray:
    """Images start:stop of the synthetic cube: image i is filled with i % 1000 (a known checksum)."""
    values = (np.arange(start, stop) % 1000).astype(np.float32)
    return np.broadcast_to(values[:, None, None, None], (stop - start,) + ROW_SHAPE)


def expected_sum(n: int) -> float:
    per_image = float(np.prod(ROW_SHAPE))
    return float(sum((i % 1000) for i in range(n))) * per_image


def write_file(kind: str, path: str, n: int, chunk: int = 512) -> None:
    """Write the synthetic cube of ``n`` images in format ``kind``, ``chunk`` images at a time."""
    if kind.startswith("npy"):
        dtype = ">f4" if kind == "npy-big-endian" else "<f4"
        out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(n,) + ROW_SHAPE)
        for start in range(0, n, chunk):
            out[start:start + chunk] = _rows(n, start, min(n, start + chunk))
            out.flush()
        del out
    elif kind == "h5":
        import h5py

        with h5py.File(path, "w") as handle:
            ds = handle.create_dataset("images", shape=(n,) + ROW_SHAPE, dtype="f4", chunks=(64,) + ROW_SHAPE)
            for start in range(0, n, chunk):
                ds[start:start + chunk] = _rows(n, start, min(n, start + chunk))
    else:
        from astropy.io import fits

        header = fits.Header()
        header.update(SIMPLE=True, BITPIX=-32, NAXIS=4, NAXIS1=ROW_SHAPE[2], NAXIS2=ROW_SHAPE[1],
                      NAXIS3=ROW_SHAPE[0], NAXIS4=n, EXTEND=True)
        stream = fits.StreamingHDU(path, header)
        for start in range(0, n, chunk):
            stream.write(np.ascontiguousarray(_rows(n, start, min(n, start + chunk)), dtype=">f4"))
        stream.close()


def stream(path: str, rows: int) -> dict:
    """Run in a fresh process: read ``path`` by chunks and by the dataset's NaN scan; memory and speed."""
    import h5py  # noqa: F401  (the format libraries are imported before the baseline)
    from astropy.io import fits  # noqa: F401

    from advrobust.data import SurveyDataset, open_images

    base = harness._resident_high_water_bytes()
    t0 = time.perf_counter()
    total = 0.0
    with open_images(path) as reader:
        n = len(reader)
        for _, chunk in reader.chunks(rows):
            total += float(chunk.sum(dtype=np.float64))
    t_read = time.perf_counter() - t0
    after_read = harness._resident_high_water_bytes()
    t0 = time.perf_counter()
    with open_images(path) as reader:
        kept = len(SurveyDataset(reader, nan_policy="reject", scan_rows=rows))
    t_scan = time.perf_counter() - t0
    return {"n": n, "sum": total, "kept": kept, "base": base, "after_read": after_read,
            "after_scan": harness._resident_high_water_bytes(), "t_read": t_read, "t_scan": t_scan}


def run(args, command: str) -> None:
    size_gib = args.size_gib if args.size_gib is not None else (0.05 if args.quick else 2.0)
    n = int(size_gib * 2 ** 30) // (int(np.prod(ROW_SHAPE)) * 4)
    info = harness.machine_info(harness.device_arg("cpu"))
    free = shutil.disk_usage(args.folder).free / 2 ** 30
    lines = ["# Streaming readers: peak memory (CPU)", "", *harness.header_lines(info, command),
             f"- files: {n} images of {ROW_SHAPE} float32 = {n * np.prod(ROW_SHAPE) * 4 / 2 ** 30:.2f} GiB each, "
             f"written to {args.folder} ({free:.0f} GiB free before), read {args.chunk_rows} images per read "
             f"({args.chunk_rows * np.prod(ROW_SHAPE) * 4 / 2 ** 20:.0f} MiB as float32)",
             "- memory: VmHWM (the process's resident-set high-water mark) of a fresh process: after its "
             "imports (torch, advrobust, h5py, astropy), and its growth over the whole read / over the dataset's NaN scan",
             "", "| format | file GiB | VmHWM after imports MiB | growth reading MiB | growth NaN scan MiB "
             "| read GiB/s | checksum ok |", "|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for kind in args.formats:
        path = os.path.join(args.folder, f"advrobust_bench_{FORMATS[kind]}")
        try:
            write_file(kind, path, n)
            gib = os.path.getsize(path) / 2 ** 30
            code = f"import json; from advrobust.bench.readers import stream; print(json.dumps(stream({path!r}, {args.chunk_rows})))"
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
        finally:
            if os.path.exists(path):
                os.remove(path)
        ok = r["n"] == n and r["kept"] == n and abs(r["sum"] - expected_sum(n)) <= 1e-9 * expected_sum(n)
        mib = 2 ** 20
        line = (f"| {kind} | {gib:.2f} | {r['base'] / mib:.0f} | {(r['after_read'] - r['base']) / mib:.0f} | "
                f"{(r['after_scan'] - r['after_read']) / mib:.0f} | {gib / r['t_read']:.2f} | {'yes' if ok else 'NO'} |")
        lines.append(line)
        print(line, flush=True)
    harness.write_report(args.out or harness.default_out("RESULTS_readers.md", args.quick), lines)
