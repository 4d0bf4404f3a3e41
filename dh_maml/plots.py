"""Learning curves and the iteration's time split of a run, drawn from its ``metrics.jsonl``.

Only the JSONL and the saved spec (for the title and the algorithm, whose bundle
says which curves to draw) are read, so a run can be plotted while it trains, on
another machine, or after TensorBoard's files are gone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from dh_maml.algorithms import PlotKeys, get_algorithm, names
from dh_maml.run_dir import read_run_spec


class PlotError(ValueError):
    """A run that cannot be plotted; the message says why."""


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The iteration records of a run (every one has ``time/iteration``), in iteration order. A last line
    cut short, as a crash or a full disk leaves it, is skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise PlotError(f"'{run_dir}' has no metrics.jsonl: not a run directory, or no iteration has finished yet")
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number < len(lines):
                raise PlotError(f"{path}, line {number}: not a JSON record") from None
    records = [r for r in records if isinstance(r, dict) and "iteration" in r and "time/iteration" in r]
    if not records:
        raise PlotError(f"{path} holds no iteration records yet")
    return sorted(records, key=lambda r: r["iteration"])


def run_title(run_dir: str | Path) -> str:
    """The experiment's name and seed from the run's saved spec, so a copied PNG still says what it shows;
    the directory's name where there is no readable spec."""
    try:
        experiment = read_run_spec(run_dir).experiment
    except (OSError, yaml.YAMLError, ValueError):  # no spec.yaml, or one that is not YAML or not a valid spec
        return Path(run_dir).resolve().name
    return f"{experiment.name}, seed {experiment.seed}"


def run_plot_keys(run_dir: str | Path, records: list[dict]) -> PlotKeys:
    """What to draw: the plot keys of the algorithm in the run's saved spec, or, without a readable spec,
    of the registered algorithm whose curves the records hold."""
    try:
        return get_algorithm(read_run_spec(run_dir).experiment.algorithm).plots
    except (OSError, yaml.YAMLError, ValueError):
        for name in names():
            keys = get_algorithm(name).plots
            if any(key in records[0] for key, _, _ in keys.curves):
                return keys
    raise PlotError(f"'{run_dir}': no readable spec.yaml and no registered algorithm logs these metrics")


def drawn_curves(records: list[dict], keys: PlotKeys) -> list[tuple[str, str, str | None]]:
    """The algorithm's curves that the records hold."""
    return [curve for curve in keys.curves if any(curve[0] in r for r in records)]


def _column(records: list[dict], key: str) -> np.ndarray:
    return np.array([r.get(key, np.nan) for r in records], dtype=float)


def scheduled_evaluations(run_dir: str | Path) -> list[tuple[int, dict]]:
    """(iteration, result) of the evaluations a run made while training (``meta_test.every``), which write
    ``<evaluation>/iter_NNNNN.json``; files that are not such results are skipped."""
    found = []
    for path in sorted(Path(run_dir).glob("*/iter_*.json")):
        try:
            found.append((int(path.stem.removeprefix("iter_")), json.loads(path.read_text())))
        except (ValueError, OSError):
            continue
    return sorted(((i, r) for i, r in found if isinstance(r, dict)), key=lambda pair: pair[0])


def plot_success(run_dir: Path, records: list[dict], keys: PlotKeys, out: Path, title: str, plt: object) -> list[Path]:
    """``success.png``: the success rates logged per iteration, and those of the held-out tasks at each
    scheduled evaluation, before and after adaptation (± one standard error); nothing where the task
    family reports no success."""
    curves = [(key, label) for key, label in keys.success if any(key in r for r in records)]
    if not curves:
        return []
    it = _column(records, "iteration")
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in curves:
        ax.plot(it, 100 * _column(records, key), label=label, alpha=0.8)
    evaluations = [(i, r) for i, r in scheduled_evaluations(run_dir) if len(r.get("success") or []) >= 2]
    if evaluations:
        at = np.array([i for i, _ in evaluations], dtype=float)
        for column, label, marker in ((0, "held-out, before adaptation", "o"), (-1, "held-out, after adaptation", "s")):
            rate = np.array([r["success"][column] for _, r in evaluations])
            se = np.array([r.get("success_se", [np.nan] * len(r["success"]))[column] for _, r in evaluations])
            ax.errorbar(at, 100 * rate, yerr=100 * se, fmt=marker, capsize=3, label=label)
    ax.set_xlabel("iteration")
    ax.set_ylabel("success rate (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{title}: success")
    return [_finish(fig, ax, out / "success.png", plt)]


