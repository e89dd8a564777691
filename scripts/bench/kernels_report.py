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


def accuracy_section(rows, path):
    """The markdown lines of the time-to-accuracy table (scripts/bench/time_to_accuracy.sh)."""
    run = next((r["run"] for r in rows if "run" in r), {})
    table = {(r["strategy"], r["accuracy_row"]): r for r in rows if "accuracy_row" in r}
    out = []
    say = out.append
    say(f"## Time to accuracy: graft's defaults against a plain script ({run.get('date', '?')})\n")
    say(f"`TORCH_PYTHON=/work/torchenv/bin/python scripts/bench/time_to_accuracy.sh` at graft {run.get('graft_commit', '?')} "
        f"(raw lines: `{path}`). Fashion-MNIST at 224x224, EfficientNet-Lite0: 300 training images (30 of each class, no "
        f"validation folder) and 500 test images (50 of each class); 10 epochs for deep and mid, 5 for full, in both. Each "
        f"row is whole processes, start to end: training, then the test set. graft's defaults split 20% of each class off "
        f"for validation, choose the epoch count on it and train again on all 300 images (`--refit auto`), augment when "
        f"teacher blocks train, fit a `deep` head by L-BFGS and keep the teacher's batch-norm statistics. The plain script "
        f"(`pytorch_reference.py train --input decoded`) decodes the images once into a tensor and computes the frozen "
        f"blocks once (a DataLoader with a worker per core, decoding every epoch, was not timed: on 2 cores its workers "
        f"would take the cores the step runs on), trains every epoch on all 300 images with the same optimizer, learning "
        f"rates, schedule and label smoothing, batch norm in training mode, and keeps the last epoch.\n")
    say("| strategy | run | seconds | test accuracy | seconds against the plain script |")
    say("|---|---|---|---|---|")
    for strategy in ["deep", "mid", "full"]:
        plain = table.get((strategy, "plain script"))
        for name in ["default", "refit-off", "plain script"]:
            r = table.get((strategy, name))
            if not r:
                continue
            label = {"default": "graft, defaults", "refit-off": "graft, `--refit off`", "plain script": "plain PyTorch script"}[name]
            against = f"{r['seconds'] / plain['seconds']:.2f}x" if plain and r is not plain else "–"
            say(f"| {strategy} | {label} | {r['seconds']:.0f} | {r['test_accuracy'] * 100:.1f}% | {against} |")
    say("")
    return out


def read(path):
    return [json.loads(line) for line in open(path) if line.strip()]


if __name__ == "__main__":
    # kernels_report.py KERNELS_JSONL [ACCURACY_JSONL]
    print("\n".join(section(read(sys.argv[1]), sys.argv[1])))
    if len(sys.argv) > 2:
        print("\n".join(accuracy_section(read(sys.argv[2]), sys.argv[2])))
