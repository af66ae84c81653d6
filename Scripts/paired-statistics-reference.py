#!/usr/bin/env python3
"""Reference values for Tests/CompareTests/PairedStatisticsTests.swift, computed independently of
the Swift code: McNemar p-values from SciPy (exact binomial test, chi-square survival) and the
paired bootstrap interval of a tiny two-seed case from NumPy (the same SplitMix64 stream and
multiply-high index as `surgeon compare`, NumPy's default linear percentile).

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
draws, generator = 2000, splitmix64(20_240_601)
means = []
for _ in range(draws):
    indices = [(next(generator) * n) >> 64 for _ in range(n)]
    means.append(differences[indices].sum() / (n * seeds))
print("first draw's mean:", repr(float(means[0])))
print("ci95:", [repr(float(v)) for v in np.percentile(means, [2.5, 97.5])])
print("percentile of [0, 1, 2, 10] at 0.025, 0.5, 0.975:",
      [repr(float(v)) for v in np.percentile([0, 1, 2, 10], [2.5, 50, 97.5])])
