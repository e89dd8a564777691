#!/usr/bin/env python3
"""Checks that every file the named crates' code includes at build time (`include_bytes!`,
`include_str!`) is in that crate's package (`cargo package --list`): CI packages these crates
without building them from the package, and this is what such a build would find missing.

    python3 scripts/dev/check_includes.py graft graft-serve graft-cli
"""

import pathlib
import re
import subprocess
import sys

INCLUDE = re.compile(r'include_(?:bytes|str)!\(\s*"([^"]+)"\s*\)')


def main() -> None:
    root = pathlib.Path(__file__).resolve().parents[2]
    missing = []
    checked = 0
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for name in sys.argv[1:]:
        crate = root / "crates" / name
        manifest = crate / "Cargo.toml"
        if not manifest.is_file():
            sys.exit(f"no crate `{name}` under crates/")
        listed = subprocess.run(
            ["cargo", "package", "--list", "--allow-dirty", "--manifest-path", str(manifest)],
            check=True, capture_output=True, text=True, cwd=root,
        ).stdout.split()
        packaged = {(crate / path).resolve() for path in listed}
        for source in crate.glob("src/**/*.rs"):
            for included in INCLUDE.findall(source.read_text()):
                checked += 1
                target = (source.parent / included).resolve()
                if target not in packaged:
                    missing.append(f"{source.relative_to(root)} includes {included}, which {crate.name}'s package lacks")
    if missing:
        sys.exit("\n".join(missing))
    print(f"every one of {checked} included files is in its crate's package")


if __name__ == "__main__":
    main()
