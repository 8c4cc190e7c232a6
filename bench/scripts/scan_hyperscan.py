"""Hyperscan over a list of files, for `bench real`.

usage: scan_hyperscan.py PATTERNS.json FILE_LIST

PATTERNS.json is `[[signature, [regex, ...]], ...]`: a signature matches a
file when every one of its regexes does. All regexes go into one block-mode
database (HS_FLAG_DOTALL, so `.` is any byte, and HS_FLAG_SINGLEMATCH). Each
file named in FILE_LIST (one path a line) is read and scanned whole, on one
thread. Prints `PATH: SIGNATURE` for each signature that matches, and on
stderr one JSON line: {"compile_s": ..., "scan_s": ..., "bytes": ...}. The
scan time includes reading the files (from the page cache), as the other
engines' does.
"""
import json
import sys
import time

import hyperscan

from common import report, scan_files


def main():
    patterns_path, list_path = sys.argv[1], sys.argv[2]
    with open(patterns_path, encoding="utf-8") as f:
        sigs = json.load(f)
    exprs, owner, parts = [], [], []
    for _name, regexes in sigs:
        parts.append(len(regexes))
        for rx in regexes:
            exprs.append(rx.encode("latin-1"))
            owner.append(len(parts) - 1)
    flags = [hyperscan.HS_FLAG_DOTALL | hyperscan.HS_FLAG_SINGLEMATCH] * len(exprs)
    t0 = time.perf_counter()
    db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    db.compile(expressions=exprs, ids=list(range(len(exprs))), elements=len(exprs), flags=flags)
    compile_s = time.perf_counter() - t0

    def scan(data):
        hit = set()

        def on_match(pid, start, end, flags, context):
            hit.add(pid)

        db.scan(data, match_event_handler=on_match)
        seen = {}
        for pid in hit:
            seen[owner[pid]] = seen.get(owner[pid], 0) + 1
        return [sigs[sig][0] for sig, n in sorted(seen.items()) if n == parts[sig]]

    lines, scan_s, total = scan_files(list_path, scan)
    report(lines, compile_s, scan_s, total)


if __name__ == "__main__":
    main()
