#!/usr/bin/env python3
"""The graft library's module graph, from its `use crate::...` and `crate::...` paths: prints
each top-level module's dependencies and any circle between modules (exit 1 when there is one).

    scripts/dev/module_graph.py [crates/graft/src]

A file's module is its first path component under src/ (`train/trainer.rs` -> `train`; a file
at the root, `report.rs`, is its own module). DESIGN.md's layers point down only: no circles.
"""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "crates/graft/src")
edges = {}
for path in root.rglob("*.rs"):
    relative = path.relative_to(root)
    module = relative.parts[0].removesuffix(".rs")
    if module in ("lib", "main"):
        continue
    text = path.read_text()
    # Test code may reach anywhere; the layers are about the library's own code.
    text = re.split(r"#\[cfg\(test\)\]\s*mod tests", text)[0]
    text = re.sub(r"//[^\n]*", "", text)
    targets = set(re.findall(r"\bcrate::([a-z_][a-z0-9_]*)", text))
    # `use crate::{a, b::c}` groups.
    for group in re.findall(r"\bcrate::\{([^}]*)\}", text):
        targets.update(re.findall(r"(?:^|,)\s*([a-z_][a-z0-9_]*)", group))
    edges.setdefault(module, set()).update(target for target in targets if target != module)

modules = sorted(edges)
for module in modules:
    print(f"{module:12} -> {', '.join(sorted(edges[module])) or '-'}")

# Circles: strongly connected components of more than one module (Tarjan).
index, low, stack, on_stack, circles = {}, {}, [], set(), []
counter = [0]


def visit(node):
    index[node] = low[node] = counter[0]
    counter[0] += 1
    stack.append(node)
    on_stack.add(node)
    for target in edges.get(node, ()):
        if target not in edges:
            continue
        if target not in index:
            visit(target)
            low[node] = min(low[node], low[target])
        elif target in on_stack:
            low[node] = min(low[node], index[target])
    if low[node] == index[node]:
        component = []
        while True:
            member = stack.pop()
            on_stack.discard(member)
            component.append(member)
            if member == node:
                break
        if len(component) > 1:
            circles.append(sorted(component))


for module in modules:
    if module not in index:
        visit(module)
for circle in circles:
    print("circle:", " <-> ".join(circle))
sys.exit(1 if circles else 0)
