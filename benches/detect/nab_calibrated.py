"""NAB: novelty scores calibrated per file on its probationary (normal) period."""
import itertools

import numpy as np
import common
from nab_today import corpus_score

if __name__ == "__main__":
    files = common.load_nab()
    raw = list(np.load("/tmp/nab_novelty.npy", allow_pickle=True))
    base, thr = corpus_score(files, raw)
    print(f"today (replica): {base:.1f} at {thr:.4f}")
    for q, floor, mode in itertools.product([0.9, 0.99, 1.0], [0.01, 0.03, 0.1], ["ratio", "excess"]):
        cal = []
        for f, s in zip(files, raw):
            p = common.probation_rows(len(s))
            ref = max(np.quantile(s[:p], q) if p else 0.0, floor)
            cal.append(s / ref if mode == "ratio" else np.maximum(s - ref, 0.0))
        sc, t = corpus_score(files, cal)
        print(f"q {q} floor {floor} {mode:6s}: {sc:.1f} at {t:.4f}")
