"""Tables for docs/QUALITY.md from scripts/quality/run.sh's results: test accuracy, mean and
standard error over seeds, per set and strategy, graft beside the plain PyTorch recipe.
The last result of each (tool, variant, set, strategy, seed) counts.

    python3 scripts/quality/report.py /tmp/graft-quality/results.jsonl
    python3 scripts/quality/report.py docs/quality-results.jsonl --splice docs/QUALITY.md

With --splice the tables replace what stands between the page's two markers (BEGIN and END
below) instead of being printed.
"""
import argparse
import collections
import contextlib
import io
import json
import math

BEGIN = "<!-- tables: scripts/quality/report.py --splice; do not edit by hand -->"
END = "<!-- end of tables -->"

SETS = ["fm10", "fm30", "fm50", "fm100", "digits30", "digits100"]


def pm(mean, se, n):
    """`mean ± se` in points; one seed has no standard error to show."""
    return f"{mean * 100:.1f} ± {se * 100:.1f}" if n > 1 else f"{mean * 100:.1f}"


def gap_text(a, a_se, a_n, b, b_se, b_n):
    """The difference of two means in points, with its standard error where both have one."""
    if a_n > 1 and b_n > 1:
        spread = f" (s.e. {math.hypot(a_se, b_se) * 100:.1f})"
    else:
        spread = " (one seed each)" if a_n == b_n == 1 else " (one side one seed: no standard error)"
    return f"{(a - b) * 100:+.1f}{spread}"


def mean_se(values):
    n = len(values)
    mean = sum(values) / n
    se = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n) if n > 1 else 0.0
    return mean, se


def tables(path):
    latest = {}
    for line in open(path):
        r = json.loads(line)
        key = (r["tool"], r.get("variant", "default"), r["set"], r.get("asked", r["strategy"]), r["seed"])
        latest[key] = r
    groups = collections.defaultdict(list)
    for (tool, variant, set_, strategy, _), r in latest.items():
        groups[(tool, variant, set_, strategy)].append(r)
    strategies = sorted({k[3] for k in groups}, key=["deep", "mid", "full", "auto"].index)
    columns = [
        ("graft", "default", "graft (defaults)"),
        ("graft", "epochs", "graft, head by epochs (before)"),
        ("graft", "no-refit", "graft without the refit (56afa83)"),
        ("graft", "before", "graft before (b557b46)"),
        ("pytorch", "default", "plain PyTorch recipe"),
    ]
    for strategy in strategies:
        print(f"\n### `{strategy}`: test accuracy, mean ± standard error over seeds\n")
        present = [c for c in columns if any((c[0], c[1], s, strategy) in groups for s in SETS)]
        # `auto` has no plain recipe to stand beside; its criterion is the best fixed strategy.
        extra = ["chosen", "best of deep, mid, full (graft defaults)", "auto − best"] if strategy == "auto" else ["graft − plain"]
        print("| set | " + " | ".join([c[2] for c in present] + extra) + " |")
        print("|---|" + "---|" * (len(present) + len(extra)))
        any_derived = False
        for set_ in SETS:
            cells, means = [], {}
            for tool, variant, _ in present:
                rows = groups.get((tool, variant, set_, strategy), [])
                if not rows:
                    cells.append("–")
                    continue
                mean, se = mean_se([r["test_accuracy"] for r in rows])
                means[(tool, variant)] = (mean, se, len(rows))
                seconds = sum(r.get("seconds", 0.0) for r in rows) / len(rows)
                derived = sum(1 for r in rows if r.get("derived"))
                mark = f", {derived} derived†" if derived else ""
                cells.append(f"{pm(mean, se, len(rows))} (n={len(rows)}{mark}, {seconds:.0f} s)")
                any_derived = any_derived or bool(derived)
            if not any(c != "–" for c in cells):
                continue
            gap = ""
            if ("graft", "default") in means and ("pytorch", "default") in means:
                gap = gap_text(*means[("graft", "default")], *means[("pytorch", "default")])
            last = auto_cells(groups, set_, means.get(("graft", "default"))) if strategy == "auto" else [gap]
            print(f"| {set_} | " + " | ".join(cells + last) + " |")
        if any_derived:
            print("\n† not run again: the chosen strategy's run with the same seed and binary, which is bit for bit"
                  " what `auto` trains once the advisor has chosen (test `auto_trains_exactly_the_strategy_it_chose`);"
                  " its seconds add the advisor's.")
    ablations = sorted({k[1:] for k in groups if k[0] == "graft" and k[1] not in ("default", "epochs", "no-refit", "before")}, key=lambda k: (["deep", "mid", "full", "auto"].index(k[2]), k[1], k[0]))
    if ablations:
        print("\n### Ablations (graft with one setting changed): test accuracy, mean ± standard error over seeds\n")
        print("| strategy | set | variant | arguments | graft | plain PyTorch recipe |")
        print("|---|---|---|---|---|---|")
        for variant, set_, strategy in ablations:
            rows = groups[("graft", variant, set_, strategy)]
            mean, se = mean_se([r["test_accuracy"] for r in rows])
            plain = groups.get(("pytorch", "default", set_, strategy), [])
            plain_cell = "–"
            if plain:
                p, pse = mean_se([r["test_accuracy"] for r in plain])
                plain_cell = f"{pm(p, pse, len(plain))} (n={len(plain)})"
            print(f"| {strategy} | {set_} | {variant} | `{rows[0].get('args', '')}` | {pm(mean, se, len(rows))} (n={len(rows)}) | {plain_cell} |")
    machines = {r.get("machine") for r in latest.values() if r.get("machine")}
    commits = {r.get("commit") for r in latest.values() if r.get("commit")}
    print(f"\nMachines: {'; '.join(sorted(machines))}. graft commits: {', '.join(sorted(commits))}.")


def auto_cells(groups, set_, auto):
    """What `auto` chose on a set, the best fixed strategy's mean there, and auto's distance to it
    (the issue's criterion: within 1 point of the best). `auto`: its (mean, s.e., seeds), or None."""
    rows = groups.get(("graft", "default", set_, "auto"), [])
    chosen = collections.Counter(r["strategy"] for r in rows)
    chosen_cell = ", ".join(f"{s} ×{n}" for s, n in sorted(chosen.items())) or "–"
    best = None
    for strategy in ("deep", "mid", "full"):
        fixed = groups.get(("graft", "default", set_, strategy), [])
        if fixed:
            mean, se = mean_se([r["test_accuracy"] for r in fixed])
            if best is None or mean > best[1]:
                best = (strategy, mean, se, len(fixed))
    if best is None:
        return [chosen_cell, "–", ""]
    strategy, mean, se, n = best
    gap = gap_text(*auto, mean, se, n) if auto else ""
    return [chosen_cell, f"{strategy}: {pm(mean, se, n)} (n={n})", gap]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="results.jsonl from scripts/quality/run.sh")
    parser.add_argument("--splice", metavar="PAGE", help="replace the tables between the markers of this page")
    args = parser.parse_args()
    if not args.splice:
        tables(args.results)
        return
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        tables(args.results)
    page = open(args.splice).read()
    if page.count(BEGIN) != 1 or page.count(END) != 1 or page.index(BEGIN) > page.index(END):
        raise SystemExit(f"{args.splice}: needs exactly one {BEGIN!r} and, after it, one {END!r}")
    head, rest = page.split(BEGIN)
    _, tail = rest.split(END)
    with open(args.splice, "w") as f:
        f.write(head + BEGIN + "\n" + out.getvalue().strip("\n") + "\n" + END + tail)


if __name__ == "__main__":
    main()
