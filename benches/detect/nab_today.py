"""NAB dev files through the novelty replica, NAB's standard scoring with the corpus threshold."""
import sys

import numpy as np
import common
from novelty import Novelty

FLOOR = 0.01


def novelty_scores(v, **kw):
    d = Novelty(**kw)
    s = np.array([d.observe(x) for x in v])
    s[s < FLOOR] = 0.0
    return s


def corpus_score(files, scores, profile="standard"):
    p = common.PROFILES[profile]
    corpus = [(s, f["windows"]) for f, s in zip(files, scores)]
    thr, raw, nw = common.optimise_threshold(corpus, p)
    return common.normalised(raw, nw, p), thr


if __name__ == "__main__":
    files = common.load_nab()
    scores = [novelty_scores(f["v"]) for f in files]
    np.save("/tmp/nab_novelty.npy", np.array(scores, dtype=object), allow_pickle=True)
    s, thr = corpus_score(files, scores)
    print(f"NAB standard {s:.1f} at threshold {thr:.4f} ({len(files)} files, {sum(len(f['windows']) for f in files)} windows)")
