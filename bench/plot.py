"""docs/e2e-latency.png: end-to-end latency percentiles against the write rate, per channel layer."""

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

STYLES = {"redis": "tab:red", "postgres": "tab:blue"}


def plot_sweep(sweep: dict[str, list[dict]], clients: int, caption: str, path) -> None:
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for layer, points in sweep.items():
        measured = [p for p in points if p["p50_ms"] is not None]
        rates = [p["rate"] for p in measured]
        color = STYLES.get(layer, "gray")
        ax.plot(rates, [p["p50_ms"] for p in measured], "o-", color=color, label=f"{layer} layer p50")
        ax.plot(rates, [p["p99_ms"] for p in measured], "s--", color=color, label=f"{layer} layer p99")
        for p in measured:
            if p["delivered_ratio"] < 0.999:  # latencies of what arrived; the rest was late or lost
                ax.annotate(f"{p['delivered_ratio']:.0%} delivered", (p["rate"], p["p99_ms"]),
                            textcoords="offset points", xytext=(4, 6), fontsize=7, color=color)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("changes per second (single-row commits)")
    ax.set_ylabel("commit → websocket frame, ms")
    ax.set_title(f"pgnotify end to end: {clients} dashboards through daphne")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.text(0.01, 0.01, caption, fontsize=7, color="gray")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path)
    plt.close(fig)
