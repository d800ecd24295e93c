"""Figures from figures: ratios, callgrind passes compared pairwise, the
bootstrap interval of a median."""

import statistics


def fmt_ratio(a, b):
    return "%.2f" % (a / b) if a and b else "-"


def paired(passes, a, b, op, spec):
    """op(row a, row b) within each callgrind pass: median (min..max), so
    that a pass that ran slower as a whole shifts both rows alike."""
    if not passes or a not in passes[0] or b not in passes[0]:
        return "-"
    vals = sorted(op(p[a], p[b]) for p in passes)
    text = spec % statistics.median(vals)
    if len(vals) > 1:
        text += " (%s..%s)" % (spec % vals[0], spec % vals[-1])
    return text


def median_interval(values, rng, rounds=2000):
    """95% bootstrap interval of the median of values."""
    medians = sorted(statistics.median(rng.choices(values, k=len(values)))
                     for _ in range(rounds))
    return medians[int(rounds * 0.025)], medians[int(rounds * 0.975) - 1]

