"""The benchmark's report: the timing table and the per-stage tables (plain rows in, text out)."""
from __future__ import annotations

import platform
import resource
from typing import Dict, List, Optional, Sequence

import torch

MODELS = ("ours", "tv")


def _fmt(value, spec: str = ".1f") -> str:
    return "n/a" if value is None else format(value, spec)


def _ratio(ours: Optional[float], tv: Optional[float]) -> Optional[float]:
    return ours / tv if ours is not None and tv else None


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]

    def line(cells):
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def timing_table(timings: Sequence[dict]) -> str:
    header = ["backbone", "batch", "amp", "what", "ours ms", "tv ms", "ours/tv", "best/best", "img/s ours",
              "img/s tv", "peak MiB ours", "peak MiB tv", "syncs ours", "syncs tv"]  # fmt: skip
    rows = [
        [t["backbone"], t["batch_size"], t["amp"], t["what"] + ("" if t["ours_finite"] and t["tv_finite"] else
         " (non-finite loss)"), _fmt(t["ours_ms"]), _fmt(t["tv_ms"]), _fmt(t["ratio"], ".2f"),
         _fmt(t["ratio_of_best"], ".2f"), _fmt(t["ours_images_per_s"], ".2f"), _fmt(t["tv_images_per_s"], ".2f"),
         _fmt(t["ours_peak_mb"], ".0f"), _fmt(t["tv_peak_mb"], ".0f"), _fmt(t["ours_syncs"], "d"),
         _fmt(t["tv_syncs"], "d")]  # fmt: skip
        for t in timings
    ]
    return format_table(header, rows)


def breakdown_table(rows: Sequence[dict], with_device: bool) -> str:
    """Stages, the groups of more than one stage, and the total: ms, share of the step and ours/tv."""
    groups: Dict[str, List[dict]] = {}
    for row in rows:
        groups.setdefault(row["group"], []).append(row)
    total = _sum_rows(rows)
    lines = [(row["stage"], row) for row in rows]
    lines += [(f"[{group}]", _sum_rows(members)) for group, members in groups.items() if len(members) > 1]
    lines.append(("total (sum of stages)", total))
    header = ["stage", "ours ms", "ours %", "tv ms", "tv %", "ours/tv"] + ["ours cuda ms", "tv cuda ms"] * with_device
    table = [[name, _fmt(r["ours_ms"]), _fmt(_share(r["ours_ms"], total["ours_ms"])), _fmt(r["tv_ms"]),
              _fmt(_share(r["tv_ms"], total["tv_ms"])), _fmt(_ratio(r["ours_ms"], r["tv_ms"]), ".2f")]
             + [_fmt(r["ours_device_ms"]), _fmt(r["tv_device_ms"])] * with_device
             for name, r in lines]  # fmt: skip
    return format_table(header, table)


def _sum_rows(rows: Sequence[dict]) -> dict:
    return {f"{m}_{k}": sum(r[f"{m}_{k}"] or 0.0 for r in rows) for m in MODELS for k in ("ms", "device_ms")}


def _share(value: Optional[float], total: float) -> Optional[float]:
    return 100.0 * value / total if value is not None and total else None


def print_report(result: dict) -> None:
    print("\n" + timing_table(result["timings"]))
    print("\n(ms: medians; ours/tv: ratio of the medians, best/best: of the fastest repetitions; lower is better "
          "for us)")
    with_device = result["settings"]["device"] == "cuda"
    case_keys = ("backbone", "batch_size", "amp", "mode")
    for key in dict.fromkeys(tuple(r[k] for k in case_keys) for r in result["breakdown"]):
        rows = [r for r in result["breakdown"] if tuple(r[k] for k in case_keys) == key]
        count = next(c for c in result["breakdown_counts"] if tuple(c[k] for k in case_keys) == key)
        print(f"\nbreakdown: {key[0]}, batch {key[1]}, amp {key[2]}, {key[3]} (profiled; box-head ROIs: ours "
              f"{count['ours_box_head_rois']}, tv {count['tv_box_head_rois']})")
        print(breakdown_table(rows, with_device))
    print("\n(a stage excludes the stages inside it: rpn = the RPN outside rpn.*; torchvision's ROI losses are in "
          "roi; other = the rest of the step" + ("; ms = host time, cuda ms = kernel time)" if with_device else ")"),
          flush=True)


def environment(device: torch.device) -> dict:
    import torchvision

    return {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux: KiB
    }
