"""NAB standard score of the novelty detector (replica) at its defaults and at ±25 % on each setting."""
import sys

import common
from nab_today import corpus_score, novelty_scores

DEFAULTS = dict(levels=12, orders=4, smooth=7, tolerance=0.05, suppress_half_life=100, range_block=64, range_blocks=64,
                generation=8192, warmup=50)

if __name__ == "__main__":
    files = common.load_nab()
    base = dict(DEFAULTS)
    for kv in sys.argv[1:]:
        k, v = kv.split("="); base[k] = type(DEFAULTS[k])(float(v))
    def run(kw):
        return corpus_score(files, [novelty_scores(f["v"], **kw) for f in files])
    s0, t0 = run(base)
    print(f"| base {base} | {s0:.1f} | {t0:.3f} |")
    for k in ["levels", "orders", "smooth", "tolerance", "suppress_half_life", "range_block", "range_blocks", "generation", "warmup"]:
        for f in (0.75, 1.25):
            kw = dict(base)
            kw[k] = type(base[k])(round(base[k] * f) if isinstance(base[k], int) else base[k] * f)
            s, t = run(kw)
            print(f"| {k} = {kw[k]} | {s:.1f} ({s - s0:+.1f}) | {t:.3f} |")
            sys.stdout.flush()
