#!/usr/bin/env python3
"""Realistic sensor readings, independent of Vigil's simulator, for the end-to-end benchmark.

    benches/realistic.py OUT.jsonl|OUT.csv [READINGS=10000000] [SENSORS=2000] [--seed 7] [--ts ms|rfc3339]

Like a plant's readings rather than a simulator's: sensors at 1 Hz, each reading with a unique
`reading_id`, epoch-millisecond timestamps jittered within their second (each sensor its own
phase plus up to ±150 ms of jitter), arriving in time order except that about one reading in 500
is swapped with a neighbour 2 s later (disorder within the lateness). Values: a level per sensor,
a slow random walk, a daily cycle and noise, so window means are neither constant nor white.
Six sensor types, six sensors per asset. The format follows OUT's extension (JSON lines, or CSV
with a header); times are epoch milliseconds, or RFC 3339 with milliseconds and `Z` (`--ts rfc3339`).
"""
import argparse
import datetime
import math
import random

TYPES = [("temperature", "C", 60.0, 2.0), ("vibration", "mm/s", 3.0, 0.4), ("pressure", "kPa", 420.0, 8.0),
         ("current", "A", 40.0, 1.5), ("rpm", "rpm", 1500.0, 20.0), ("humidity", "%", 45.0, 2.5)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("readings", nargs="?", type=int, default=10_000_000)
    ap.add_argument("sensors", nargs="?", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--start-ms", type=int, default=1_767_225_600_000)  # 2026-01-01T00:00:00Z
    ap.add_argument("--ts", choices=["ms", "rfc3339"], default="ms")
    a = ap.parse_args()
    csv = a.out.endswith(".csv")
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)

    def when(ms):
        if a.ts == "ms":
            return str(ms)
        t = epoch + datetime.timedelta(milliseconds=ms)
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"

    def line(rid, s, v, ms):
        if csv:
            return f"{rid},{s[0]},{s[1]},{s[2]},{v:.4f},{s[3]},{when(ms)}\n"
        t = when(ms) if a.ts == "ms" else f'"{when(ms)}"'
        return (f'{{"reading_id":"{rid}","sensor_id":"{s[0]}","asset_id":"{s[1]}",'
                f'"sensor_type":"{s[2]}","value":{v:.4f},"unit":"{s[3]}","ts":{t}}}\n')
    rnd = random.Random(a.seed)
    sensors = []
    for i in range(a.sensors):
        kind, unit, level, sd = TYPES[i % len(TYPES)]
        asset = f"line{i // 6 // 100 + 1}-asset-{i // 6:05d}"
        sensors.append([f"{asset}-{kind}-{i % 6}", asset, kind, unit, level * rnd.uniform(0.8, 1.2), sd, rnd.randrange(1000), 0.0,
                        rnd.uniform(0.0, 2.0 * math.pi)])
    seconds = -(-a.readings // a.sensors)
    written = 0
    produced = 0  # readings made, held back or not
    pending = []  # (due second, line): readings held back 2 s
    with open(a.out, "w", buffering=1 << 22) as f:
        if csv:
            f.write("reading_id,sensor_id,asset_id,sensor_type,value,unit,ts\n")
        for t in range(seconds):
            base = a.start_ms + t * 1000
            lines = []
            for k, s in enumerate(sensors):
                if produced >= a.readings:
                    break
                produced += 1
                # A random walk pulled back to the level: it wanders about one sd.
                s[7] += rnd.gauss(0.0, s[5] * 0.02) - s[7] * 0.0004
                v = s[4] + s[7] + s[5] * (0.5 * rnd.gauss(0.0, 1.0) + math.sin(2.0 * math.pi * t / 86400.0 + s[8]))
                ts = base + min(999, max(0, s[6] + rnd.randint(-150, 150)))
                text = line(f"{a.seed:x}-{t:x}-{k:x}", s, v, ts)
                if rnd.random() < 0.002:
                    pending.append((t + 2, text))
                else:
                    lines.append(text)
            due = [l for (d, l) in pending if d <= t]
            pending = [(d, l) for (d, l) in pending if d > t]
            lines.extend(due)
            f.writelines(lines)
            written += len(lines)
        f.writelines(l for (_, l) in pending)
        written += len(pending)
    print(f"{a.out}: {written} readings of {a.sensors} sensors over {seconds} s")


if __name__ == "__main__":
    main()
