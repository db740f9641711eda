#!/usr/bin/python3
"""Generate tests/golden/metrics_goldens.txt: multilabel cases with scikit-learn's results.

Run with the system interpreter (Debian python3-sklearn / python3-numpy):

    /usr/bin/python3 tests/golden/make_metrics_goldens.py

The output is deterministic (fixed seeds). tests/metrics/test_metrics.cpp parses it and requires
loom::metrics to agree with every number to 1e-6.

File format (plain text, one record per line, '#' starts a comment line):

    case <name>
    n <N>
    c <C>
    batch <B>                      batch size for the batch-averaged micro mAP
    threshold <t>                  decision threshold for precision / recall / F1
    scores <N*C decimals>          row-major [N, C]; each value is float32(strtod(text))
    targets <N*C chars '0'/'1'>    row-major [N, C], one token without separators
    ap <C values>                  sklearn average_precision_score(average=None)
    map_macro <v>                  average='macro'
    map_micro <v>                  average='micro'
    map_micro_batch_per_batch <v>  mean over batches of per-batch micro AP
    map_micro_batch_per_sample <v> same, weighted by batch size
    prf_micro <p r f>              precision_recall_fscore_support(zero_division=0)
    prf_macro <p r f>
    prf_weighted <p r f>
    prf_samples <p r f>
    class_precision <C values>     average=None
    class_recall <C values>
    class_f1 <C values>
    support <C ints>
    end

Semantics pinned here (and documented in docs/metrics.md):
  * prediction = score >= threshold, compared in the scores' precision (float32 here);
  * a class without positives has AP 0 (sklearn >= 1.1 behaviour; it warns) and counts as 0 in
    the macro mean;
  * precision / recall / F1 use zero_division=0, multilabel semantics for every C (for C == 1 the
    arrays are padded with a dummy column and `labels=[0]`, because sklearn would otherwise treat a
    single column as a binary problem with classes {0, 1}).
"""
import os
import sys
import warnings

import numpy as np
import sklearn
from sklearn.metrics import average_precision_score, precision_recall_fscore_support

warnings.filterwarnings("ignore")  # "No positive class found", zero_division notes

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "metrics_goldens.txt")


def fmt(v):
    return repr(float(v))


class Case:
    def __init__(self, name, score_text, targets, batch, threshold=0.5):
        # score_text: [N, C] array of decimal strings; the value is float32(float(text)), the same
        # conversion the C++ parser does (strtod, then cast to float).
        self.name = name
        self.score_text = np.asarray(score_text, dtype=object)
        self.scores = np.array([[np.float32(float(t)) for t in row] for row in self.score_text],
                               dtype=np.float32).reshape(self.score_text.shape)
        self.targets = np.asarray(targets, dtype=np.int64)
        assert self.scores.shape == self.targets.shape and self.scores.ndim == 2
        self.batch = int(batch)
        self.threshold = float(threshold)


def text_of(values, decimals):
    """Round to `decimals` and render each value as a short decimal string."""
    out = np.empty(values.shape, dtype=object)
    for idx, v in np.ndenumerate(values):
        s = "%.*f" % (decimals, v)
        if s.startswith("-") and float(s) == 0.0:
            s = s[1:]
        if "." in s:
            s = s.rstrip("0").rstrip(".")
        out[idx] = s if s not in ("", "-") else "0"
    return out


def ap_metrics(y, s):
    n, c = y.shape
    if c == 1:
        ap = np.array([average_precision_score(y[:, 0], s[:, 0])])
        return ap, ap[0], ap[0]
    ap = average_precision_score(y, s, average=None)
    return (np.asarray(ap, dtype=np.float64), average_precision_score(y, s, average="macro"),
            average_precision_score(y, s, average="micro"))


def micro_ap(y, s):
    if y.shape[1] == 1:
        return average_precision_score(y[:, 0], s[:, 0])
    return average_precision_score(y, s, average="micro")


