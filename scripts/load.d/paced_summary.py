#!/usr/bin/env python3
"""Combines the paced (constant-rate) oha runs of one measurement into one line.

Usage: paced_summary.py NAME DURATION_S DIR

DIR holds, per oha process, `*.db` (oha --db-url: every response with its start, its latency-
corrected start and its end) and `*.json` (oha --output-format json: connection errors and
other failures that got no response). Latencies are taken from the scheduled start
(`start_latency_correction`, oha --latency-correction), so a request the generator had to hold
back because the server was slow counts its wait: no coordinated omission.

Throughput is responses over the time until the last of them arrived (at least DURATION): a
server that falls behind answers the requests of the last seconds late, and its rate shows it.

Prints the same fields as the wrk runs of scripts/load:
NAME requests=N rps=R p50_ms=X p99_ms=Y max_ms=Z errors=E
where errors are responses other than 2xx plus requests that got no response.
"""

import glob
import json
import math
import os
import sqlite3
import sys


def percentile(sorted_values, p):
    if not sorted_values:
        return 0.0
    # Nearest rank: the smallest value with at least p % of the values at or below it.
    k = math.ceil(p / 100.0 * len(sorted_values)) - 1
    return sorted_values[max(0, min(len(sorted_values) - 1, k))]


def main():
    name, duration, folder = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    latencies = []
    errors = 0
    # Each process's times count from its own start (they start within milliseconds of each
    # other): the run lasted until the last response, which under overload is after DURATION.
    span = duration
    for db in sorted(glob.glob(os.path.join(folder, "*.db"))):
        conn = sqlite3.connect(db)
        for start, corrected, end, status in conn.execute(
            "SELECT start, start_latency_correction, end, status FROM oha"
        ):
            scheduled = corrected if corrected is not None else start
            latencies.append((end - scheduled) * 1000.0)
            if not 200 <= status < 300:
                errors += 1
            span = max(span, end)
        conn.close()
    for report in sorted(glob.glob(os.path.join(folder, "*.json"))):
        with open(report) as f:
            summary = json.load(f)
        errors += sum((summary.get("errorDistribution") or {}).values())
    latencies.sort()
    print(
        "%s requests=%d rps=%.0f p50_ms=%.1f p99_ms=%.1f max_ms=%.1f errors=%d"
        % (
            name,
            len(latencies),
            len(latencies) / span,
            percentile(latencies, 50),
            percentile(latencies, 99),
            latencies[-1] if latencies else 0.0,
            errors,
        )
    )


if __name__ == "__main__":
    main()
