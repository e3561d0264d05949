"""Replica of today's verdicts on SKAB valve1: robust_zscore on one-row tumbling windows and the
EW Mahalanobis asset detector (operators/src/{robust,multivariate}.rs), as labelled.rs flags rows."""
import numpy as np
import common


def robust_flags(x, baseline=60, warmup=15, threshold=6.0, adapt_after=10):
    means, streak, out = [], 0, np.zeros(len(x), bool)
    for i, v in enumerate(x):
        score = None
        if len(means) >= warmup:
            m = np.median(means); mad = np.median(np.abs(np.array(means) - m))
            floor = 1e-6 * max(abs(m), 1.0)
            level_scale = max(1.4826 * mad, floor, 0.0)
            point_scale = max(0.0, level_scale, floor)
            s = abs(v - m) / level_scale
            ext = abs(v - m) / point_scale
            score = max(s, (ext - 3.0) * 1.5 if ext > 3 else 0.0)
        anom = score is not None and score >= threshold
        streak = streak + 1 if anom else 0
        if not anom or streak >= adapt_after:
            if streak >= adapt_after:
                means, streak = [], 0
            means.append(v)
            if len(means) > baseline:
                means.pop(0)
        out[i] = anom
    return out


def mahalanobis_flags(X, alpha=0.05, warmup=20, threshold=12.0, ridge=0.05):
    n = X.shape[1]
    mean = X[0].copy(); cov = np.zeros((n, n)); seen = 1
    out = np.zeros(len(X), bool)
    for i in range(1, len(X)):
        d = X[i] - mean
        flag = False
        if seen >= warmup:
            a = cov.copy()
            for k in range(n):
                fl = 1e-6 * max(abs(mean[k]), 1.0)
                a[k, k] = cov[k, k] * (1 + ridge) + fl * fl
            try:
                np.linalg.cholesky(a)
                d2 = d @ np.linalg.solve(a, d)
                flag = d2 / n >= threshold
            except np.linalg.LinAlgError:
                pass
        if not flag:
            al = 1.0 / (seen + 1) if seen < warmup else alpha
            mean += al * d
            cov = (1 - al) * (cov + al * np.outer(d, d))
        seen += 1
        out[i] = flag
    return out


if __name__ == "__main__":
    files = common.load_skab("valve1")
    rob, mv, both = [], [], []
    for d in files:
        r = np.zeros(len(d["ts"]), bool)
        for k in range(d["X"].shape[1]):
            r |= robust_flags(d["X"][:, k])
        m = mahalanobis_flags(d["X"])
        rob.append(r); mv.append(m); both.append(r | m)
    for name, fl in [("robust only", rob), ("mahalanobis only", mv), ("today (any)", both)]:
        p = common.pointwise(fl, files)
        print(f"{name:18s} F1 {p['f1']:.3f} FAR {100*p['far']:.1f}% MAR {100*p['mar']:.1f}%  "
              f"cp-NAB vigil-today {common.vigil_cp_nab_today(fl, files):.1f}  cp-NAB skab {common.skab_cp_nab(fl, files):.1f}")
