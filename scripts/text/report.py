"""docs/TEXT.md's table from scripts/text/run.sh's results.jsonl (the latest line of each run)."""
import json
import statistics
import sys
from collections import defaultdict

latest = {}
for line in open(sys.argv[1]):
    row = json.loads(line)
    latest[(row["tool"], row["set"], row["strategy"], row["seed"])] = row
groups = defaultdict(list)
for (tool, set_name, strategy, _), row in latest.items():
    groups[(set_name, strategy, tool)].append(row)


def cell(rows, key, scale=1.0, digits=1):
    values = [row[key] * scale for row in rows if row.get(key) is not None]
    if not values:
        return "–"
    mean = statistics.mean(values)
    return f"{mean:.{digits}f}" + (f" ± {statistics.stdev(values) / len(values) ** 0.5:.{digits}f}" if len(values) > 1 else "")


print("| set | strategy | graft test accuracy | PyTorch test accuracy | graft seconds | PyTorch seconds | PyTorch / graft time | graft peak MB | PyTorch peak MB | seeds |")
print("|---|---|---|---|---|---|---|---|---|---|")
order = {"deep": 0, "mid": 1, "full": 2}
for set_name, strategy in sorted({(s, st) for s, st, _ in groups}, key=lambda k: (k[0], order.get(k[1], 9))):
    graft, torch = groups.get((set_name, strategy, "graft"), []), groups.get((set_name, strategy, "pytorch"), [])
    for row in torch:
        row["whole_seconds"] = row.get("process_seconds", row["seconds"])
    ratio = "–"
    if graft and torch:
        ratio = f"{statistics.mean(r['whole_seconds'] for r in torch) / statistics.mean(r['seconds'] for r in graft):.2f}×"
    print(f"| {set_name} | {strategy} | {cell(graft, 'test_accuracy', 100)} | {cell(torch, 'test_accuracy', 100)} | {cell(graft, 'seconds', digits=0)} | "
          f"{cell(torch, 'whole_seconds', digits=0)} | {ratio} | {cell(graft, 'peak_rss_mb', digits=0)} | {cell(torch, 'peak_rss_mb', digits=0)} | {max(len(graft), len(torch))} |")
machines = sorted({row["machine"] for row in latest.values()})
commits = sorted({row["commit"] for row in latest.values()})
print(f"\nMachine: {'; '.join(machines)}; graft commit {', '.join(commits)}.")
