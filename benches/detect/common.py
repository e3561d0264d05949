"""Shared pieces of the detection prototypes: SKAB/NAB loaders and the metrics.

- Point-wise F1 / FAR / MAR pooled over files (Vigil's `labelled.rs` PointScores).
- SKAB's changepoint NAB (tsad `chp_score(metric="nab", window_width="60s",
  anomaly_window_destination="righter")`): predicted changepoints are |diff| of the predicted
  outlier labels on the scored rows (first scored row = its label), windows [cp, cp + 60 s].
- Vigil's current changepoint scoring (labelled.rs: NAB windows of 10 % of rows centred on each
  changepoint, every flagged row a detection, NAB's original scorer) for the "before" figure.
- NAB's original scorer, a port of operators/src/scoring.rs (probation, sigmoid, threshold sweep).
"""
import glob
import json
import math
import os

import numpy as np
import pandas as pd

DATA = os.environ.get("VIGIL_DATASETS", "/work/shared/datasets")


def load_skab(folder):
    out = []
    for path in sorted(glob.glob(os.path.join(DATA, "skab", folder, "*.csv"))):
        df = pd.read_csv(path, sep=";")
        df["datetime"] = pd.to_datetime(df["datetime"])
        df = df.sort_values("datetime", kind="stable").reset_index(drop=True)
        ts = df["datetime"].dt.as_unit("ms").astype("int64").to_numpy()
        sensors = [c for c in df.columns if c not in ("datetime", "anomaly", "changepoint")]
        X = df[sensors].to_numpy(float)
        lab = df["anomaly"].to_numpy() > 0.5 if "anomaly" in df else np.zeros(len(df), bool)
        cp = df["changepoint"].to_numpy() > 0.5 if "changepoint" in df else np.zeros(len(df), bool)
        out.append(dict(name=os.path.basename(path), ts=ts, X=X, label=lab, cp=cp, sensors=sensors))
    return out


def pointwise(flags_list, files, train_rows=400):
    tp = fp = fn = tn = 0
    for f, d in zip(flags_list, files):
        fl = np.asarray(f, bool)[train_rows:]
        lb = d["label"][train_rows:]
        tp += int((fl & lb).sum()); fp += int((fl & ~lb).sum())
        fn += int((~fl & lb).sum()); tn += int((~fl & ~lb).sum())
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    far = fp / (fp + tn) if fp + tn else 0.0
    mar = fn / (fn + tp) if fn + tp else 0.0
    return dict(f1=f1, far=far, mar=mar, tp=tp, fp=fp, fn=fn, tn=tn)


PROFILES = {"standard": (1.0, 0.11, 1.0), "low_fp": (1.0, 0.22, 1.0), "low_fn": (1.0, 0.11, 2.0)}


def _tsad_scale(t0, tdet, t1, a_tp, a_fp, detal=1000):
    x = np.linspace(-np.pi / 2, np.pi / 2, detal)
    y = (a_tp - a_fp) / 2 * -1 * np.tanh(x) / np.tanh(np.pi / 2) + (a_tp - a_fp) / 2 + a_fp
    ev = int((tdet - t0) / (t1 - t0) * detal)
    return y[min(ev, detal - 1)]


def skab_cp_nab(flags_list, files, train_rows=400, width_ms=60_000, profile="standard"):
    """SKAB's own changepoint NAB (tsad), pooled over files, normalised."""
    a_tp, a_fp, a_fn = PROFILES[profile]
    a_fp, a_fn = -a_fp, -a_fn
    S = Snull = Sperf = 0.0
    for f, d in zip(flags_list, files):
        ts = d["ts"][train_rows:]
        pred = np.asarray(f, bool)[train_rows:].astype(int)
        pcp = np.abs(np.diff(pred, prepend=0))  # first = pred[0]
        tpred = ts[pcp == 1]
        tcp = ts[d["cp"][train_rows:]]
        wins = [[t, t + width_ms] for t in tcp]
        for i in range(len(wins) - 1):  # cut right window
            if wins[i][1] >= wins[i + 1][0]:
                wins[i + 1][0] = wins[i][1]
        nfp = 0
        if not wins:
            nfp = len(tpred)
        else:
            nfp += int((tpred < wins[0][0]).sum())
            for i, (a, b) in enumerate(wins):
                inw = tpred[(tpred >= a) & (tpred <= b)]
                if len(inw) == 0:
                    S += a_fn
                else:
                    S += _tsad_scale(a, inw[0], b, a_tp, a_fp)
                if i + 1 < len(wins):
                    nfp += int(((tpred > b) & (tpred < wins[i + 1][0])).sum())
            nfp += int((tpred > wins[-1][1]).sum())
        S += a_fp * nfp
        Snull += a_fn * len(wins)
        Sperf += a_tp * len(wins)
    return 100 * (S - Snull) / (Sperf - Snull)


# ---- NAB original scorer (port of operators/src/scoring.rs) ----

def probation_rows(n):
    return min(int(math.floor(0.15 * n)), 750)


def _sig(x):
    if x > 3.0:
        return -1.0
    return 2.0 * (1.0 / (1.0 + math.exp(5.0 * x))) - 1.0


