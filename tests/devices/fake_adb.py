"""A recording stand-in for ``adb`` (and, under the name ``benchmark_model``, for LiteRT's tool on the phone).

The test copies this file to ``BIN/adb`` and ``PHONE/benchmark_model`` with a shebang and puts ``BIN`` first on PATH.

As ``adb`` it appends its argv to ``$FAKE_ADB_LOG`` (one JSON list a line) and behaves as adb does for what
edgestill uses: ``devices`` prints ``$FAKE_ADB_DEVICES`` (``SERIAL<TAB>STATE`` lines) under adb's header; ``-s SERIAL``
fails for a serial not listed there; ``push LOCAL REMOTE`` copies the file (the sync protocol: no shell sees the
paths); ``shell ARGS...`` joins its arguments with spaces and runs the string with ``/bin/sh -c``, as adbd hands it to
the phone's shell, so quoting mistakes show up as they would on a phone.

As ``benchmark_model`` it appends its argv to ``$FAKE_BM_LOG``, prints ``$FAKE_BM_REPORT`` (a saved report) on stderr,
as the tool logs there, and exits ``$FAKE_BM_RC`` (default 0).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys


def _log(var: str, argv: list[str]) -> None:
    with open(os.environ[var], "a", encoding="utf-8") as f:
        f.write(json.dumps(argv) + "\n")


def benchmark_model(argv: list[str]) -> int:
    _log("FAKE_BM_LOG", argv)
    with open(os.environ["FAKE_BM_REPORT"], encoding="utf-8") as f:
        sys.stderr.write(f.read())
    return int(os.environ.get("FAKE_BM_RC", "0"))


def adb(argv: list[str]) -> int:
    _log("FAKE_ADB_LOG", argv)
    listing = os.environ.get("FAKE_ADB_DEVICES", "")
    if argv == ["devices"]:
        print("List of devices attached")
        print(listing)
        return 0
    if len(argv) < 3 or argv[0] != "-s":
        print(f"fake adb: unsupported command {argv}", file=sys.stderr)
        return 1
    serial, verb, rest = argv[1], argv[2], argv[3:]
    if not any(line.split("\t")[0] == serial for line in listing.splitlines()):
        print(f"adb: device '{serial}' not found", file=sys.stderr)
        return 1
    if verb == "push" and len(rest) == 2:
        local, remote = rest
        if not os.path.isfile(local):
            print(f"adb: error: cannot stat '{local}': No such file or directory", file=sys.stderr)
            return 1
        os.makedirs(os.path.dirname(remote), exist_ok=True)
        shutil.copyfile(local, remote)
        print(f"{local}: 1 file pushed, 0 skipped. 1.0 MB/s ({os.path.getsize(local)} bytes in 0.001s)")
        return 0
    if verb == "shell" and rest:
        return subprocess.run(["/bin/sh", "-c", " ".join(rest)], check=False).returncode
    print(f"fake adb: unsupported command {argv}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    name = os.path.basename(sys.argv[0])
    sys.exit(benchmark_model(sys.argv[1:]) if name == "benchmark_model" else adb(sys.argv[1:]))
