"""Changepoints from the alarm's severity bands: a changepoint where the alarm turns on or off or
its band (floor(log_base(statistic / threshold)), 0 at the threshold) changes."""
import itertools

import numpy as np
import common
from skab_search import model_stat

BASE = dict(span=15, margin=4.0, off=0.5, eta_min=0.6, q=0.99)


def band_cps(stat, thr, off, base, train):
    on = False
    level = None
    cps = np.zeros(len(stat), bool)
    for i, s in enumerate(stat):
        was_on, was_level = on, level
        on = s >= thr if not on else s >= off * thr
        level = int(np.floor(np.log(max(s, 1e-300) / thr) / np.log(base))) if on else None
        if on and level < 0:
            level = 0
        if i >= train and (on != was_on or (on and level != was_level)):
            cps[i] = True
    return cps


def cps_as_flags(cps):
    return (np.cumsum(cps) % 2).astype(bool)


def run(files, base, train=400, **kw):
    kw = dict(BASE, **kw)
    out = []
    for d in files:
        stat, skip, _ = model_stat(d["X"], train, kw["span"], "maha", kw["eta_min"])
        thr = np.quantile(stat[skip:train], kw["q"]) * kw["margin"]
        out.append(cps_as_flags(band_cps(stat, thr, kw["off"], base, train)))
    return common.skab_cp_nab(out, files), sum(int(np.abs(np.diff(f[train:].astype(int))).sum()) for f in out)


if __name__ == "__main__":
    files = common.load_skab("valve1")
    for base, span, margin in itertools.product([1.5, 2.0, 3.0, 4.0, 1e9], [10, 15, 20], [3.0, 4.0]):
        nab, n = run(files, base, span=span, margin=margin)
        print(f"band base {base:g} span {span} margin {margin}: cp NAB {nab:6.1f}  ({n} predicted changepoints)")
