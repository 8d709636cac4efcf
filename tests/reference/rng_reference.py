#!/usr/bin/python3
"""Independent reference for core/rng.c: the key schedule (chained SplitMix64
over seed, round, client, purpose) and xoshiro256** written from their
published definitions (Vigna, https://prng.di.unimi.it/). Prints the first
outputs for two keys; tests/test_rng.c embeds them.

Run: /usr/bin/python3 tests/reference/rng_reference.py
"""
M = (1 << 64) - 1


def splitmix(x):
    x = (x + 0x9E3779B97F4A7C15) & M
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
    return x, z ^ (z >> 31)


def rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & M


def seed(*key):
    h = 0x6A09E667F3BCC908
    for k in key:
        h ^= k
        _, h = splitmix(h)
    s = []
    for _ in range(4):
        h, z = splitmix(h)
        s.append(z)
    return s


def nxt(s):
    result = (rotl((s[1] * 5) & M, 7) * 9) & M
    t = (s[1] << 17) & M
    s[2] ^= s[0]
    s[3] ^= s[1]
    s[1] ^= s[2]
    s[0] ^= s[3]
    s[2] ^= t
    s[3] = rotl(s[3], 45)
    return result


if __name__ == "__main__":
    for key in [(1, 2, 3, 4), (42, 0, M, 5)]:
        s = seed(*key)
        print(key, ", ".join(f"0x{nxt(s):016x}ULL" for _ in range(4)))
