"""±25 % on each parameter of the chosen normal-model settings (SKAB valve1, --train-rows 400)."""
import sys

import common
from skab_hyst import evaluate
from skab_search import chunks

BASE = dict(span=12, margin=4.0, off=0.5, eta_min=0.6, q=0.99)

if __name__ == "__main__":
    files = common.load_skab("valve1")
    free = chunks(common.load_skab("anomaly-free"))
    base = dict(BASE)
    if len(sys.argv) > 1:
        for kv in sys.argv[1:]:
            k, v = kv.split("="); base[k] = type(BASE[k])(float(v))
    def row(label, kw):
        f1, far, mar, nab, ffar = evaluate(files, free, **kw)
        print(f"| {label:22s} | {f1:.3f} | {100*far:5.1f} | {100*mar:5.1f} | {nab:6.1f} | {100*ffar:5.1f} |")
        sys.stdout.flush()
    print("| setting | F1 | FAR % | MAR % | cp NAB | anomaly-free FAR % |")
    print("|---|---|---|---|---|---|")
    row("base " + ",".join(f"{k}={v}" for k, v in base.items()), base)
    for k in ["span", "margin", "off", "eta_min"]:
        for f in (0.75, 1.25):
            kw = dict(base); kw[k] = base[k] * f
            if k == "span":
                kw[k] = int(round(kw[k]))
            row(f"{k} x{f}", kw)
    for tail in (0.0075, 0.0125):
        kw = dict(base); kw["q"] = 1 - tail
        row(f"q = {1-tail}", kw)
