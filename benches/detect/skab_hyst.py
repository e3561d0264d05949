"""Hysteresis on the normal model's alarm: on at stat >= thr, off when stat < off * thr."""
import itertools
import sys

import numpy as np
import common
from skab_search import model_stat, chunks


def hysteresis(stat, thr, off):
    out = np.zeros(len(stat), bool)
    on = False
    for i, s in enumerate(stat):
        on = s >= thr if not on else s >= off * thr
        out[i] = on
    return out


def flags(files, train=400, span=20, kind="maha", eta_min=0.5, q=0.99, margin=3.0, off=1.0):
    out = []
    for d in files:
        stat, skip, _ = model_stat(d["X"], train, span, kind, eta_min)
        thr = np.quantile(stat[skip:train], q) * margin
        out.append(hysteresis(stat, thr, off))
    return out


def evaluate(files, free, **kw):
    fl = flags(files, **kw)
    p = common.pointwise(fl, files)
    pf = common.pointwise(flags(free, **kw), free)
    return p["f1"], p["far"], p["mar"], common.skab_cp_nab(fl, files), pf["far"]


if __name__ == "__main__":
    files = common.load_skab("valve1")
    free = chunks(common.load_skab("anomaly-free"))
    for span, margin, off in itertools.product([10, 15, 20, 30], [2.0, 3.0, 4.0, 6.0], [1.0, 0.7, 0.5, 0.3]):
        f1, far, mar, nab, ffar = evaluate(files, free, span=span, margin=margin, off=off)
        print(f"span {span:2d} m {margin:.1f} off {off:.1f}: F1 {f1:.3f} FAR {100*far:5.1f} MAR {100*mar:5.1f} cpNAB {nab:6.1f} | free FAR {100*ffar:5.1f}")
        sys.stdout.flush()
