"""NAB: is there a plateau (score >= 72, every ±25 % move of every setting costs <= 2 points)?

Uses nab_fast.py (bit-exact with novelty.py / nab_seasonal.py / common.py, ~0.1 s per corpus score).

    python3 nab_plateau.py grid [VARIANT ...]   # centres levels 8..14 × orders 3..6 × smooth 6..12,
                                                # score and the six ±25 % moves of those three
    python3 nab_plateau.py table [key=value ...] # ±25 % table of all 16 settings at a centre
                                                # (novelty keys as is, channel keys as s.key)
    python3 nab_plateau.py random [N]           # N random centres over 7 settings (seed 19),
                                                # each >= 72 checked move by move
    python3 nab_plateau.py                      # the grid (today's detector) and the tables at
                                                # today's centre and at the grid's best centre

VARIANTs (structural changes tried, Python literals): "()" today; "(('smooth','ewma'),)" an
exponentially weighted mean instead of the box of `smooth` rows; "(('hyst',0.5),)" quantisation
with hysteresis (keep the previous level while the value is within 0.5 cell of it);
"(('norm',28),)" unseen contexts over the last `smooth` rows divided by a fixed 28 instead of
orders · smooth; combinations.
"""
import itertools
import sys
import time

import numpy as np

from nab_fast import NOVELTY, SEASONAL, Corpus

TOL = 2.0
GOAL = 72.0


def move(v, f):
    return max(1, round(v * f)) if isinstance(v, int) else v * f


def grid(C, var=()):
    cache = {}

    def S(L, O, Sm):
        k = (L, O, Sm)
        if k not in cache:
            cache[k] = C.score(dict(levels=L, orders=O, smooth=Sm), variant=var)[0]
        return cache[k]

    rows = []
    t = time.time()
    for L, O, Sm in itertools.product(range(8, 15), range(3, 7), range(6, 13)):
        c = S(L, O, Sm)
        mv = [S(move(L, f), O, Sm) - c for f in (.75, 1.25)] + [S(L, move(O, f), Sm) - c for f in (.75, 1.25)] + \
             [S(L, O, move(Sm, f)) - c for f in (.75, 1.25)]
        rows.append((L, O, Sm, c, min(mv), mv))
    vals = np.array(list(cache.values()))
    print(f"== variant {var}: {time.time() - t:.0f} s, {len(cache)} settings; score mean {vals.mean():.2f} "
          f"sd {vals.std():.2f} max {vals.max():.2f}; centres >= {GOAL:g}: {sum(r[3] >= GOAL for r in rows)}, "
          f"worst move >= -{TOL:g}: {sum(r[4] >= -TOL for r in rows)}, both: "
          f"{sum(r[3] >= GOAL and r[4] >= -TOL for r in rows)} of {len(rows)}")
    rows.sort(key=lambda r: -min(r[3] - GOAL, r[4] + TOL))
    print("| levels | orders | smooth | score | worst | L −25 % | L +25 % | O −25 % | O +25 % | S −25 % | S +25 % |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows[:8]:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.2f} | {r[4]:+.2f} | " + " | ".join(f"{x:+.2f}" for x in r[5]) + " |")
    sys.stdout.flush()
    C._u.clear(); C._lv.clear()
    return rows[0]


def table(C, nov, seas, var=()):
    s0 = C.score(nov, seas, variant=var)[0]
    lf, lfn = C.score(nov, seas, "low_fp", var)[0], C.score(nov, seas, "low_fn", var)[0]
    print(f"\ncentre: novelty {nov}, seasonal {seas}, variant {var}")
    print(f"standard {s0:.2f}, low_FP {lf:.2f}, low_FN {lfn:.2f}\n")
    print("| setting (±25 %) | −25 % | +25 % |\n|---|---|---|")
    worst = 0.0
    for group, base in (("novelty", nov), ("channel", seas)):
        for k, v in base.items():
            cells = []
            for f in (0.75, 1.25):
                kw = dict(base); kw[k] = move(v, f)
                s = C.score(kw, seas, variant=var)[0] if group == "novelty" else C.score(nov, kw, variant=var)[0]
                worst = min(worst, s - s0)
                bold = "**" if s - s0 < -TOL else ""
                cells.append(f"{s:.2f} ({bold}{s - s0:+.2f}{bold})")
            print(f"| {group} {k} {v:g} | " + " | ".join(cells) + " |")
            sys.stdout.flush()
    verdict = "a plateau" if s0 >= GOAL and worst >= -TOL else "not a plateau"
    print(f"\nworst move {worst:+.2f}: {verdict} (goal: >= {GOAL:g}, every move >= -{TOL:g})")


def random_search(C, draws=400, seed=19):
    import random
    rnd = random.Random(seed)
    order = [("n", "levels"), ("n", "orders"), ("n", "smooth"), ("s", "buckets"), ("n", "suppress_half_life"),
             ("n", "tolerance"), ("s", "weight"), ("s", "tolerance"), ("s", "half_life"), ("n", "range_block"),
             ("n", "range_blocks"), ("s", "alpha"), ("n", "generation"), ("s", "min_visits"), ("n", "warmup"),
             ("s", "warmup")]
    fails, passed, checked = {}, [], 0
    for _ in range(draws):
        nov, seas = dict(NOVELTY), dict(SEASONAL)
        nov.update(levels=rnd.randint(8, 16), orders=rnd.randint(3, 6), smooth=rnd.randint(5, 13),
                   suppress_half_life=rnd.choice([60, 75, 90, 100, 120, 150]),
                   tolerance=rnd.choice([0.03, 0.04, 0.05, 0.065, 0.08]))
        seas.update(half_life=rnd.choice([300, 400, 500, 600]), weight=rnd.choice([0.4, 0.5, 0.6]))
        s0 = C.score(nov, seas)[0]
        if s0 < GOAL:
            continue
        checked += 1
        worst, bad = 0.0, None
        for grp, k in order:
            for f in (0.75, 1.25):
                a, b = dict(nov), dict(seas)
                d = a if grp == "n" else b
                d[k] = move(d[k], f)
                worst = min(worst, C.score(a, b)[0] - s0)
                if worst < -TOL:
                    bad = k
                    break
            if bad:
                break
        fails[bad or "-"] = fails.get(bad or "-", 0) + 1
        print(f"{s0:.2f} worst so far {worst:+.2f} failed on {bad or '-'}: {nov} {seas}", flush=True)
        if not bad:
            passed.append((s0, nov, seas))
    print(f"{draws} centres drawn, {checked} >= {GOAL:g}, failed on: {fails}; plateaus: {passed}")


def parse(args):
    nov, seas = dict(NOVELTY), dict(SEASONAL)
    for kv in args:
        k, v = kv.split("=")
        d, k = (seas, k[2:]) if k.startswith("s.") else (nov, k)
        d[k] = type(d[k])(float(v))
    return nov, seas


if __name__ == "__main__":
    C = Corpus()
    a = sys.argv[1:]
    if a[:1] == ["grid"]:
        for v in (a[1:] or ["()"]):
            grid(C, eval(v))
    elif a[:1] == ["random"]:
        random_search(C, int(a[1]) if len(a) > 1 else 400)
    elif a[:1] == ["table"]:
        table(C, *parse(a[1:]))
    else:
        best = grid(C)
        table(C, dict(NOVELTY), dict(SEASONAL))
        nov = dict(NOVELTY); nov.update(levels=best[0], orders=best[1], smooth=best[2])
        table(C, nov, dict(SEASONAL))
