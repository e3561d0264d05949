"""Novelty averaged over several quantisations (levels L·{0.75, 1, 1.25}): does it flatten the peak?"""
import sys

import numpy as np
import common
from nab_today import corpus_score, novelty_scores


def ens(v, levels=12, combine="mean", **kw):
    ls = sorted({max(2, round(levels * f)) for f in (0.75, 1.0, 1.25)})
    s = np.array([novelty_scores(v, levels=l, **kw) for l in ls])
    return s.mean(0) if combine == "mean" else s.max(0)


if __name__ == "__main__":
    files = common.load_nab()
    for combine in ("mean", "max"):
        for levels in (9, 12, 15):
            for extra in ({}, {"orders": 3}, {"orders": 5}, {"smooth": 5}, {"smooth": 9}):
                sc = [ens(f["v"], levels=levels, combine=combine, **extra) for f in files]
                s, t = corpus_score(files, sc)
                print(f"{combine} levels {levels} {extra}: {s:.1f} at {t:.3f}")
                sys.stdout.flush()
