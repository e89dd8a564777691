"""Turns scripts/bench/run.sh's results.jsonl into docs/BENCHMARKS.md (on stdout)."""
import json
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# (graft implementation, strategy, image size, target speed-up over the PyTorch reference)
TARGETS = [("graft", "deep", 112, 5.0), ("graft", "mid", 112, 3.0), ("graft", "mid", 224, 3.0), ("graft", "full", 112, 0.6),
           ("graft", "full", 224, 0.8), ("graft-libtorch", "full", 112, 1.0)]


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def kernel_rows(rows):
    """Kernel results keyed by (implementation, device, teacher, operation); PyTorch rows without a
    device (older files) ran on the CPU."""
    return {(r["implementation"], r.get("device", "cpu"), r["teacher"], r["operation"]): r
            for r in rows if "operation" in r and "teacher" in r}


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    e2e = {(r["implementation"], r["strategy"], r.get("image_size", 112)): r for r in rows if "strategy" in r and not r.get("memory_run")}
    decode = {(r["implementation"], r["mode"]): r for r in rows if "mode" in r and "images" in r}
    memory = [r for r in rows if r.get("memory_run")]
    kernels = kernel_rows(rows)
    sgemm = next((r for r in rows if r.get("operation") == "sgemm_2048" and r.get("device", "cpu") == "cpu"), None)
    flops = {(r["teacher"]): r["forward_gflops_per_image"] for r in rows if r.get("implementation") == "pytorch" and "forward_gflops_per_image" in r}
    torch_version = next((r["torch"] for r in rows if "torch" in r), "?")
    # run.sh's first line says which commit ran and when; older files lack it.
    run = next((r["run"] for r in rows if "run" in r), None)
    commit = run["graft_commit"] if run else subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    date = run["date"] if run else time.strftime('%Y-%m-%d', time.gmtime())

    out = []
    say = out.append
    say("# Benchmarks: graft against PyTorch on this machine\n")
    say("Every figure below comes from one command, which runs graft and the PyTorch reference one after the other:\n")
    say("    TORCH_PYTHON=/work/torchenv/bin/python GRAFT_TCH=/work/target-tch/release/graft \\\n"
        "        GRAFT_TCH_PYTHON=/work/torch29/bin/python scripts/bench/run.sh\n")
    say("`TORCH_PYTHON`: a virtualenv with torch + torchvision (here 2.15 / 0.29.2) for the reference. "
        "`GRAFT_TCH`: graft built with `--features tch` into another target directory against torch==2.9.0 "
        "(`PATH=/work/torch29/bin:$PATH LIBTORCH_USE_PYTORCH=1 CARGO_TARGET_DIR=/work/target-tch cargo build --release "
        "-p graft-cli --features tch`), `GRAFT_TCH_PYTHON` that virtualenv's python; without them the libtorch "
        "rows are left out. `SKIP_60K=1` leaves out the 60,000-image memory run.\n")
    say(f"Machine: {os.cpu_count()} cores, {cpu_model()}, {round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB, no GPU. "
        f"graft at commit {commit}, release build, `flex` backend unless marked libtorch (torch 2.9.0 through burn's `tch` backend); "
        f"PyTorch reference {torch_version}, 2 threads. Run {date}.")
    say("Raw results: one JSON object per line in `$OUT/results.jsonl` (default `/tmp/graft-bench`).\n")

    # The side-by-side kernel table and the time-to-accuracy table (#37), from their own scripts'
    # results when those are recorded under docs/.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import kernels_report
    for name, make in [("docs/kernels-results.jsonl", kernels_report.section), ("docs/accuracy-results.jsonl", kernels_report.accuracy_section)]:
        if os.path.exists(os.path.join(ROOT, name)):
            out.extend(make(kernels_report.read(os.path.join(ROOT, name)), name))

    say("## End to end: Fashion-MNIST, EfficientNet-Lite0 teacher\n")
    say("2,000 training images (1,600 train + 400 validation, the first 160 + 40 of each class of the training set), "
        "scored on 2,000 test images (the first 200 of each class of the test set), 28x28 greyscale upscaled to 112x112; "
        "10 epochs for deep and mid, 3 for full; batch 32, AdamW, the same learning rates, schedule and label smoothing. "
        "graft's time is `graft train` (cold feature cache) plus `graft eval`; the reference recomputes the frozen layers "
        "every epoch, as torchvision's fine-tuning tutorial does, with one DataLoader worker. Peak memory is the "
        "largest resident set of any of the commands (GNU time).\n")
    say("At 224x224, the teacher's own size (what a user gets without `--image-size`), `full` and `mid` run on fewer "
        "images: 300 training images (30 + 10 of each class, train + validation), scored on 500 test images (50 of each "
        "class); 3 epochs for full, 10 for mid (`PARTS=e2e224`). Rows at 224 name their commit where it differs from "
        "the run's.\n")
    say("| strategy | size | backend | graft s | PyTorch s | speed-up | target | graft test acc | PyTorch test acc | graft train img/s | PyTorch train img/s | graft peak MiB | PyTorch peak MiB |")
    say("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for implementation, strategy, size, target in sorted(TARGETS, key=lambda t: (t[1] != "deep", t[1] != "mid", t[1], t[0], t[2])):
        g, p = e2e.get((implementation, strategy, size)), e2e.get(("pytorch", strategy, size))
        if not g or not p:
            continue
        size_cell = f"{size}" + (f" ({g['graft_commit']})" if g.get("graft_commit") and g["graft_commit"] != commit else "")
        backend = "libtorch" if implementation == "graft-libtorch" else "flex"
        speedup = p["seconds"] / g["seconds"]
        # In points, rounded to the measurement's resolution (2,000 test images: 0.05 points), so
        # that 84.30% against 85.30% is the 1.00 point it is, not 1.0000000000000009.
        gap = round((g["test_accuracy"] - p["test_accuracy"]) * 100, 2)
        # Accuracy within 1 point: no more than 1 point below the reference (above it is fine).
        verdict = f"speed {'met' if speedup >= target else 'missed'}; accuracy {gap:+.2f} pt: {'met' if gap >= -1.0 else 'missed'}"
        say(f"| {strategy} | {size_cell} | {backend} | {g['seconds']:.1f} | {p['seconds']:.1f} | {speedup:.2f}x | ≥ {target}x, ≥ −1 pt: {verdict} | "
            f"{g['test_accuracy'] * 100:.2f}% | {p['test_accuracy'] * 100:.2f}% | {g['train_images_per_second']:.1f} | "
            f"{p['train_images_per_second']:.1f} | {g['peak_rss_mib']:.0f} | {p['peak_rss_mib']:.0f} |")
    say("")
    say("graft's train img/s for deep and mid counts training steps on cached features; the reference's includes "
        "the frozen layers' forward pass, which it recomputes every epoch.\n")

    if decode:
        pillow_full = decode.get(("pillow", "full"))
        say("## Decoding phone-size photos\n")
        say("40 JPEGs of 4000x3000 pixels (3 MB each, `scripts/bench/phone_jpegs.py`: scikit-image's photos cropped, scaled "
            "up, with sensor-like noise; every fifth stored sideways with an EXIF orientation) (`PARTS=decode`). `predict` "
            "is `graft predict` with the bundled Lite0 teacher, whole process; `cache_fill` is `graft train --strategy deep "
            "--epochs 1` on them as two classes with a cold feature cache. Pillow decodes, turns upright, resizes to 256 "
            "and crops 224, in one thread: `full` decodes every pixel, `draft` lets the JPEG decoder scale down as it "
            "decodes. `full_train` is `graft train --strategy full --epochs 2 --batch-size 8 --augment on --refit off` on the same two "
            "classes (32 training and 8 validation photos, each decoded and augmented again every epoch, four batches an epoch). `graft-before` "
            "is another graft binary timed on the same files, the code before a change (its commit in the column).\n")
        say("| implementation | commit | what | seconds for 40 | per image ms | against Pillow full | peak MiB |")
        say("|---|---|---|---|---|---|---|")
        for (implementation, mode), r in sorted(decode.items(), key=lambda item: (item[0][0] != "pillow", item[0][0], item[0][1])):
            ratio = f"{pillow_full['seconds'] / r['seconds']:.2f}x faster" if pillow_full and r is not pillow_full else "–"
            peak = f"{r['peak_rss_mib']:.0f}" if "peak_rss_mib" in r else "–"
            say(f"| {implementation} | {r.get('graft_commit', '–')} | {mode} | {r['seconds']:.2f} | {r['seconds'] / r['images'] * 1000:.0f} | {ratio} | {peak} |")
        before = {mode: decode.get(("graft-before", mode)) for mode in ("predict", "cache_fill", "full_train")}
        for mode, b in before.items():
            a = decode.get(("graft", mode))
            if a and b:
                say(f"\n`{mode}`: {b['seconds'] / a['seconds']:.2f}x faster than `graft-before` ({b.get('graft_commit', '?')}).")
        say("")

    if memory:
        say("## Memory: all 60,000 Fashion-MNIST training images\n")
        say("`scripts/bench/memory_60k.sh` (run by `run.sh` unless `SKIP_60K=1`): the IDX files of Debian's "
            "`dataset-fashion-mnist`, 48,000 train + 12,000 validation (graft's stratified split), 112x112, cold "
            "feature cache, then `graft eval` on the 10,000 test images. Target: peak resident memory ≤ 2 GiB.\n")
        say("| strategy | epochs | train + validation images | seconds (train + eval) | test acc | peak MiB (train) | peak MiB (eval) | ≤ 2,048 MiB |")
        say("|---|---|---|---|---|---|---|---|")
        for r in memory:
            peak = max(r["peak_rss_mib"], r["eval_peak_rss_mib"])
            say(f"| {r['strategy']} | {r['epochs']} | {r['train_images']:,} + {r['validation_images']:,} | {r['seconds']:.0f} | "
                f"{r['test_accuracy'] * 100:.2f}% | {r['peak_rss_mib']:.0f} | {r['eval_peak_rss_mib']:.0f} | {'met' if peak <= 2048 else 'missed'} |")
        say("")

    shard_counts = {d: r["shards"] for (i, d, _, o), r in sorted(kernels.items()) if i == "graft" and o.startswith("train") and "shards" in r}
    say("## Kernels: images per second (batch 32, 224x224, random weights): the older reference\n")
    say("Kept as history: random weights on random inputs, PyTorch timed as the mean of 3 steps after one warm-up under "
        "glibc's default allocator settings. The side-by-side table above replaces it.\n")
    say("`inference` is a frozen teacher as graft runs it: on `flex`, graft's own BN-folded CPU plan "
        "(`crates/graft/src/backend/fused.rs`); `inference_burn` is the same network through burn's modules, "
        "compared with the same PyTorch figure. A training step includes the forward pass of the frozen blocks "
        "in front of the cut, computed the same way, and splits its batch of 32 as graft's trainer does on that "
        "backend"
        + (" (" + ", ".join(f"{d}: {n} shard{'s' if n > 1 else ''}" for d, n in shard_counts.items()) + ", `train/shards.rs`)" if shard_counts else "")
        + ". GFLOP/s counts "
        "PyTorch's FlopCounter forward FLOPs per image (x3 for a full training step, x1 for a last-block step, whose "
        "backward is small), next to the machine's measured single-precision matrix-product rate"
        + (f" (PyTorch sgemm 2048x2048: {sgemm['gflops_per_second']:.0f} GFLOP/s on {sgemm['threads']} threads)." if sgemm else "."))
    say("")
    devices = sorted({d for (i, d, _, _) in kernels if i == "graft"})
    header = "| teacher | operation | " + " | ".join(f"graft {d} img/s" for d in devices) + " | PyTorch img/s | " + " | ".join(f"graft {d} / PyTorch" for d in devices) + " | graft flex GFLOP/s | PyTorch GFLOP/s |"
    say(header)
    say("|" + "---|" * (header.count("|") - 1))
    for teacher in ["resnet18", "resnet50", "efficientnet_lite0"]:
        for operation in ["inference", "inference_burn", "train_full", "train_last_block"]:
            p = kernels.get(("pytorch", "cpu", teacher, "inference" if operation == "inference_burn" else operation))
            graft = [kernels.get(("graft", d, teacher, operation)) for d in devices]
            if not p or not any(graft):
                continue
            scale = {"inference": 1, "inference_burn": 1, "train_full": 3, "train_last_block": 1}[operation] * flops.get(teacher, 0)
            cells = [f"{g['images_per_second']:.2f}" if g else "–" for g in graft]
            ratios = [f"{g['images_per_second'] / p['images_per_second']:.2f}x" if g else "–" for g in graft]
            flex = kernels.get(("graft", "flex", teacher, operation))
            gflops = f"{flex['images_per_second'] * scale:.1f}" if flex else "–"
            say(f"| {teacher} | {operation} | " + " | ".join(cells) + f" | {p['images_per_second']:.2f} | " + " | ".join(ratios) + f" | {gflops} | {p['images_per_second'] * scale:.1f} |")
    say("")
    gpu_path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "docs/bench-gpu.jsonl")
    if os.path.exists(gpu_path):
        gpu_section(say, [json.loads(line) for line in open(gpu_path) if line.strip()], flops, os.path.relpath(gpu_path, ROOT))
    say("## Where the time goes\n")
    say("The profiles behind these numbers, what was changed because of them, and what stands in the way of the "
        "targets still missed: [docs/PERFORMANCE.md](PERFORMANCE.md).\n")
    say("## Other measurements\n")
    say("- Transfer against from scratch on Fashion-MNIST (100 images per class, all 10,000 test images): "
        "`scripts/fashion_mnist_strategies.sh` writes `docs/FASHION_MNIST.md`, with its own wall times.")
    say("- The demo: `time (GRAFT_CACHE_DIR=$(mktemp -d) ./target/release/graft demo)`; its figures are in the README.")
    say("- Text students against the same recipes in PyTorch (accuracy, whole-process time, peak memory; Rotten Tomatoes "
        "and SpamAssassin, all-MiniLM-L6-v2): `PYTHON=/tmp/st/bin/python scripts/text/run.sh` then `python3 "
        "scripts/text/report.py /tmp/graft-text/results.jsonl`; the table and what it shows in `docs/TEXT.md`, the raw "
        "lines in `docs/text-results.jsonl`.")
    # Hand-written notes on the recorded run, kept in their own file so that rebuilding the tables
    # keeps them; they name the commit they describe.
    notes_path = os.path.join(ROOT, "docs/bench-notes.md")
    if os.path.exists(notes_path):
        notes = open(notes_path).read()
        if commit.split("+")[0] not in notes:
            print(f"report.py: docs/bench-notes.md does not mention this run's commit {commit}: update it", file=sys.stderr)
        say("")
        say(notes.rstrip("\n"))
    print("\n".join(out))


