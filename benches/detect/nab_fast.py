"""Vectorised replica of the novelty detector + weekly seasonal channel and of NAB's scorer.

Same results as `novelty.py` / `nab_seasonal.py` / `common.optimise_threshold` (checked by
`python3 nab_fast.py check`), about 100× faster, so that plateau searches over many settings
are affordable. Caches per file: the learned range (per range_block, range_blocks), the levels
and the share of unseen contexts per (levels, orders, generation), the seasonal channel's
scores per channel settings.

Two semantics of the suppression peak during warm-up:
- `peak_in_warmup=False`: `novelty.py` (the peak starts learning after warm-up);
- `peak_in_warmup=True`: `operators/src/novelty.rs` (the peak learns during warm-up too).
"""
import sys

import numpy as np
import pandas as pd

import common

U = np.uint64
FLOOR = 0.01
WEEK_MS = 7 * 86_400_000

NOVELTY = dict(levels=12, orders=4, smooth=7, tolerance=0.05, suppress_half_life=100, range_block=64, range_blocks=64,
               generation=8192, warmup=50)
SEASONAL = dict(buckets=168, alpha=0.1, tolerance=0.2, half_life=400, weight=0.5, min_visits=3, warmup=50)


def mix(h):
    h = h ^ (h >> U(33))
    h = h * U(0xFF51AFD7ED558CCD)
    h = h ^ (h >> U(33))
    h = h * U(0xC4CEB9FE1A85EC53)
    return h ^ (h >> U(33))


