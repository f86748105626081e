"""The demo release end to end: time per stage, and the share of the slowest stage.

    python benchmarks/bench_release.py [--toml scenes/release/demo.toml] [--ray]

Runs `irep3d.release.run_release` on a fresh temp folder, timing each stage from the
progress it reports (a stage's time runs from its first report to its last; "maps" is the
network and the EXR writer together, which overlap), then prints
the wall time, each stage's seconds and share, and the fraction of the wall time the
slowest stage takes. With `--ray` the same release runs again on a private Ray instance
(`--ray local`: packs and Cycles frames as farm tasks) and the two are compared: every
loop's sha256 in release.json must be the same.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from irep3d.allocator import tune_allocator  # noqa: E402
from irep3d.generator import load_generator  # noqa: E402
from irep3d.release import load_release, plan_release, run_release  # noqa: E402


def run(toml: Path, out: Path, ray: str | None) -> tuple[float, dict[str, float], dict]:
    """Make the release into `out`; (wall seconds, seconds by stage, release.json)."""
    spans: dict[str, list[float]] = {}

    def progress(stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        name = stage.split()[0]
        span = spans.setdefault("maps" if name in ("network", "EXR") else name, [now, now])
        span[1] = now

    start = time.perf_counter()
    release = load_release(toml)
    net = load_generator(release.model, "cpu")
    plan = plan_release(release, out, net)
    if ray is not None:
        from irep3d.farm import connect

        connect(ray)
    path = run_release(plan, net, ray=ray, progress=progress)
    wall = time.perf_counter() - start
    return wall, {k: b - a for k, (a, b) in spans.items()}, json.loads(path.read_text())


def report(title: str, wall: float, stages: dict[str, float]) -> None:
    print(f"\n{title}: {wall:.1f} s wall")
    for stage, seconds in stages.items():
        print(f"  {stage:<10} {seconds:7.1f} s  {seconds / wall:6.1%}")
    slowest = max(stages, key=stages.get)
    print(f"  slowest stage: {slowest}, {stages[slowest] / wall:.0%} of the wall time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--toml", type=Path, default=ROOT / "scenes" / "release" / "demo.toml")
    parser.add_argument("--ray", action="store_true", help="also run it with --ray local and compare")
    args = parser.parse_args()
    tune_allocator()
    with tempfile.TemporaryDirectory(prefix="irep3d-bench-release-") as tmp:
        wall, stages, local = run(args.toml, Path(tmp) / "local", None)
        report(f"{args.toml.name}, here", wall, stages)
        print(f"  {len(local['loops'])} loops")
        if args.ray:
            wall_ray, stages_ray, farmed = run(args.toml, Path(tmp) / "farm", "local")
            report(f"{args.toml.name}, --ray local", wall_ray, stages_ray)
            same = [a["sha256"] for a in local["loops"]] == [b["sha256"] for b in farmed["loops"]]
            print(
                f"  every loop byte for byte the local one: {same}; ratio {wall_ray / wall:.2f}x the local time"
            )


if __name__ == "__main__":
    main()
