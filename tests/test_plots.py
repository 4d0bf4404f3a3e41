"""launch.py plot: learning curves and the time split from a run's metrics.jsonl."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dh_maml.algorithms import get_algorithm
from dh_maml.plots import (
    PlotError,
    drawn_curves,
    plot_run,
    read_metrics,
    run_plot_keys,
    run_title,
    scheduled_evaluations,
)

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def write_run(run: Path, iterations: int, timing=True) -> None:
    run.mkdir(parents=True)
    lines = []
    for i in range(iterations, 0, -1):  # out of order on purpose: plots follow the iteration number
        record = {
            "iteration": i,
            "returns/pre": -40.0 + i,
            "returns/pre_std": 3.0,
            "returns/post": -20.0 + i,
            "returns/post_std": 4.0,
            "time/iteration": 2.5,
        }
        if timing:
            record.update({"time/learner_wait": 0.3, "time/graphs": 0.2, "time/trpo": 1.9})
        lines.append(json.dumps(record))
    lines.append(json.dumps({"event": "meta_test", "iteration": 1}))  # not an iteration record
    (run / "metrics.jsonl").write_text("\n".join(lines) + '\n{"iteration": 6, "returns/p')  # cut short by a crash


@pytest.mark.parametrize("timing", [True, False], ids=["distributed", "in-process"])
def test_plot_writes_both_pngs(tmp_path, timing):
    run = tmp_path / "run"
    write_run(run, 5, timing)
    assert [r["iteration"] for r in read_metrics(run)] == [1, 2, 3, 4, 5]
    paths = plot_run(run)
    assert [p.name for p in paths] == ["learning_curve.png", "iteration_time.png"]
    for path in paths:
        assert path.parent == run / "plots" and path.read_bytes().startswith(PNG) and path.stat().st_size > 5000


def test_a_run_that_reports_success_also_gets_a_success_plot(tmp_path):
    run = tmp_path / "run"
    write_run(run, 6)
    records = read_metrics(run)
    for record in records:
        record.update({"success/pre": 0.05 * record["iteration"], "success/post": 0.06 * record["iteration"]})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run / "meta_test").mkdir()
    for i in (3, 6):  # scheduled evaluations, as meta_test.every writes them
        result = {"steps": [0, 1], "success": [0.1 * i, 0.12 * i], "success_se": [0.02, 0.03]}
        (run / "meta_test" / f"iter_{i:05d}.json").write_text(json.dumps(result))
    (run / "meta_test" / "iter_notes.json").write_text("{}")  # not an evaluation: skipped
    (run / "adaptation").mkdir()
    (run / "adaptation" / "iter_00006.json").write_text(json.dumps({"success": None}))  # no success: not drawn
    assert [i for i, _ in scheduled_evaluations(run)] == [3, 6, 6]
    paths = plot_run(run)
    assert [p.name for p in paths] == ["learning_curve.png", "iteration_time.png", "success.png"]
    assert paths[2].read_bytes().startswith(PNG) and paths[2].stat().st_size > 5000


def test_titles_name_the_experiment_and_seed_from_the_runs_spec(tmp_path):
    run = tmp_path / "run"
    write_run(run, 2)
    assert run_title(run) == "run"  # no spec saved: the directory's name
    (run / "spec.yaml").write_text("experiment:\n  name: halfcheetah-dir\n  seed: 3\n")
    assert run_title(run) == "halfcheetah-dir, seed 3"
    (run / "spec.yaml").write_text("experiment: [unclosed\n")
    assert run_title(run) == "run"  # not YAML
    (run / "spec.yaml").write_text("experiment:\n  seed: many\n")
    assert run_title(run) == "run"  # not a valid spec


def test_an_mlsh_run_draws_its_own_curves(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "spec.yaml").write_text("experiment:\n  algorithm: mlsh\n")
    records = [
        {
            "iteration": i,
            "returns/mean": float(i),
            "returns/std": 1.0,
            "returns/last": 2.0 * i,
            "time/iteration": 1.3,
            "time/learner_wait": 0.4,
            "time/update": 0.8,
        }
        for i in range(1, 4)
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    keys = run_plot_keys(run, read_metrics(run))
    assert keys == get_algorithm("mlsh").plots
    assert [label for _, label, _ in drawn_curves(records, keys)] == ["every slot", "a task's last iteration"]
    assert all(p.read_bytes().startswith(PNG) for p in plot_run(run))
    (run / "spec.yaml").unlink()  # without its spec, the records still say which algorithm wrote them
    assert run_plot_keys(run, records) == keys


def test_plot_errors_say_what_is_missing(tmp_path):
    with pytest.raises(PlotError, match=r"has no metrics\.jsonl"):
        plot_run(tmp_path)
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(PlotError, match="holds no iteration records yet"):
        plot_run(tmp_path)


def test_plot_command(tmp_path):
    run = tmp_path / "run"
    write_run(run, 3)
    out = tmp_path / "figures"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "launch.py"), "plot", str(run), "--out", str(out)], capture_output=True, text=True
    )
    assert proc.returncode == 0 and f"wrote {out / 'learning_curve.png'}" in proc.stdout
    proc = subprocess.run(
        [sys.executable, str(ROOT / "launch.py"), "plot", str(tmp_path / "none")], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "has no metrics.jsonl" in proc.stderr and "Traceback" not in proc.stderr


def test_a_direction_familys_run_also_gets_a_curve_per_direction(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dh_maml.plots import plot_per_kind

    run = tmp_path / "run"
    write_run(run, 12)
    records = read_metrics(run)
    for record in records:
        i = record["iteration"]
        record.update({"returns/pre/forward": -50.0 + i, "returns/post/forward": -40.0 + 2 * i})
        record.update({"returns/pre/backward": -30.0, "returns/post/backward": -20.0 + 3 * i})
    keys = run_plot_keys(run, records)
    drawn = []
    original = plt.Axes.plot

    def plot(self, x, y, **kw):
        drawn.append((kw.get("label"), list(y)))
        return original(self, x, y, **kw)

    monkeypatch.setattr(plt.Axes, "plot", plot)
    (path,) = plot_per_kind(records, keys, tmp_path, "cheetah-dir", plt, window=4)
    assert path.name == "learning_curve_by_kind.png" and path.read_bytes().startswith(PNG)
    smoothed = {label: y for label, y in drawn if label}
    assert set(smoothed) == {f"{d}, {w} adaptation" for d in ("forward", "backward") for w in ("before", "after")}
    assert smoothed["backward, after adaptation"] == pytest.approx([-20.0 + 3 * (i + 1.5) for i in range(1, 10)])
    assert plot_per_kind(read_metrics(run), keys, tmp_path, "navigation", plt) == []
