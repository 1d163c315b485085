"""The benchmark's PNG: records/s against each bound, and the latency percentiles.

matplotlib is imported here only, and only by ``make bench`` (the ``bench`` extra).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

if TYPE_CHECKING:
    from devtools.bench.report import Result


def draw(results: Sequence[Result], title: str, path: Path) -> Path:
    """Write the chart to ``path`` and return it."""
    rated = [r for r in results if r.records_per_s is not None and r.p50_ms is None]
    timed = [r for r in results if r.p50_ms is not None]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5), width_ratios=(3, 1.3))
    names = [r.scenario for r in rated]
    left.bar(names, [r.records_per_s or 0 for r in rated], color="#4c72b0", label="measured")
    for i, r in enumerate(rated):
        if r.bound is not None and r.bound_is.endswith("records/s"):
            left.hlines(r.bound, i - 0.4, i + 0.4, colors="#c44e52", linewidth=2,
                        label="bound" if i == 0 or "bound" not in
                        left.get_legend_handles_labels()[1] else None)  # fmt: skip
        if r.ratio is not None:
            left.annotate(f"{r.ratio:.2f}", (i, r.records_per_s or 0), ha="center",
                          va="bottom", fontsize=9)  # fmt: skip
    left.set_ylabel("records/s (steady window)")
    left.set_title("throughput (ratio to bound above each bar)")
    left.tick_params(axis="x", labelrotation=20)
    left.legend(loc="upper right")
    x = range(len(timed))
    right.bar([i - 0.2 for i in x], [r.p50_ms or 0 for r in timed], width=0.4, label="p50")
    right.bar([i + 0.2 for i in x], [r.p99_ms or 0 for r in timed], width=0.4, label="p99")
    right.set_xticks(list(x), [r.scenario for r in timed], rotation=20)
    right.set_ylabel("produce to outcome, ms")
    right.set_title("latency at half the max rate")
    right.legend()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
