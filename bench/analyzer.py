"""Precision and recall of the clause rules, per rule, on the labelled clause corpus.

    .venv/bin/python bench/analyzer.py                 # tuning and held-out parts
    .venv/bin/python bench/analyzer.py --misses tuning # and each clause it got wrong

The corpus is tests/contracts/corpus/ (plain data, no Django): `tuning` is what the rules
were written against, `heldout` was frozen before the rules existed and is never tuned
on (see its docstring). Each clause is analysed alone as a whole contract; for a rule,
a clause labelled "fires" that produces its finding is a true positive, a "near_misses"
clause that produces it a false positive. Pure Python: no database, no server.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(_HERE)
# `python bench/analyzer.py` puts bench/ first on sys.path, where bench/queue.py would
# shadow the standard library's `queue`; the repository root goes first instead.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, REPO_DIR)

from contracts.graph.analyzer import RULE_NAMES, analyze_text  # noqa: E402
from tests.contracts.corpus.heldout import HELD_OUT  # noqa: E402
from tests.contracts.corpus.tuning import TUNING  # noqa: E402

PARTS = {"tuning": TUNING, "heldout": HELD_OUT}


def rule_scores(corpus: dict[str, dict[str, list[str]]], rule: str) -> dict:
    labelled = corpus[rule]
    fired_on_fires = [clause for clause in labelled["fires"] if _fires(clause, rule)]
    fired_on_misses = [clause for clause in labelled["near_misses"] if _fires(clause, rule)]
    tp, fp = len(fired_on_fires), len(fired_on_misses)
    fn = len(labelled["fires"]) - tp
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / (tp + fn) if tp + fn else 1.0,
        "missed": [c for c in labelled["fires"] if c not in fired_on_fires],
        "false_alarms": fired_on_misses,
        "clauses": len(labelled["fires"]) + len(labelled["near_misses"]),
    }


def _fires(clause: str, rule: str) -> bool:
    return any(f["rule"] == rule for f in analyze_text(clause).findings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--misses", choices=sorted(PARTS), action="append", default=[],
                        help="also list the clauses this part got wrong")
    parser.add_argument("--min", type=float, default=0.9, help="exit 1 if a held-out figure is below this")
    args = parser.parse_args()

    started = time.perf_counter()
    results = {part: {rule: rule_scores(corpus, rule) for rule in RULE_NAMES} for part, corpus in PARTS.items()}
    elapsed = time.perf_counter() - started
    clauses = sum(r["clauses"] for part in results.values() for r in part.values())

    header = f"{'rule':<24} {'part':<8} {'fires':>5} {'near':>5} {'TP':>4} {'FP':>4} {'FN':>4} {'precision':>9} {'recall':>7}"
    print(header)
    print("-" * len(header))
    for rule in RULE_NAMES:
        for part in PARTS:
            r = results[part][rule]
            fires, near = len(PARTS[part][rule]["fires"]), len(PARTS[part][rule]["near_misses"])
            print(f"{rule:<24} {part:<8} {fires:>5} {near:>5} {r['tp']:>4} {r['fp']:>4} {r['fn']:>4} "
                  f"{r['precision']:>9.3f} {r['recall']:>7.3f}")
    print(f"\n{clauses} clauses in {elapsed:.2f} s ({elapsed / clauses * 1000:.2f} ms a clause)")

    for part in args.misses:
        for rule in RULE_NAMES:
            r = results[part][rule]
            for clause in r["missed"]:
                print(f"[{part}] {rule} MISSED: {clause}")
            for clause in r["false_alarms"]:
                print(f"[{part}] {rule} FALSE ALARM: {clause}")

    below = [rule for rule in RULE_NAMES
             if min(results["heldout"][rule]["precision"], results["heldout"][rule]["recall"]) < args.min]
    if below:
        print(f"\nheld-out below {args.min}: {', '.join(below)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
