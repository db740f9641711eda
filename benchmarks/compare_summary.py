#!/usr/bin/python3
"""Summary of benchmarks/compare_torch.sh: reads its CSV, prints the table (median img/s per
implementation, per-round loom/tuned ratios and their median, peak RSS, loom GFLOP/s and its
fraction of the FMA peak), draws the chart, and ends with exactly four verdict lines
(configuration b): ratio pretrain / finetune / inference and peak fraction.

    compare_summary.py compare_torch.csv compare_torch.png '{"gflops": 200.0, ...}'
"""
import csv
import json
import statistics
import sys

MODES = ["pretrain", "finetune", "inference"]
IMPLS = ["loom", "pytorch_tuned", "pytorch_untuned"]


def main():
    csv_path, png_path, peak_json = sys.argv[1], sys.argv[2], sys.argv[3]
    peak = json.loads(peak_json)["gflops"]
    rows = list(csv.DictReader(open(csv_path)))
    configs = sorted({r["config"] for r in rows})

    def runs(config, mode, impl):
        return sorted((r for r in rows if r["config"] == config and r["mode"] == mode and r["impl"] == impl),
                      key=lambda r: int(r["round"]))

    def median_of(rs, key):
        return statistics.median(float(r[key]) for r in rs) if rs else float("nan")

    verdict = {}
    print(f"FMA peak (probe, 2 threads): {peak:.1f} GFLOP/s; busy = median CPU use of other processes "
          "during the loom and tuned runs, in cores")
    print("config mode       loom img/s  tuned img/s  untuned img/s  ratio/round              median ratio"
          "  vs best torch  RSS loom/tuned MiB  loom GFLOP/s  of peak  busy")
    for config in configs:
        for mode in MODES:
            loom, tuned, untuned = (runs(config, mode, i) for i in IMPLS)
            if not loom or not tuned:
                continue
            tuned_by_round = {r["round"]: float(r["img_per_s"]) for r in tuned}
            ratios = [float(r["img_per_s"]) / tuned_by_round[r["round"]] for r in loom if r["round"] in tuned_by_round]
            ratio = statistics.median(ratios)
            gflops = median_of(loom, "gflops")
            # For information: loom against the faster of tuned and untuned PyTorch (medians).
            best_torch = max(median_of(tuned, "img_per_s"), median_of(untuned, "img_per_s") if untuned else 0.0)
            print(f"{config:6} {mode:10} {median_of(loom, 'img_per_s'):11.2f} {median_of(tuned, 'img_per_s'):12.2f} "
                  f"{median_of(untuned, 'img_per_s'):14.2f}  {' '.join(f'{x:.2f}' for x in ratios):24} {ratio:12.2f}"
                  f"  {median_of(loom, 'img_per_s') / best_torch:13.2f}  {median_of(loom, 'peak_rss_mib'):7.0f} / {median_of(tuned, 'peak_rss_mib'):<7.0f}  "
                  f"{gflops:12.1f}  {gflops / peak:7.1%}  {median_of(loom + tuned, 'busy_cores'):4.2f}")
            if config == "b":
                verdict[mode] = ratio
                if mode == "pretrain":
                    verdict["peak"] = gflops / peak

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, len(configs), figsize=(5.5 * len(configs), 4), squeeze=False)
        colors = {"loom": "#2a7ab9", "pytorch_tuned": "#e8743b", "pytorch_untuned": "#bbbbbb"}
        for ax, config in zip(axes[0], configs):
            for k, impl in enumerate(IMPLS):
                vals = [median_of(runs(config, m, impl), "img_per_s") for m in MODES]
                ax.bar([i + (k - 1) * 0.27 for i in range(len(MODES))], vals, 0.27, label=impl, color=colors[impl])
            ax.set_xticks(range(len(MODES)), MODES)
            ax.set_ylabel("img/s (median)")
            ax.set_title(f"MAE step, configuration {config}")
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(png_path, dpi=100)
        print(f"chart: {png_path}")
    except ImportError:
        print("chart: matplotlib is missing, no picture")

    nan = float("nan")
    print(f"ratio pretrain: {verdict.get('pretrain', nan):.2f}")
    print(f"ratio finetune: {verdict.get('finetune', nan):.2f}")
    print(f"ratio inference: {verdict.get('inference', nan):.2f}")
    print(f"peak fraction: {verdict.get('peak', nan):.2f}")


if __name__ == "__main__":
    main()
