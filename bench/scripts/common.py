"""What the `bench real` runners share: reading the file list, scanning each
file with a function, and the output both print.

`scan_files(list_path, scan)` reads each file named in the list (one path a
line), calls `scan(data)` for the names that match, and returns the
`PATH: NAME` lines, the seconds the loop took (reading included, as for the
other engines) and the bytes read. `report(lines, compile_s, scan_s, total)`
prints the lines, and the timings as one JSON line on stderr.
"""
import json
import sys
import time


def scan_files(list_path, scan):
    with open(list_path, encoding="utf-8") as f:
        files = [line.rstrip("\n") for line in f if line.strip()]
    start = time.perf_counter()
    total = 0
    out = []
    for path in files:
        with open(path, "rb") as f:
            data = f.read()
        total += len(data)
        for name in scan(data):
            out.append(f"{path}: {name}")
    return out, time.perf_counter() - start, total


def report(lines, compile_s, scan_s, total):
    sys.stdout.write("\n".join(lines) + ("\n" if lines else ""))
    sys.stderr.write(json.dumps({"compile_s": compile_s, "scan_s": scan_s, "bytes": total}) + "\n")
