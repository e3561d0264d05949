"""Port of operators/src/novelty.rs (one-row windows: mean = min = max = value)."""
M64 = (1 << 64) - 1


def mix(h):
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & M64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & M64
    return h ^ (h >> 33)


class Novelty:
    def __init__(self, levels=12, orders=4, smooth=7, tolerance=0.05, suppress_half_life=100, range_block=64,
                 range_blocks=64, table_bits=14, generation=8192, warmup=50):
        self.levels_n, self.orders, self.smooth_n = levels, orders, smooth
        self.tolerance, self.half_life = tolerance, suppress_half_life
        self.range_block, self.generation, self.warmup = range_block, generation, warmup
        self.bits = 1 << max(6, min(24, table_bits))
        self.seen = 0
        self.block_lo = [0.0] * max(range_blocks, 1); self.block_hi = [0.0] * max(range_blocks, 1)
        self.block_pos = 0; self.closed_blocks = 0; self.closed_lo = self.closed_hi = 0.0
        self.in_block = 0; self.open_lo = self.open_hi = 0.0
        self.lv = [0] * max(orders, 1); self.level_pos = 0
        self.current = bytearray(self.bits); self.previous = bytearray(self.bits)
        self.in_generation = 0
        self.nov = [0.0] * max(smooth, 1); self.nov_pos = 0
        self.peak = 0.0

    def range(self):
        if self.closed_blocks > 0 and self.in_block > 0:
            return min(self.closed_lo, self.open_lo), max(self.closed_hi, self.open_hi)
        if self.closed_blocks > 0:
            return self.closed_lo, self.closed_hi
        if self.in_block > 0:
            return self.open_lo, self.open_hi
        return None

    def spatial(self, lo, hi, mn, mx):
        beyond = max(mx - hi, lo - mn)
        if beyond <= 0.0:
            return 0.0
        width = hi - lo
        floor = 2.220446049250313e-16 * 16.0 * max(abs(lo), abs(hi))
        if width <= floor:
            return 1.0 if beyond > floor else 0.0
        e = beyond / width
        return e / (e + max(self.tolerance, 2.2250738585072014e-308))

    def level(self, lo, hi, x):
        L = max(self.levels_n, 1)
        width = hi - lo
        if width <= 0.0:
            return 0 if x < lo else (L + 1 if x > hi else 1)
        import math
        q = math.floor((x - lo) / width * L)
        if q < 0:
            return 0
        if q >= L:
            return L + 1 if x > hi else L
        return int(q) + 1

    def sequence(self, level):
        k = len(self.lv)
        self.lv[self.level_pos] = level
        have = min(self.seen + 1, k)
        h = 0x9E3779B97F4A7C15
        unseen = 0
        for j in range(have):
            l = self.lv[(self.level_pos + k - j) % k]
            h = mix(h ^ (((l + 1) * 0x0100000001B3) & M64) ^ ((j << 56) & M64))
            slot = h & (self.bits - 1)
            if not (self.current[slot] or self.previous[slot]):
                unseen += 1
            self.current[slot] = 1
        self.level_pos = (self.level_pos + 1) % k
        self.in_generation += 1
        if self.in_generation >= max(self.generation, 1):
            self.in_generation = 0
            self.current, self.previous = self.previous, self.current
            self.current[:] = bytes(self.bits)
        self.nov[self.nov_pos] = unseen / have
        self.nov_pos = (self.nov_pos + 1) % len(self.nov)
        return sum(self.nov) / len(self.nov)

    def learn_range(self, mn, mx):
        if self.in_block == 0:
            self.open_lo, self.open_hi = mn, mx
        else:
            self.open_lo = min(self.open_lo, mn); self.open_hi = max(self.open_hi, mx)
        self.in_block += 1
        if self.in_block < max(self.range_block, 1):
            return
        b = len(self.block_lo)
        self.block_lo[self.block_pos] = self.open_lo; self.block_hi[self.block_pos] = self.open_hi
        self.block_pos = (self.block_pos + 1) % b
        self.closed_blocks = min(self.closed_blocks + 1, b)
        self.in_block = 0
        v = self.closed_blocks
        self.closed_lo = min(self.block_lo[:v]); self.closed_hi = max(self.block_hi[:v])

    def observe(self, x):
        mn = mx = mean = x
        r = self.range()
        spatial = self.spatial(r[0], r[1], mn, mx) if r else 0.0
        level = self.level(r[0], r[1], mean) if r else 0
        seq = self.sequence(level)
        self.learn_range(mn, mx)
        self.seen += 1
        if not self.seen > self.warmup:
            return 0.0
        raw = min(max(max(spatial, seq), 0.0), 1.0)
        score = max(raw - self.peak, 0.0)
        decay = 0.5 ** (1.0 / max(self.half_life, 1))
        self.peak = max(self.peak * decay, raw)
        return score
