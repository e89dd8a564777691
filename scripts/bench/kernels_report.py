"""The kernel table from scripts/bench/kernels_side_by_side.sh's results (markdown on stdout).

Each figure is the median over the rounds; a ratio is the ratio of the two medians, and the
per-round ratios beside it show the spread (graft and PyTorch ran one after the other in each
round). The plain ten-line script (plain_step.py) checks the PyTorch reference's Lite0 rows.
Share of peak: the operation's FLOPs per second (PyTorch's FlopCounter forward FLOPs per image,
x3 for a full training step) over the machine's measured single-precision matrix-product rate
(PyTorch sgemm 2048x2048, median over the rounds).

    python3 scripts/bench/kernels_report.py docs/kernels-results.jsonl
"""
import json
import statistics
import sys

TEACHERS = ["resnet18", "resnet50", "efficientnet_lite0"]
OPERATIONS = ["inference", "inference_burn", "train_full", "train_last_block"]


def section(rows, path):
    """The markdown lines of the kernel section for `rows` (the results file's objects)."""
    def figures(implementation, teacher, operation):
        return {r["round"]: r["images_per_second"] for r in rows
                if r.get("implementation") == implementation and r.get("teacher") == teacher
                and r.get("operation") == operation and r.get("device", "cpu") in ("cpu", "flex")}
    rounds = sorted({r["round"] for r in rows if "round" in r})
    sgemm = statistics.median([r["gflops_per_second"] for r in rows if r.get("operation") == "sgemm_2048"] or [0])
    flops = {r["teacher"]: r["forward_gflops_per_image"] for r in rows if "forward_gflops_per_image" in r}
    meta = next((r for r in rows if r.get("implementation") == "pytorch" and "torch" in r), {})
    run = next((r["run"] for r in rows if "run" in r), {})
    out = []
    say = out.append
    say(f"## Kernels, side by side with an honest reference ({run.get('date', '?')})\n")
    say(f"`TORCH_PYTHON=/work/torchenv/bin/python ROUNDS={len(rounds)} scripts/bench/kernels_side_by_side.sh` at graft "
        f"{run.get('graft_commit', '?')}, then `python3 scripts/bench/kernels_report.py {path}` (raw lines: `{path}`). "
        f"Batch 32 at 224x224, real images (the bundled Fashion-MNIST sample, the same 32 in both), EfficientNet-Lite0's "
        f"published weights in both, ResNets randomly initialised in both (their published weights are not reachable from "
        f"these machines). PyTorch {meta.get('torch', '?')}, {meta.get('threads', '?')} threads, NCHW, no denormal flush, "
        f"under the glibc allocator settings graft's binary makes for itself ({meta.get('malloc', '?')}: one arena, no mmap "
        f"threshold, no trimming; they make PyTorch up to 2x faster here, see the check below). Each figure: the median of 5 timed steps after 2 warm-up steps, then the "
        f"median over {len(rounds)} rounds; graft and PyTorch take turns within each round because this machine's speed "
        f"drifts by up to 2x within minutes. Matrix-product peak (PyTorch sgemm 2048): {sgemm:.0f} GFLOP/s on 2 threads.\n")
    say("| teacher | operation | graft flex img/s | PyTorch img/s | graft / PyTorch | per round | graft GFLOP/s (% of peak) | PyTorch GFLOP/s (% of peak) |")
    say("|---|---|---|---|---|---|---|---|")
    for teacher in TEACHERS:
        for operation in OPERATIONS:
            graft = figures("graft", teacher, operation)
            torch_figures = figures("pytorch", teacher, "inference" if operation == "inference_burn" else operation)
            if not graft or not torch_figures:
                continue
            g, p = statistics.median(graft.values()), statistics.median(torch_figures.values())
            per_round = ", ".join(f"{graft[k] / torch_figures[k]:.2f}" for k in rounds if k in graft and k in torch_figures)
            scale = (3 if operation == "train_full" else 1) * flops.get(teacher, 0)
            def rate(x):
                return f"{x * scale:.1f} ({100 * x * scale / sgemm:.0f}%)" if sgemm and scale else "–"
            say(f"| {teacher} | {operation} | {g:.2f} | {p:.2f} | {g / p:.2f}x | {per_round} | {rate(g)} | {rate(p)} |")
    say("")
    plain = [r for r in rows if r.get("implementation") == "pytorch-plain"]
    if plain:
        say("The reference checked against the ten-line plain script (`scripts/bench/plain_step.py`: Lite0, every layer "
            "trainable, batch norm in training mode, AdamW, images decoded once), the same rounds, under glibc's default "
            "allocator settings (as a user runs it) and under graft's (as the reference runs):\n")
        say("| Lite0 operation | allocator | plain script img/s | reference img/s | reference against plain |")
        say("|---|---|---|---|---|")
        reference = {op: statistics.median(figures("pytorch", "efficientnet_lite0", op).values() or [float("nan")])
                     for op in ("train_full", "inference")}
        for operation, key in [("train_full", "train_full_images_per_second"), ("inference", "inference_images_per_second")]:
            for malloc in ["glibc defaults", "graft's settings"]:
                runs = [r[key] for r in plain if r.get("malloc", "glibc defaults") == malloc]
                if not runs:
                    continue
                a, b = statistics.median(runs), reference[operation]
                say(f"| {operation} | {malloc} | {a:.2f} | {b:.2f} | {100 * (b - a) / a:+.0f}% |")
        say("")
    return out


if __name__ == "__main__":
    path = sys.argv[1]
    print("\n".join(section([json.loads(line) for line in open(path) if line.strip()], path)))