def batch_averaged(y, s, b):
    """The evaluation loops of SSL4EO-S12 (plain mean over batches) and DINO-MM (MetricLogger
    update(acc, n=batch_size) -> global_avg, i.e. weighted by batch size)."""
    vals, sizes = [], []
    for start in range(0, y.shape[0], b):
        yb, sb = y[start:start + b], s[start:start + b]
        vals.append(micro_ap(yb, sb))
        sizes.append(yb.shape[0])
    vals, sizes = np.array(vals), np.array(sizes, dtype=np.float64)
    return float(np.mean(vals)), float(np.sum(vals * sizes) / np.sum(sizes))


def prf(y, pred, average):
    n, c = y.shape
    if c == 1:
        # Keep multilabel semantics: pad with a dummy column and restrict to the real one.
        y = np.c_[y, np.zeros(n, dtype=y.dtype)]
        pred = np.c_[pred, np.ones(n, dtype=pred.dtype)]
    labels = list(range(c))
    p, r, f, s = precision_recall_fscore_support(y, pred, average=average, labels=labels,
                                                 zero_division=0)
    if average is None:
        return np.asarray(p), np.asarray(r), np.asarray(f), np.asarray(s)
    # Cross-check the padding trick on multi-column inputs.
    if c >= 2:
        q = precision_recall_fscore_support(np.c_[y, np.zeros(n, dtype=y.dtype)],
                                            np.c_[pred, np.ones(n, dtype=pred.dtype)],
                                            average=average, labels=labels, zero_division=0)
        assert np.allclose(q[:3], (p, r, f), atol=0, rtol=0), (average, q, (p, r, f))
    return float(p), float(r), float(f)


def write_case(out, case):
    y, s = case.targets, case.scores
    n, c = y.shape
    ap, macro, micro = ap_metrics(y, s)
    per_batch, per_sample = batch_averaged(y, s, case.batch)
    pred = (s >= np.float32(case.threshold)).astype(np.int64)  # compared in float32
    out.append("case %s" % case.name)
    out.append("n %d" % n)
    out.append("c %d" % c)
    out.append("batch %d" % case.batch)
    out.append("threshold %s" % fmt(case.threshold))
    out.append("scores " + " ".join(case.score_text.reshape(-1)))
    out.append("targets " + "".join(str(int(v)) for v in y.reshape(-1)))
    out.append("ap " + " ".join(fmt(v) for v in ap))
    out.append("map_macro " + fmt(macro))
    out.append("map_micro " + fmt(micro))
    out.append("map_micro_batch_per_batch " + fmt(per_batch))
    out.append("map_micro_batch_per_sample " + fmt(per_sample))
    for avg in ("micro", "macro", "weighted", "samples"):
        out.append("prf_%s %s" % (avg, " ".join(fmt(v) for v in prf(y, pred, avg))))
    p, r, f, sup = prf(y, pred, None)
    out.append("class_precision " + " ".join(fmt(v) for v in p))
    out.append("class_recall " + " ".join(fmt(v) for v in r))
    out.append("class_f1 " + " ".join(fmt(v) for v in f))
    out.append("support " + " ".join(str(int(v)) for v in sup))
    out.append("end")


def random_targets(rng, n, c, low=0.05, high=0.6):
    rates = rng.uniform(low, high, size=c)
    return (rng.random((n, c)) < rates).astype(np.int64)


def informative_scores(rng, y, noise=0.35):
    """Scores correlated with the targets, in [0, 1], like sigmoid outputs of a decent model."""
    z = 1.2 * (y - 0.5) + noise * rng.standard_normal(y.shape) * 2.0
    return 1.0 / (1.0 + np.exp(-z))