def _finish(fig: object, ax: object, path: Path, plt: object) -> Path:
    """How the secondary plots end: a light grid, a small legend, saved at 120 dpi and closed."""
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_run(run_dir: str | Path, out_dir: str | Path | None = None, title: str | None = None) -> list[Path]:
    """Write ``learning_curve.png`` (the algorithm's return curves, ± the spread across tasks where logged),
    ``iteration_time.png`` (where each iteration's time went) and, where success is reported,
    ``success.png`` to ``out_dir`` (default RUN_DIR/plots). Returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(run_dir)
    keys = run_plot_keys(run_dir, records)
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / "plots"
    out.mkdir(parents=True, exist_ok=True)
    title = title or run_title(run_dir)
    it = _column(records, "iteration")

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label, spread in drawn_curves(records, keys):
        mean = _column(records, key)
        std = _column(records, spread) if spread else np.full_like(mean, np.nan)
        (line,) = ax.plot(it, mean, label=label)
        if not np.isnan(std).all():
            ax.fill_between(it, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("iteration")
    ax.set_ylabel(keys.ylabel)
    ax.set_title(f"{title} (shaded: ± std across tasks)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    curve = out / "learning_curve.png"
    fig.savefig(curve, dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    parts = [
        (label, np.nan_to_num(_column(records, key)))
        for key, label in keys.time_parts
        if any(key in r for r in records)
    ]
    total = _column(records, "time/iteration")
    rest = np.clip(total - sum(values for _, values in parts), 0.0, None)
    ax.stackplot(it, *[v for _, v in parts], rest, labels=[label for label, _ in parts] + ["other"], alpha=0.8)
    ax.set_xlabel("iteration")
    ax.set_ylabel("seconds")
    ax.set_title(f"{title}: time per iteration (median {np.nanmedian(total):.2f} s)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    timing = out / "iteration_time.png"
    fig.savefig(timing, dpi=120)
    plt.close(fig)
    return [
        curve,
        timing,
        *plot_success(Path(run_dir), records, keys, out, title, plt),
        *plot_per_kind(records, keys, out, title, plt),
    ]


def plot_per_kind(
    records: list[dict], keys: PlotKeys, out: Path, title: str, plt: object, window: int = 10
) -> list[Path]:
    """``learning_curve_by_kind.png``: each kind of task's mean return per iteration (faint) and over the last
    ``window`` iterations (solid), so a lagging direction shows; nothing where the family has no kinds."""
    logged = sorted({key for r in records for key in r})
    curves = [
        (key, f"{key.removeprefix(prefix)}, {label}")
        for prefix, label in keys.per_kind
        for key in logged
        if key.startswith(prefix)
    ]
    if not curves:
        return []
    it = _column(records, "iteration")
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in curves:
        values = _column(records, key)
        (line,) = ax.plot(it, values, alpha=0.25, linewidth=0.8)
        kernel = np.ones(min(window, len(values)))
        with np.errstate(invalid="ignore", divide="ignore"):  # a window with nothing logged stays a gap
            smooth = np.convolve(np.nan_to_num(values), kernel, "valid") / np.convolve(
                ~np.isnan(values), kernel, "valid"
            )
        ax.plot(it[len(kernel) - 1 :], smooth, color=line.get_color(), label=label)
    ax.set_xlabel("iteration")
    ax.set_ylabel(keys.ylabel)
    ax.set_title(f"{title}: per kind of task (solid: mean of {window} iterations)", fontsize="medium")
    return [_finish(fig, ax, out / "learning_curve_by_kind.png", plt)]