def gpu_section(say, rows, cpu_flops, path):
    """The kernel table from scripts/bench/gpu.sh's results: graft on wgpu against PyTorch on CUDA."""
    run = next((r["run"] for r in rows if "run" in r), {})
    kernels = kernel_rows(rows)
    torch_version = next((r["torch"] for r in rows if "torch" in r), None)
    sgemm = next((r for r in rows if r.get("operation", "").startswith("sgemm") and r.get("device", "cpu") != "cpu"), None)
    flops = dict(cpu_flops)
    flops.update({r["teacher"]: r["forward_gflops_per_image"] for r in rows if "forward_gflops_per_image" in r})
    batch = next((r["batch_size"] for r in kernels.values() if "batch_size" in r), "?")
    size = next((r["image_size"] for r in kernels.values() if "image_size" in r), 224)
    say(f"## Kernels on a GPU: images per second (batch {batch}, {size}x{size}, random weights)\n")
    say("Run on a lent GPU machine with `scripts/bench/gpu.sh` (its comment gives the steps): graft built with "
        "`--features wgpu` on burn's wgpu backend (Vulkan), against PyTorch on CUDA in float32 with TF32 off. "
        f"GPU: {run.get('gpu', '?')}; host: {run.get('cores', '?')} cores, {run.get('cpu', '?')}. "
        f"graft at commit {run.get('graft_commit', '?')}"
        + (f", PyTorch {torch_version}" if torch_version else ", no PyTorch CUDA run")
        + f". Run {run.get('date', '?')}. Raw results: `{path}`."
        + (f" Measured single-precision matrix product ({sgemm['operation'].split('_')[1]}^2, PyTorch): "
           f"{sgemm['gflops_per_second']:.0f} GFLOP/s." if sgemm else "")
        + "\n")
    check = next((r for r in rows if r.get("check") == "predict_wgpu_vs_flex"), None)
    if check:
        say(f"Correctness on that GPU: the pretrained EfficientNet-Lite0 on the {check['images']} bundled photos "
            f"(`crates/graft-assets/images`) gives {'the same' if check['same_top5'] else 'DIFFERENT'} top-5 classes on wgpu as on "
            f"`flex`, probabilities within {check['max_probability_difference']:.1e}.\n")
    say("| teacher | operation | graft wgpu img/s | PyTorch CUDA img/s | graft / PyTorch | graft GFLOP/s | PyTorch GFLOP/s |")
    say("|---|---|---|---|---|---|---|")
    for teacher in ["resnet18", "resnet50", "efficientnet_lite0"]:
        for operation in ["inference", "train_full", "train_last_block"]:
            g = kernels.get(("graft", "wgpu", teacher, operation))
            p = next((r for (i, d, t, o), r in kernels.items() if i == "pytorch" and d != "cpu" and t == teacher and o == operation), None)
            if not g:
                continue
            scale = {"inference": 1, "train_full": 3, "train_last_block": 1}[operation] * flops.get(teacher, 0)
            p_cells = (f"{p['images_per_second']:.1f}", f"{g['images_per_second'] / p['images_per_second']:.2f}x",
                       f"{p['images_per_second'] * scale:.0f}") if p else ("–", "–", "–")
            say(f"| {teacher} | {operation} | {g['images_per_second']:.1f} | {p_cells[0]} | {p_cells[1]} | "
                f"{g['images_per_second'] * scale:.0f} | {p_cells[2]} |")
    say("")


if __name__ == "__main__":
    main()