def build_cases():
    cases = []
    rng = np.random.default_rng(20240601)

    # Random sizes: every N x C combination the brief asks for.
    for n in (1, 7, 97, 500):
        for c in (1, 5, 19):
            y = random_targets(rng, n, c)
            decimals = 3 if n * c > 3000 else 4
            s = text_of(informative_scores(rng, y), decimals)
            batch = {1: 1, 7: 3, 97: 32, 500: 64}[n]
            cases.append(Case("random_n%d_c%d" % (n, c), s, y, batch))

    # Many tied scores: values drawn from 5 levels.
    y = random_targets(rng, 97, 5)
    levels = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    s = levels[np.clip((y * 2 + rng.integers(0, 3, size=y.shape)), 0, 4)]
    cases.append(Case("ties_5_levels", text_of(s, 2), y, 10))

    # Scores quantized to 0.1 (ties everywhere, and many exactly at the 0.5 threshold),
    # BigEarthNet-sized class count.
    y = random_targets(rng, 500, 19, 0.02, 0.5)
    s = np.round(informative_scores(rng, y, noise=0.5), 1)
    cases.append(Case("quantized_0.1_n500_c19", text_of(s, 1), y, 128))
    y = random_targets(rng, 60, 5)
    s = np.round(informative_scores(rng, y, noise=0.5), 1)
    cases.append(Case("quantized_0.1_threshold_0.3", text_of(s, 1), y, 16, threshold=0.3))
    cases.append(Case("quantized_0.1_threshold_0.7", text_of(s, 1), y, 16, threshold=0.7))

    # A class without positives, a class with only positives.
    y = random_targets(rng, 50, 5)
    y[:, 2] = 0
    y[:, 4] = 1
    cases.append(Case("all_negative_and_all_positive_class", text_of(informative_scores(rng, y), 4),
                      y, 8))

    # Every target negative / every target positive.
    y = np.zeros((20, 3), dtype=np.int64)
    cases.append(Case("all_targets_negative", text_of(rng.random((20, 3)), 4), y, 6))
    y = np.ones((20, 3), dtype=np.int64)
    cases.append(Case("all_targets_positive", text_of(rng.random((20, 3)), 4), y, 6))

    # Single sample, with and without positives; single sample, single class.
    y = (rng.random((1, 19)) < 0.3).astype(np.int64)
    y[0, 3] = 1
    cases.append(Case("single_sample_c19", text_of(rng.random((1, 19)), 4), y, 1))
    cases.append(Case("single_sample_no_positive", text_of(rng.random((1, 19)), 4),
                      np.zeros((1, 19), dtype=np.int64), 1))
    cases.append(Case("single_sample_single_class_pos", [["0.3"]], [[1]], 4))
    cases.append(Case("single_sample_single_class_neg", [["0.7"]], [[0]], 4))

    # Every score identical (one threshold).
    y = random_targets(rng, 30, 4)
    cases.append(Case("all_scores_tied", np.full((30, 4), "0.5", dtype=object), y, 7))

    # Perfect ranking per class, but no prediction reaches the threshold.
    y = random_targets(rng, 40, 5)
    s = 0.1 + 0.3 * y + 0.05 * rng.random(y.shape)
    cases.append(Case("perfect_ranking_no_predictions", text_of(s, 4), y, 9))

    # Everything predicted positive.
    y = random_targets(rng, 40, 5)
    cases.append(Case("all_predicted_positive", text_of(0.6 + 0.4 * rng.random(y.shape), 4), y, 9))

    # Sparse targets and small batches: many batches without any positive (their AP is 0).
    y = (rng.random((40, 3)) < 0.04).astype(np.int64)
    cases.append(Case("sparse_small_batches", text_of(rng.random((40, 3)), 4), y, 4))

    # Logits (negative values, threshold 0), batch larger than N.
    y = random_targets(rng, 33, 6)
    z = 2.0 * (y - 0.5) + 1.5 * rng.standard_normal(y.shape)
    cases.append(Case("logits_threshold_0", text_of(z, 3), y, 50, threshold=0.0))

    # Negative zero and zero must tie (as numpy's diff says they do).
    cases.append(Case("signed_zero_ties", [["-0.0", "0.2"], ["0.0", "0.1"], ["0.0", "-0.0"],
                                           ["-0.5", "0.0"]],
                      [[1, 0], [0, 1], [1, 1], [0, 0]], 3, threshold=0.0))
    return cases


def main():
    cases = build_cases()
    out = ["# loom::metrics goldens, generated by tests/golden/make_metrics_goldens.py",
           "# scikit-learn %s, numpy %s, python %s" % (sklearn.__version__, np.__version__,
                                                        sys.version.split()[0]),
           "# %d cases; format described in the generator's docstring" % len(cases)]
    for case in cases:
        write_case(out, case)
    with open(OUT, "w") as f:
        f.write("\n".join(out) + "\n")
    print("wrote %s (%d cases, %d bytes)" % (OUT, len(cases), os.path.getsize(OUT)))


if __name__ == "__main__":
    main()