def block_range(x, rb, nb):
    """(lo, hi) of the range memory before each row is learnt (inf/-inf where there is none)."""
    n = len(x)
    rb, nb = max(int(rb), 1), max(int(nb), 1)
    blocks = -(-n // rb)
    xp = np.concatenate([x, np.full(blocks * rb - n, np.nan)]).reshape(blocks, rb)
    with np.errstate(all="ignore"):
        open_lo = np.full((blocks, rb), np.inf)
        open_hi = np.full((blocks, rb), -np.inf)
        open_lo[:, 1:] = np.fmin.accumulate(xp, axis=1)[:, :-1]
        open_hi[:, 1:] = np.fmax.accumulate(xp, axis=1)[:, :-1]
        bmin = np.nanmin(xp, 1) if blocks else np.zeros(0)
        bmax = np.nanmax(xp, 1) if blocks else np.zeros(0)
    closed_lo = np.full(blocks, np.inf)
    closed_hi = np.full(blocks, -np.inf)
    for b in range(1, blocks):
        a = max(0, b - nb)
        closed_lo[b] = bmin[a:b].min()
        closed_hi[b] = bmax[a:b].max()
    lo = np.minimum(closed_lo[:, None], open_lo).ravel()[:n]
    hi = np.maximum(closed_hi[:, None], open_hi).ravel()[:n]
    return lo, hi


def excursion(lo, hi, x, tol):
    """Spatial novelty of a one-row window (mean = min = max = x); 0 where there is no range."""
    have = np.isfinite(lo)
    lo_ = np.where(have, lo, 0.0)
    hi_ = np.where(have, hi, 0.0)
    beyond = np.maximum(x - hi_, lo_ - x)
    width = hi_ - lo_
    floor = 2.220446049250313e-16 * 16.0 * np.maximum(np.abs(lo_), np.abs(hi_))
    with np.errstate(all="ignore"):
        e = beyond / width
        s = e / (e + max(tol, 2.2250738585072014e-308))
    s = np.where(width <= floor, np.where(beyond > floor, 1.0, 0.0), s)
    return np.where(have & (beyond > 0.0), s, 0.0)


def levels_of(lo, hi, x, L):
    L = max(int(L), 1)
    have = np.isfinite(lo)
    lo_ = np.where(have, lo, 0.0)
    hi_ = np.where(have, hi, 0.0)
    width = hi_ - lo_
    with np.errstate(all="ignore"):
        q = np.floor((x - lo_) / width * L)
    out = np.where(q < 0, 0, np.where(q >= L, np.where(x > hi_, L + 1, L), np.nan_to_num(q) + 1))
    flat = np.where(x < lo_, 0, np.where(x > hi_, L + 1, 1))
    out = np.where(width <= 0.0, flat, out)
    return np.where(have, out, 0).astype(np.int64)


def levels_variant(lo, hi, x, L, v):
    h = v.get("hyst", 0.0)
    if not h:
        return levels_of(lo, hi, x, L)
    # Hysteresis: keep the previous in-range level while the value stays within h cells of it.
    base = levels_of(lo, hi, x, L)
    out = base.copy()
    prev = None
    width = hi - lo
    for i in range(len(x)):
        b = int(base[i])
        if 1 <= b <= L and prev is not None and 1 <= prev <= L and width[i] > 0:
            pos = (x[i] - lo[i]) / width[i] * L  # level prev covers [prev - 1, prev)
            if prev - 1 - h <= pos < prev + h:
                b = prev
        out[i] = b
        prev = b
    return out


def unseen_share(lv, orders, generation=8192, table_bits=14):
    """Share of the row's contexts (lengths 1..orders) not seen in this generation or the last."""
    n = len(lv)
    k = max(int(orders), 1)
    bits = 1 << max(6, min(24, table_bits))
    g = max(int(generation), 1)
    h = np.full(n, 0x9E3779B97F4A7C15, dtype=U)
    rows, slots, keys = [], [], []
    for j in range(k):
        lj = np.zeros(n, dtype=U)
        if j < n:
            lj[j:] = lv[:n - j].astype(U)
        h = mix(h ^ ((lj + U(1)) * U(0x0100000001B3)) ^ U((j << 56) & ((1 << 64) - 1)))
        r = np.arange(j, n)
        rows.append(r)
        slots.append((h[j:] & U(bits - 1)).astype(np.int64))
        keys.append(r * k + j)
    rows = np.concatenate(rows); slots = np.concatenate(slots); keys = np.concatenate(keys)
    o = np.lexsort((keys, slots))
    rs, ss = rows[o], slots[o]
    same = np.zeros(len(o), bool)
    same[1:] = ss[1:] == ss[:-1]
    prev_row = np.empty(len(o), np.int64)
    prev_row[1:] = rs[:-1]
    prev_row[0] = -1
    seen = same & (prev_row // g >= rs // g - 1)
    unseen = np.bincount(rs[~seen], minlength=n)[:n]
    have = np.minimum(np.arange(n) + 1, k)
    return unseen / have


def smoothed(u, smooth, variant=()):
    if dict(variant).get("smooth") == "ewma":
        # Exponentially weighted mean, alpha = 2 / (smooth + 1) (same centre of mass as the box).
        a = 2.0 / (max(int(smooth), 1) + 1.0)
        out = [0.0] * len(u); m = 0.0
        for i, x in enumerate(u.tolist()):
            m += a * (x - m); out[i] = m
        return np.array(out)
    """Mean of the last `smooth` shares, summed in the ring's slot order (bit-exact with the replica)."""
    s = max(int(smooth), 1)
    n = len(u)
    i = np.arange(n)
    acc = np.zeros(n)
    for p in range(s):
        r = i - ((i - p) % s)
        acc = acc + np.where(r >= 0, u[np.maximum(r, 0)], 0.0)
    return acc / s


def suppressed(raw, half_life, warmup, peak_in_warmup):
    """max(raw - running peak, 0), the peak halving every half_life rows; 0 during warm-up.
    A plain loop: the peak's rounding decides ties at the corpus threshold, so it is kept exact."""
    decay = 0.5 ** (1.0 / max(int(half_life), 1))
    out = [0.0] * len(raw)
    peak = 0.0
    w = int(warmup)
    for i, r in enumerate(raw.tolist()):
        if i < w:
            if peak_in_warmup:
                peak = max(peak * decay, r)
            continue
        out[i] = max(r - peak, 0.0)
        peak = max(peak * decay, r)
    return np.array(out)


class Corpus:
    def __init__(self, files=None, peak_in_warmup=False):
        self.files = files if files is not None else common.load_nab()
        self.piw = peak_in_warmup
        self._range, self._lv, self._u, self._seas_pre, self._seas = {}, {}, {}, {}, {}
        self.scorers = {p: Scorer(self.files, p) for p in common.PROFILES}

    def rng(self, fi, rb, nb):
        key = (fi, rb, nb)
        if key not in self._range:
            self._range[key] = block_range(self.files[fi]["v"], rb, nb)
        return self._range[key]

    def unseen(self, fi, levels, orders, rb, nb, generation, variant=()):
        key = (fi, levels, orders, rb, nb, generation, variant)
        if key not in self._u:
            lo, hi = self.rng(fi, rb, nb)
            lk = (fi, levels, rb, nb, variant)
            if lk not in self._lv:
                self._lv[lk] = levels_variant(lo, hi, self.files[fi]["v"], levels, dict(variant))
            self._u[key] = unseen_share(self._lv[lk], orders, generation)
        return self._u[key]

    def novelty(self, fi, variant=(), **kw):
        c = dict(NOVELTY); c.update(kw)
        x = self.files[fi]["v"]
        lo, hi = self.rng(fi, c["range_block"], c["range_blocks"])
        sp = excursion(lo, hi, x, c["tolerance"])
        seq = smoothed(self.unseen(fi, c["levels"], c["orders"], c["range_block"], c["range_blocks"],
                                   c["generation"], variant), c["smooth"], variant)
        norm = dict(variant).get("norm")
        if norm:  # unseen contexts over the last `smooth` rows per a fixed count, not per orders · smooth
            seq = seq * (max(int(c["smooth"]), 1) * max(int(c["orders"]), 1) / norm)
        raw = np.clip(np.maximum(sp, seq), 0.0, 1.0)
        return suppressed(raw, c["suppress_half_life"], c["warmup"], self.piw)

    def seasonal(self, fi, **kw):
        c = dict(SEASONAL); c.update(kw)
        key = (fi,) + tuple(sorted(c.items()))
        if key in self._seas:
            return self._seas[key]
        f = self.files[fi]
        pk = (fi, c["buckets"], c["alpha"], c["min_visits"])
        if pk not in self._seas_pre:
            n = max(int(c["buckets"]), 1)
            mv = max(int(c["min_visits"]), 1)
            bs = (f["ts"] % WEEK_MS) * n // WEEK_MS
            mean = [0.0] * n; visits = [0] * n
            scored = np.zeros(len(bs), bool); res = np.zeros(len(bs))
            a = c["alpha"]
            for i, (b, x) in enumerate(zip(bs.tolist(), f["v"].tolist())):
                if visits[b] >= mv:
                    scored[i] = True; res[i] = x - mean[b]
                mean[b] = x if visits[b] == 0 else mean[b] + a * (x - mean[b])
                if visits[b] < mv:
                    visits[b] += 1
            self._seas_pre[pk] = (scored, res[scored])
        scored, r = self._seas_pre[pk]
        lo, hi = block_range(r, 64, 64)
        raw = excursion(lo, hi, r, c["tolerance"])
        # Peak learns from the first residual (as in both replicas); scored after `warmup` residuals.
        s = suppressed(raw, c["half_life"], int(c["warmup"]), True)
        out = np.zeros(len(scored))
        out[scored] = np.clip(c["weight"] * s, 0.0, 1.0)
        self._seas[key] = out
        return out

    def scores(self, novelty=None, seasonal=None, variant=()):
        out = []
        for fi in range(len(self.files)):
            s = self.novelty(fi, variant=variant, **(novelty or {}))
            se = self.seasonal(fi, **(seasonal or {}))
            if se is not None:
                s = np.maximum(s, se)
            s = np.where(s < FLOOR, 0.0, s)
            out.append(s)
        return out

    def score(self, novelty=None, seasonal=None, profile="standard", variant=()):
        return self.scorers[profile].score(self.scores(novelty, seasonal, variant))


class Scorer:
    """NAB's threshold sweep (common.optimise_threshold), vectorised; weights precomputed."""

    def __init__(self, files, profile):
        p = common.PROFILES[profile]
        self.p = p
        W, WID, self.start = [], [], []
        nwin = 0
        for f in files:
            n = len(f["v"])
            c, ids = common.candidates(np.zeros(n), f["windows"], p)
            idmap = {k: nwin + j for j, k in enumerate(ids)}
            nwin += len(ids)
            W.append(np.array([w for _, w, _ in c])); WID.append(np.array([idmap[k] if k >= 0 else -1 for _, _, k in c]))
            self.start.append(common.probation_rows(n))
        self.W, self.WID, self.nwin = np.concatenate(W), np.concatenate(WID), nwin

    def score(self, scores):
        s = np.concatenate([np.asarray(x)[a:] for x, a in zip(scores, self.start)])
        o = np.argsort(-s, kind="stable")
        s, w, wid = s[o], self.W[o], self.WID[o]
        fn = -self.p[2]
        fp = np.cumsum(np.where(wid < 0, w, 0.0))
        idx = np.nonzero(wid >= 0)[0]
        ser = pd.Series(np.maximum(w[idx], fn))
        cm = ser.groupby(wid[idx]).cummax()
        prev = cm.groupby(wid[idx]).shift(1).fillna(fn)
        delta = np.zeros(len(s))
        delta[idx] = (cm - prev).to_numpy()
        total = fp + np.cumsum(delta) + fn * self.nwin
        ends = np.nonzero(np.r_[s[1:] != s[:-1], True])[0]
        best_raw, thr = fn * self.nwin, np.inf
        if len(ends):
            k = ends[np.argmax(total[ends])]
            if total[k] > best_raw:
                best_raw, thr = total[k], s[k]
        return common.normalised(best_raw, self.nwin, self.p), thr


if __name__ == "__main__" and sys.argv[1:2] == ["check"]:
    # Agreement with the slow replicas (novelty.py, nab_seasonal.py, common.optimise_threshold).
    import nab_today
    import nab_seasonal
    files = common.load_nab()
    C = Corpus(files)
    for kw in ({}, {"levels": 15, "orders": 3, "smooth": 5}):
        worst = 0.0
        for fi in (0, 7, 20):
            slow = nab_today.novelty_scores(files[fi]["v"], **kw)
            fast = C.novelty(fi, **kw); fast = np.where(fast < FLOOR, 0.0, fast)
            worst = max(worst, float(np.abs(slow - fast).max()))
        print(f"novelty {kw}: max |slow - fast| on 3 files {worst:.2e}")
    worst = 0.0
    for fi in (0, 7, 20):
        worst = max(worst, float(np.abs(nab_seasonal.seasonal_scores(files[fi], **SEASONAL) - C.seasonal(fi)).max()))
    print(f"seasonal: max |slow - fast| on 3 files {worst:.2e}")
    sc = C.scores()
    for prof in common.PROFILES:
        slow = nab_today.corpus_score(files, sc, prof)
        print(f"{prof}: slow scorer {slow[0]:.4f} at {slow[1]:.4f}, fast {C.score(profile=prof)[0]:.4f}")
