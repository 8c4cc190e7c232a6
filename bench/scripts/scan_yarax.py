"""YARA-X over a list of files, for `bench real`.

usage: scan_yarax.py RULES.yar FILE_LIST

Compiles the rules, then reads and scans each file named in FILE_LIST (one
path a line), on one thread. Prints `PATH: RULE` for each rule that matches,
and on stderr one JSON line: {"compile_s": ..., "scan_s": ..., "bytes": ...}.
The scan time includes reading the files (from the page cache), as the other
engines' does.
"""
import sys
import time

import yara_x

from common import report, scan_files


def main():
    rules_path, list_path = sys.argv[1], sys.argv[2]
    t0 = time.perf_counter()
    with open(rules_path, encoding="utf-8") as f:
        rules = yara_x.compile(f.read())
    scanner = yara_x.Scanner(rules)
    compile_s = time.perf_counter() - t0

    def scan(data):
        return [rule.identifier for rule in scanner.scan(data).matching_rules]

    lines, scan_s, total = scan_files(list_path, scan)
    report(lines, compile_s, scan_s, total)


if __name__ == "__main__":
    main()
