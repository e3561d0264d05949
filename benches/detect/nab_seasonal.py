"""NAB: the novelty detector plus a weekly seasonal channel (issue 19, NAB part).

The seasonal channel keeps, per hour of the week (`buckets` slots over `period_ms`), an
exponentially weighted mean of the values seen in that slot; once a slot has been visited
`min_visits` times, a row's residual (value − slot mean) is scored like the novelty detector's
spatial novelty: how far it lies beyond the range of residuals seen lately, as a share of that
range's width, `e / (e + tolerance)`, self-suppressed by a running peak that halves every
`half_life` rows. The row's score is `max(novelty, weight · seasonal)`.

    python3 nab_seasonal.py                 # the chosen settings
    python3 nab_seasonal.py table           # ±25 % on each setting of the channel
    python3 nab_seasonal.py table novelty   # ... and on each of the novelty detector's
    python3 nab_seasonal.py key=value ...   # overrides (the channel's settings)
"""
import sys

import numpy as np
import common
from nab_today import corpus_score, novelty_scores, FLOOR
from nab_sensitivity import DEFAULTS as NOVELTY_DEFAULTS
from novelty import Novelty

WEEK_MS = 7 * 86_400_000
DEFAULTS = dict(buckets=168, alpha=0.1, tolerance=0.2, half_life=400, weight=0.5, min_visits=3, warmup=50)


class Seasonal:
    def __init__(self, buckets=168, alpha=0.1, tolerance=0.2, half_life=400, weight=0.5, min_visits=3, warmup=50,
                 period_ms=WEEK_MS):
        self.n, self.alpha, self.weight = max(int(buckets), 1), alpha, weight
        self.min_visits, self.warmup, self.period = max(int(min_visits), 1), int(warmup), period_ms
        self.mean = [0.0] * self.n
        self.visits = [0] * self.n
        # Range memory of the residuals: the novelty detector's (blocks of 64, 64 blocks).
        self.res = Novelty(tolerance=tolerance)
        self.decay = 0.5 ** (1.0 / max(half_life, 1))
        self.peak = 0.0

    def observe(self, ts_ms, x):
        b = (ts_ms % self.period) * self.n // self.period
        score = 0.0
        if self.visits[b] >= self.min_visits:
            r = x - self.mean[b]
            rg = self.res.range()
            raw = self.res.spatial(rg[0], rg[1], r, r) if rg else 0.0
            self.res.learn_range(r, r)
            self.res.seen += 1
            if self.res.seen > self.warmup:
                score = max(raw - self.peak, 0.0)
            self.peak = max(self.peak * self.decay, raw)
        self.mean[b] = x if self.visits[b] == 0 else self.mean[b] + self.alpha * (x - self.mean[b])
        self.visits[b] = min(self.visits[b] + 1, self.min_visits)
        return self.weight * score


def seasonal_scores(f, **kw):
    d = Seasonal(**kw)
    return np.array([d.observe(int(t), float(x)) for t, x in zip(f["ts"], f["v"])])


def combined(files, nov, **kw):
    out = []
    for f, n in zip(files, nov):
        s = np.maximum(n, seasonal_scores(f, **kw))
        s[s < FLOOR] = 0.0
        out.append(s)
    return out


if __name__ == "__main__":
    files = common.load_nab()
    nov = [novelty_scores(f["v"]) for f in files]
    args = [a for a in sys.argv[1:] if a not in ("table", "novelty")]
    base = dict(DEFAULTS)
    for kv in args:
        k, v = kv.split("=")
        base[k] = type(DEFAULTS[k])(float(v))
    s0, t0 = corpus_score(files, combined(files, nov, **base))
    print(f"| base {base} | {s0:.2f} | {t0:.3f} |")
    if "table" in sys.argv[1:]:
        for k in DEFAULTS:
            for fac in (0.75, 1.25):
                kw = dict(base)
                kw[k] = type(base[k])(round(base[k] * fac) if isinstance(base[k], int) else base[k] * fac)
                s, t = corpus_score(files, combined(files, nov, **kw))
                print(f"| {k} = {kw[k]:g} | {s:.2f} ({s - s0:+.2f}) | {t:.3f} |")
                sys.stdout.flush()
    if "novelty" in sys.argv[1:]:
        seasonal = [seasonal_scores(f, **base) for f in files]
        for k, v in NOVELTY_DEFAULTS.items():
            for fac in (0.75, 1.25):
                kw = dict(NOVELTY_DEFAULTS)
                kw[k] = type(v)(round(v * fac) if isinstance(v, int) else v * fac)
                out = []
                for f, se in zip(files, seasonal):
                    c = np.maximum(novelty_scores(f["v"], **kw), se)
                    c[c < FLOOR] = 0.0
                    out.append(c)
                s, t = corpus_score(files, out)
                print(f"| novelty {k} = {kw[k]:g} | {s:.2f} ({s - s0:+.2f}) | {t:.3f} |")
                sys.stdout.flush()
