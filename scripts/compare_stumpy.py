#!/usr/bin/env python3
"""Side-by-side throughput of osprey's left matrix profile and stumpy, same data, one thread.

What it measures (points per second; higher is better):

  stumpy.stumpi  H=10k,  m=100   incremental matrix profile with egress=True: a window of
                                 H points that slides by one per update(), like osprey's
                                 bounded history.
  stumpy.stumpi  H=100k, m=100   the same with a 100k-point window.
  stumpy.stump   100k points, m=100  batch matrix profile of the whole series (seconds).

and, with --osprey, the matching osprey cases from its criterion bench
(benches/operators/matrix_profile.rs):

  LeftMatrixProfile/push/h10k_m100, .../push_slice/h10k_m100   (exact streaming, H=10k)
  LeftMatrixProfile/push/h100k_m100, .../push_slice/h100k_m100 (exact streaming, H=100k)
  Damp/machining                                               (DAMP mode, Machining series)
  left_profile/100k_m100                                       (batch, 100k points)

Both sides use the same deterministic random walk (xorshift64*, seeds 7 and 11; the Rust bench
generates it with the same code), and both run on one core: numba is pinned to one thread
here, and criterion runs single-threaded.

Run from the repository root:

    python3 -m venv .venv && .venv/bin/pip install stumpy
    NUMBA_NUM_THREADS=1 .venv/bin/python scripts/compare_stumpy.py --osprey

--osprey runs `cargo bench --profile dev --bench operators -- matrix_profile` (override with
--osprey-cmd) and reads criterion's thrpt lines; without it only stumpy is measured.
Needs OSPREY_SHARED for the DAMP case (the bench skips it otherwise). Stumpy compiles its
kernels with numba on first use; that compile time is excluded by a warm-up call.
"""

import argparse
import os
import re
import subprocess
import sys
import time

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np  # noqa: E402

MASK = (1 << 64) - 1


def random_walk(n, seed):
    """The random walk of benches/operators/matrix_profile.rs, bit for bit."""
    s = max(seed, 1)
    x = 0.0
    out = np.empty(n)
    for k in range(n):
        s ^= s >> 12
        s ^= (s << 25) & MASK
        s ^= s >> 27
        u = (((s * 0x2545F4914F6CDD1D) & MASK) >> 11) / float(1 << 53)
        x += u - 0.5
        out[k] = x
    return out


def stumpi_rate(history, m, updates):
    import stumpy

    data = random_walk(history + updates, 7)
    # Warm-up: compile numba kernels on a small stream first.
    warm = stumpy.stumpi(data[:1000], m, egress=True)
    for x in data[1000:1010]:
        warm.update(x)
    stream = stumpy.stumpi(data[:history], m, egress=True)
    t0 = time.perf_counter()
    for x in data[history:]:
        stream.update(x)
    return updates / (time.perf_counter() - t0)


def stump_seconds(n, m):
    import stumpy

    data = random_walk(n, 11)
    stumpy.stump(data[:2000], m)  # compile
    t0 = time.perf_counter()
    stumpy.stump(data, m)
    return time.perf_counter() - t0


UNITS = {"elem/s": 1.0, "Kelem/s": 1e3, "Melem/s": 1e6, "Gelem/s": 1e9}


def osprey_rates(cmd):
    """Run the criterion bench and return {bench id: points per second (median)}."""
    print(f"running: {cmd}", file=sys.stderr)
    proc = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"osprey bench failed:\n{proc.stderr[-4000:]}")
    rates, current = {}, None
    for line in proc.stdout.splitlines():
        ident = re.match(r"^(osprey::\S+)", line)
        if ident:
            current = ident.group(1)
            continue
        thrpt = re.search(r"thrpt:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", line)
        if thrpt and current:
            rates[current] = float(thrpt.group(1)) * UNITS[thrpt.group(2)]
    return rates


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--osprey", action="store_true", help="also run osprey's criterion bench")
    ap.add_argument(
        "--osprey-cmd",
        default="cargo bench --profile dev --bench operators -- matrix_profile",
        help="command that prints osprey's criterion results",
    )
    ap.add_argument("--updates-10k", type=int, default=3000, help="stumpi updates at H=10k")
    ap.add_argument("--updates-100k", type=int, default=600, help="stumpi updates at H=100k")
    ap.add_argument("--skip-stump", action="store_true", help="skip the 100k-point stump run")
    args = ap.parse_args()

    import stumpy
    import numba

    print(
        f"stumpy {stumpy.__version__}, numba {numba.__version__}, "
        f"threads {numba.config.NUMBA_NUM_THREADS}",
        file=sys.stderr,
    )
    rows = []
    r10 = stumpi_rate(10_000, 100, args.updates_10k)
    rows.append(("stumpy.stumpi H=10k m=100", f"{r10:,.0f} points/s"))
    r100 = stumpi_rate(100_000, 100, args.updates_100k)
    rows.append(("stumpy.stumpi H=100k m=100", f"{r100:,.0f} points/s"))
    if not args.skip_stump:
        secs = stump_seconds(100_000, 100)
        rows.append(("stumpy.stump 100k points m=100", f"{secs:.1f} s ({1e5 / secs:,.0f} points/s)"))

    if args.osprey:
        rates = osprey_rates(args.osprey_cmd)
        base = "osprey::operators::matrix_profile::"
        for ident, anchor in [
            ("LeftMatrixProfile/push/h10k_m100", r10),
            ("LeftMatrixProfile/push_slice/h10k_m100", r10),
            ("LeftMatrixProfile/push/h100k_m100", r100),
            ("LeftMatrixProfile/push_slice/h100k_m100", r100),
            ("LeftMatrixProfile/push/h10k_m100_scalar", r10),
            ("Damp/machining", None),
            ("left_profile/100k_m100", None),
        ]:
            rate = rates.get(base + ident)
            if rate is None:
                rows.append((f"osprey {ident}", "not run"))
                continue
            text = f"{rate:,.0f} points/s"
            if ident.startswith("left_profile"):
                text += f" ({1e5 / rate:.2f} s)"
            if anchor:
                text += f" ({rate / anchor:.1f}x stumpi)"
            rows.append((f"osprey {ident}", text))

    width = max(len(r[0]) for r in rows)
    print(f"| {'case'.ljust(width)} | result |")
    print(f"|{'-' * (width + 2)}|--------|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")


if __name__ == "__main__":
    main()
