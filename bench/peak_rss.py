"""Run a command and report its peak RSS and wall time:

    python bench/peak_rss.py REPORT_FILE COMMAND [ARG ...]

A process's ru_maxrss also counts the memory of the process that forked it, up to its exec:
the benchmark holds hundreds of MB (wearipedia, a participant's rows), so a child it starts
itself would report the benchmark's size. This small process starts the command instead
and writes {"exit": code, "seconds": wall, "peak_rss_kib": N, "cpu_seconds": user + system}
to REPORT_FILE. The command
inherits stdin, stdout, stderr, the environment and the working directory.
"""

import json
import os
import subprocess
import sys
import time


def main(report_file: str, command: list[str]) -> int:
    began = time.perf_counter()
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - began
    process.returncode = code = os.waitstatus_to_exitcode(status)
    with open(report_file, "w", encoding="utf-8") as report:
        # ru_maxrss is in KiB on Linux.
        # The CPU of the command and of the worker processes it waited for.
        json.dump({"exit": code, "seconds": seconds, "peak_rss_kib": usage.ru_maxrss,
                   "cpu_seconds": usage.ru_utime + usage.ru_stime}, report)
    return code


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2:]))
