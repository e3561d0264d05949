"""Search: normal model on smoothed standardised vectors, slow sensors (von Neumann ratio of the
train rows below eta_min) left out of the statistic (they are drift, for the drift detectors)."""
import itertools
import sys

import numpy as np
import common
from skab_normal import ewma


def model_stat(X, train, span, kind, eta_min, ridge=0.05, var_keep=0.95):
    T = X[:train]
    mu, sd = T.mean(0), T.std(0)
    sd = np.maximum(sd, 1e-9 * np.maximum(np.abs(mu), 1.0))
    eta = np.diff(T, axis=0).var(0) / np.maximum(T.var(0), 1e-300)
    keep = eta >= eta_min
    if not keep.any():
        return np.zeros(len(X)), span, keep
    Z = ((X - mu) / sd)[:, keep]
    S = ewma(Z, span)
    skip = min(span, train // 4)
    St = S[skip:train]
    m = St.mean(0)
    D = S - m
    if kind == "diag":
        v = St.var(0) + 1e-12
        stat = (D ** 2 / v).sum(1) / keep.sum()
    elif kind == "maha":
        C = np.atleast_2d(np.cov(St, rowvar=False)); n = C.shape[0]
        A = C + ridge * np.diag(np.diag(C)) + 1e-12 * np.eye(n)
        stat = np.einsum("ij,jk,ik->i", D, np.linalg.inv(A), D) / n
    return stat, skip, keep


def flags(files, train=400, span=10, kind="diag", eta_min=0.5, q=0.99, margin=3.0, return_stats=False):
    out = []
    for d in files:
        stat, skip, _ = model_stat(d["X"], train, span, kind, eta_min)
        thr = np.quantile(stat[skip:train], q) * margin
        out.append(stat >= thr)
    return out


def chunks(files, size=1150):
    out = []
    for d in files:
        for a in range(0, len(d["ts"]) - size + 1, size):
            out.append({k: (v[a:a + size] if isinstance(v, np.ndarray) else v) for k, v in d.items()})
    return out


if __name__ == "__main__":
    files = common.load_skab("valve1")
    free = chunks(common.load_skab("anomaly-free"))
    grid = itertools.product(["diag", "maha"], [5, 10, 20, 30], [0.0, 0.3, 0.5, 0.7], [0.99], [1.5, 2.0, 3.0, 4.0])
    for kind, span, eta, q, margin in grid:
        fl = flags(files, span=span, kind=kind, eta_min=eta, q=q, margin=margin)
        p = common.pointwise(fl, files)
        ff = flags(free, span=span, kind=kind, eta_min=eta, q=q, margin=margin)
        pf = common.pointwise(ff, free)
        print(f"{kind} span {span:2d} eta {eta:.1f} m {margin:.1f}: F1 {p['f1']:.3f} FAR {100*p['far']:5.1f} MAR {100*p['mar']:5.1f} "
              f"cpNAB {common.skab_cp_nab(fl, files):6.1f} | free FAR {100*pf['far']:5.1f}")
        sys.stdout.flush()
