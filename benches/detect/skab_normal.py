"""Exploration: a model of normal learned on the first train rows of each SKAB file.

Per file: standardise each sensor on the train rows, smooth the standardised vector causally
(EWMA, span k rows), fit a model on the smoothed train rows, score every row, threshold at
quantile q of the train rows' scores times a margin."""
import itertools
import sys

import numpy as np
import common


def ewma(Z, span):
    if span <= 1:
        return Z.copy()
    a = 2.0 / (span + 1.0)
    out = np.empty_like(Z)
    s = Z[0].copy()
    for i in range(len(Z)):
        s = s + a * (Z[i] - s) if i else Z[0].copy()
        out[i] = s
    return out


def fit_score(X, train, span=20, kind="maha", var_keep=0.9, ridge=0.01, skip=None):
    T = X[:train]
    mu = T.mean(0)
    sd = T.std(0)
    sd = np.maximum(sd, 1e-6 * np.maximum(np.abs(mu), 1.0))
    Z = (X - mu) / sd
    S = ewma(Z, span)
    skip = span if skip is None else skip
    St = S[skip:train]
    m = St.mean(0)
    C = np.cov(St, rowvar=False)
    n = C.shape[0]
    if kind == "maha":
        A = C + ridge * np.trace(C) / n * np.eye(n)
        Ai = np.linalg.inv(A)
        D = S - m
        stat = np.einsum("ij,jk,ik->i", D, Ai, D)
    elif kind == "pca":
        w, V = np.linalg.eigh(C)
        order = np.argsort(w)[::-1]; w = w[order]; V = V[:, order]
        r = int(np.searchsorted(np.cumsum(w) / w.sum(), var_keep) + 1)
        D = S - m
        P = D @ V[:, :r]
        t2 = (P ** 2 / np.maximum(w[:r], 1e-12)).sum(1)
        res = D - P @ V[:, :r].T
        q = (res ** 2).sum(1)
        # combine: each normalised by its own train 99th percentile
        t2n = t2 / np.quantile(t2[skip:train], 0.99)
        qn = q / max(np.quantile(q[skip:train], 0.99), 1e-12)
        stat = np.maximum(t2n, qn)
    elif kind == "diag":
        v = St.var(0) + 1e-12
        stat = ((S - m) ** 2 / v).sum(1)
    return stat, skip


def flags_for(files, train=400, q=0.99, margin=2.0, **kw):
    out = []
    for d in files:
        stat, skip = fit_score(d["X"], train, **kw)
        thr = np.quantile(stat[skip:train], q) * margin
        out.append(stat >= thr)
    return out


def report(files, fl):
    p = common.pointwise(fl, files)
    return p["f1"], p["far"], p["mar"], common.skab_cp_nab(fl, files)


if __name__ == "__main__":
    files = common.load_skab("valve1")
    free = common.load_skab("anomaly-free")
    for kind, span, q, margin in itertools.product(["maha", "pca", "diag"], [1, 10, 30, 60], [0.99], [1.0, 1.5, 2.0, 3.0]):
        fl = flags_for(files, kind=kind, span=span, q=q, margin=margin)
        f1, far, mar, nab = report(files, fl)
        print(f"{kind:5s} span {span:3d} q {q} m {margin:.1f}: F1 {f1:.3f} FAR {100*far:5.1f} MAR {100*mar:5.1f} cpNAB {nab:7.1f}")
        sys.stdout.flush()
