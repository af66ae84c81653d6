#!/usr/bin/env python3
"""Reference values for Tests/CompareTests/PairedStatisticsTests.swift, computed independently of
the Swift code: McNemar p-values from SciPy (exact binomial test, chi-square survival) and the
paired bootstrap intervals of a tiny case from NumPy (the same SplitMix64 stream and
multiply-high index as `surgeon compare`, NumPy's default linear percentile): over test
examples for two seeds, and over seeds then examples (the interval with the seed spread) for
two and three seeds.

    pip install numpy scipy
    python3 Scripts/paired-statistics-reference.py
"""
import numpy as np
from scipy import stats

MASK = (1 << 64) - 1


def splitmix64(seed):
    state = seed
    while True:
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        yield z ^ (z >> 31)


def mcnemar(b, c):
    n = b + c
    if n == 0:
        return 1.0
    if n < 25:
        return stats.binomtest(min(b, c), n, 0.5).pvalue
    statistic = max(abs(b - c) - 1, 0) ** 2 / n
    return stats.chi2.sf(statistic, 1)


print("McNemar p:")
for b, c in [(0, 0), (5, 5), (1, 9), (3, 12), (0, 7), (12, 13), (30, 12), (100, 130), (7, 31)]:
    print(f"  b={b} c={c}: {float(mcnemar(b, c))!r}")

# The tiny case: 12 test examples, two seeds; 1 = correct.
row = [[1, 1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1], [1, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1]]
reference = [[1, 0, 0, 1, 0, 0, 1, 1, 1, 1, 1, 0], [1, 0, 0, 1, 1, 0, 1, 1, 0, 1, 1, 1]]
row, reference = np.array(row), np.array(reference)
differences = (row - reference).sum(axis=0)
n, seeds = differences.size, row.shape[0]
print("differences:", differences.tolist())
print("delta:", repr(float(differences.sum() / (n * seeds))))
b = int(((row == 1) & (reference == 0)).sum())
c = int(((row == 0) & (reference == 1)).sum())
print(f"discordant: row only {b}, reference only {c}, p {float(mcnemar(b, c))!r}")


def over_examples(differences, seeds, draws, seed):
    """Each draw: n example indices with replacement; the summed differences' mean."""
    n = differences.size
    generator = splitmix64(seed)
    return [differences[[(next(generator) * n) >> 64 for _ in range(n)]].sum() / (n * seeds)
            for _ in range(draws)]


def over_seeds_and_examples(per_seed, draws, seed):
    """Each draw: k seed indices with replacement, then n example indices (one stream)."""
    k, n = per_seed.shape
    generator = splitmix64(seed)
    means = []
    for _ in range(draws):
        chosen = [(next(generator) * k) >> 64 for _ in range(k)]
        examples = [(next(generator) * n) >> 64 for _ in range(n)]
        means.append(per_seed[np.ix_(chosen, examples)].sum() / (n * k))
    return means


def interval(means):
    return [repr(float(v)) for v in np.percentile(means, [2.5, 97.5])]


means = over_examples(differences, seeds, 2000, 20_240_601)
print("first draw's mean:", repr(float(means[0])))
print("ci95:", interval(means))
two = over_seeds_and_examples(row - reference, 2000, 20_240_601)
print("with the seed spread: first draw", repr(float(two[0])), "ci95", interval(two))
# A third seed on which the row does much worse: the seeds disagree.
row3 = np.vstack([row, [0, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 1]])
reference3 = np.vstack([reference, [1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1]])
per_seed3 = row3 - reference3
print("three seeds: delta", repr(float(per_seed3.sum() / per_seed3.size)))
print("three seeds, ci95:", interval(over_examples(per_seed3.sum(axis=0), 3, 2000, 20_240_601)))
print("three seeds, with the seed spread:",
      interval(over_seeds_and_examples(per_seed3, 2000, 20_240_601)))
print("percentile of [0, 1, 2, 10] at 0.025, 0.5, 0.975:",
      [repr(float(v)) for v in np.percentile([0, 1, 2, 10], [2.5, 50, 97.5])])
