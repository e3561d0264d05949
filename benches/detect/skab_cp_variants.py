"""Changepoint predictions from the normal model's alarm: transitions (SKAB's notebooks) or onsets only."""
import numpy as np
import common
from skab_hyst import flags

BASE = dict(span=15, margin=4.0, off=0.5, eta_min=0.6, q=0.99)


def onsets_as_flags(fl, train=400):
    """A flag series whose |diff| over the scored rows is exactly the alarm onsets."""
    out = []
    for f in fl:
        f = np.asarray(f, bool)
        on = f & ~np.concatenate([[False], f[:-1]])
        on[:train] = False
        # cumulative parity: toggling at each onset makes |diff| == onset
        out.append((np.cumsum(on) % 2).astype(bool))
    return out


if __name__ == "__main__":
    files = common.load_skab("valve1")
    for span in (5, 10, 15, 20):
        for margin in (2.0, 3.0, 4.0):
            kw = dict(BASE, span=span, margin=margin)
            fl = flags(files, **kw)
            print(f"span {span:2d} margin {margin}: transitions {common.skab_cp_nab(fl, files):6.1f}  onsets only {common.skab_cp_nab(onsets_as_flags(fl), files):6.1f}")