def _tp_w(i, w, p):
    first, last = w
    width = last - first + 1
    return _sig(-(last + 1 - i) / width) * p[0] / _sig(-1.0)


def _fp_w(i, prev, p):
    if prev is None:
        return -p[1]
    first, last = prev
    if last == first:
        return -p[1]
    return _sig(abs(i - last) / (last - first)) * p[1]


def tidy(windows, n):
    rows = sorted((a, min(b, n - 1)) for a, b in windows if a <= b and a < n)
    merged = []
    for a, b in rows:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def candidates(scores, windows, p):
    """(score, weight, window id or -1) per scored row, plus number of windows (for the sweep)."""
    n = len(scores)
    prob = probation_rows(n)
    ws = tidy(windows, n)
    out = []
    nxt, prev = 0, None
    ids = {}
    for k, (a, b) in enumerate(ws):
        if b >= prob:
            ids[k] = True
    for i in range(prob, n):
        while nxt < len(ws) and ws[nxt][1] < i:
            prev = ws[nxt]; nxt += 1
        if nxt < len(ws) and ws[nxt][0] <= i:
            out.append((scores[i], _tp_w(i, ws[nxt], p), nxt))
        else:
            out.append((scores[i], _fp_w(i, prev, p), -1))
    return out, [k for k in ids]


def score_at(scores, windows, thr, p):
    n = len(scores)
    prob = probation_rows(n)
    ws = tidy(windows, n)
    total = 0.0
    for (a, b) in ws:
        if b < prob:
            continue
        det = [i for i in range(max(a, prob), b + 1) if scores[i] >= thr]
        total += _tp_w(det[0], (a, b), p) if det else -p[2]
    nxt, prev = 0, None
    for i in range(prob, n):
        while nxt < len(ws) and ws[nxt][1] < i:
            prev = ws[nxt]; nxt += 1
        inside = nxt < len(ws) and ws[nxt][0] <= i
        if not inside and scores[i] >= thr:
            total += _fp_w(i, prev, p)
    return total


def optimise_threshold(corpus, p):
    """corpus: list of (scores, windows). Returns (threshold, raw total, windows)."""
    cands = []
    wvals = []
    for fi, (scores, windows) in enumerate(corpus):
        c, ids = candidates(scores, windows, p)
        base = len(wvals)
        idmap = {k: base + j for j, k in enumerate(ids)}
        wvals.extend([-p[2]] * len(ids))
        for s, w, k in c:
            if s != s:
                continue
            cands.append((s, w, idmap[k] if k >= 0 else -1))
    cands.sort(key=lambda t: -t[0])
    fps = 0.0
    wsum = sum(wvals)
    best = (math.inf, fps + wsum)
    k = 0
    while k < len(cands):
        thr = cands[k][0]
        while k < len(cands) and cands[k][0] == thr:
            s, w, wid = cands[k]
            if wid < 0:
                fps += w
            elif w > wvals[wid]:
                wsum += w - wvals[wid]; wvals[wid] = w
            k += 1
        if fps + wsum > best[1]:
            best = (thr, fps + wsum)
    return best[0], best[1], len(wvals)


def normalised(raw, windows, p):
    null = -p[2] * windows
    perfect = p[0] * windows
    return 100 * (raw - null) / (perfect - null)


def vigil_cp_nab_today(flags_list, files, train_rows=400):
    """labelled.rs today: centred windows of 10 % of rows, flagged scored rows are detections."""
    p = PROFILES["standard"]
    raw, nw = 0.0, 0
    for f, d in zip(flags_list, files):
        cps = np.where(d["cp"])[0]
        n = len(f)
        width = max(int(n * 0.1 / len(cps)), 1) if len(cps) else 0
        ws = []
        for c in cps:
            l, r = max(c - width // 2, 0), min(c + width // 2, n - 1)
            if ws and l <= ws[-1][1]:
                ws[-1] = (ws[-1][0], max(ws[-1][1], r))
            else:
                ws.append((l, r))
        sc = [1.0 if (fl and i >= train_rows) else 0.0 for i, fl in enumerate(f)]
        raw += score_at(sc, ws, 0.5, p)
        nw += len(ws)
    return normalised(raw, nw, p)


def load_nab():
    base = os.path.join(DATA, "nab")
    labels = json.load(open(os.path.join(base, "labels", "combined_windows.json")))
    files = []
    for path in sorted(glob.glob(os.path.join(base, "data", "*", "*.csv"))):
        cat = os.path.basename(os.path.dirname(path))
        key = f"{cat}/{os.path.basename(path)}"
        df = pd.read_csv(path)
        ts = pd.to_datetime(df["timestamp"]).dt.as_unit("ms").astype("int64").to_numpy()
        v = df["value"].to_numpy(float)
        wins = []
        for a, b in labels.get(key, []):
            ta = pd.Timestamp(a).value // 1_000_000
            tb = pd.Timestamp(b).value // 1_000_000
            first = int(np.searchsorted(ts, ta, "left"))
            past = int(np.searchsorted(ts, tb, "right"))
            if first < past:
                wins.append((first, past - 1))
        prob = probation_rows(len(v))
        wins = tidy([w for w in wins if w[0] >= prob], len(v))
        files.append(dict(key=key, ts=ts, v=v, windows=wins))
    return files
