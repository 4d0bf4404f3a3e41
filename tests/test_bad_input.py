"""Run directories that never mix, damaged run files, and bad input: each a clear `error:` and exit 2."""

import json
import os
import tempfile
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, metrics, wait_for_iterations

from dh_maml.spec import SpecError, load_spec

NAV = ROOT / "specs/navigation-2d.yaml"
TINY = ["--observers", 0, "--set", "maml.meta_batch_size=2", "--set", "maml.fast_batch_size=2"]


def finished(code, out, err, expect=0):
    assert code == expect, out + err
    assert "Traceback" not in err, err
    return out, err


def train(launcher, *args):
    return launcher("train", "--spec", NAV, *TINY, *args).wait()


def test_a_run_directory_belongs_to_one_run(tmp_path, launcher):
    run = tmp_path / "run"
    finished(*train(launcher, "--iterations", 2, "--run-dir", run))
    before = (run / "metrics.jsonl").read_text()
    _, err = finished(*train(launcher, "--iterations", 1, "--run-dir", run), expect=2)
    assert f"--run-dir {run}: already holds files" in err and f"--resume {run}" in err
    assert (run / "metrics.jsonl").read_text() == before  # nothing of the second run got in
    stores = set(Path(tempfile.gettempdir()).glob("dh-maml-rendezvous-*"))
    out, _ = finished(*launcher("train", "--resume", run, "--observers", 2).wait())
    assert "is complete (2 of 2 iterations); nothing to do" in out and "--resume" in out and "--iterations 3" in out
    assert "observer" not in out  # nothing was started, and no rendezvous folder left behind:
    assert set(Path(tempfile.gettempdir()).glob("dh-maml-rendezvous-*")) == stores
    finished(*launcher("train", "--resume", run, "--iterations", 3).wait())
    assert [r["iteration"] for r in metrics(run)] == [1, 2, 3]


def test_a_run_being_trained_cannot_be_resumed_beside_it(tmp_path, launcher):
    run = tmp_path / "run"
    first = launcher(
        "train", "--spec", NAV, *TINY, "--iterations", 500, "--run-dir", run, "--set", "checkpoint.every=1"
    )
    wait_for_iterations(run)
    _, err = finished(*launcher("train", "--resume", run, "--iterations", 600).wait(), expect=2)
    assert f"another DH-MAML process (pid {first.proc.pid}) is training into it" in err
    first.kill()


def test_damaged_run_files_are_clear_errors(tmp_path, launcher):
    run = tmp_path / "run"
    finished(*train(launcher, "--iterations", 1, "--run-dir", run, "--set", "experiment.iterations=1"))
    saved = run / "checkpoints/latest.pt"
    good = saved.read_bytes()
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"iteration": 2, "returns/p')  # what a crash or a full disk leaves
    for damage, words in (
        (good[: len(good) // 2], "cannot be read: damaged, truncated or not a DH-MAML checkpoint"),
        (b"", "cannot be read"),
        (os.urandom(256), "cannot be read"),
    ):
        saved.write_bytes(damage)
        _, err = finished(*launcher("train", "--resume", run, "--iterations", 2).wait(), expect=2)
        assert words in err, err
    torch.save({"iteration": 1, "policy": {"w": torch.zeros(3)}}, saved)  # another architecture
    _, err = finished(*launcher("train", "--resume", run, "--iterations", 2).wait(), expect=2)
    assert "does not fit this run's spec" in err
    saved.write_bytes(good)
    finished(*launcher("train", "--resume", run, "--iterations", 2).wait())  # the cut-off line is dropped
    assert [r["iteration"] for r in metrics(run)] == [1, 2]
    for text in ("", "experiment: [unclosed\n"):
        (run / "spec.yaml").write_text(text)
        _, err = finished(*launcher("test", "--run", run, "--observers", 0).wait(), expect=2)
        assert "spec.yaml" in err and ("empty" in err or "damaged" in err), err


@pytest.mark.parametrize(
    "flags,words",
    [
        (["--observers", "-1"], "argument --observers: expected an integer of at least 0"),
        (["--observers", "1000"], "at most 256"),
        (["--iterations", "0"], "argument --iterations: expected an integer of at least 1"),
        (["--set", "trpo.max_kl=.nan"], "trpo.max_kl: expected a finite number, got nan"),
        (["--set", "maml.fast_lr=.inf"], "maml.fast_lr: expected a finite number, got inf"),
        (["--set", "sampler.timeout_s=.inf"], "sampler.timeout_s: expected a finite number"),
        (["--set", "policy.hidden_sizes=[0]"], "policy.hidden_sizes[0]: expected a value >= 1, got 0"),
        (["--set", "experiment.seed=123456789012345678901234"], "experiment.seed: expected a value <= 4294967295"),
        (["--set", "maml.meta_batch_size=1000000000000"], "maml.meta_batch_size: expected a value <= 100000"),
        (["--set", "experiment.name=/etc"], "experiment.name: expected a name of letters, digits"),
        (["--set", "env.options={x: 1}"], "env.options: unknown key 'x' (this takes no keys)"),
    ],
)
def test_bad_flags_and_values_exit_2_before_anything_starts(tmp_path, launcher, flags, words):
    _, err = finished(*launcher("train", "--spec", NAV, "--run-dir", tmp_path / "run", *flags).wait(), expect=2)
    assert words in err, err
    assert not (tmp_path / "run").exists()


def test_set_errors_name_the_flag_and_files_that_are_not_text_are_refused(tmp_path):
    with pytest.raises(SpecError, match=r"in .*navigation-2d\.yaml with --set trpo\.max_kl=-1"):
        load_spec(NAV, ["trpo.max_kl=-1"])
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x81 not text")
    with pytest.raises(SpecError, match="cannot read it as a UTF-8 text file"):
        load_spec(binary)


def test_the_run_directory_flag_must_be_a_writable_directory(tmp_path, launcher):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    _, err = finished(*train(launcher, "--run-dir", a_file), expect=2)
    assert f"--run-dir {a_file}: is a file, not a directory" in err
    _, err = finished(*train(launcher, "--run-dir", a_file / "below"), expect=2)
    assert f"--run-dir {a_file / 'below'}: cannot write there" in err


def test_a_metrics_backend_that_cannot_start_leaves_nothing_behind(tmp_path, launcher, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("HOME", str(tmp_path))  # no stored wandb credentials
    monkeypatch.setenv("WANDB_MODE", "online")  # what the user's environment says; the spec says nothing
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    run = tmp_path / "run"
    started = time.monotonic()
    _, err = finished(*train(launcher, "--iterations", 1, "--run-dir", run, "--wandb"), expect=2)
    assert "error: metrics.wandb: wandb could not start" in err and "WANDB_MODE=offline" in err
    assert not run.exists() and time.monotonic() - started < 120
    monkeypatch.setenv("WANDB_MODE", "offline")  # wandb's own variable is respected
    finished(*train(launcher, "--iterations", 1, "--run-dir", run, "--wandb"))
    assert list((run / "wandb").glob("offline-run-*"))
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[0])["iteration"] == 1


def test_a_run_that_cannot_write_its_checkpoint_stops_with_a_clear_error(tmp_path, launcher):
    """What a full disk does to the checkpoint, without filling one: its folder replaced by a file."""
    from conftest import alive, descendants

    run = tmp_path / "run"
    launch = launcher(
        "train",
        "--spec",
        NAV,
        "--iterations",
        500,
        "--run-dir",
        run,
        "--observers",
        2,
        "--set",
        "maml.meta_batch_size=2",
        "--set",
        "maml.fast_batch_size=2",
        "--set",
        "checkpoint.every=1",
    )
    wait_for_iterations(run, 2)
    family = descendants(launch.proc.pid)
    # moved away in one step: removing it file by file races the checkpoint being written into it
    (run / "checkpoints").rename(run / "checkpoints-gone")
    (run / "checkpoints").write_text("not a folder")
    _, err = finished(*launch.wait(timeout=120), expect=1)
    assert "error: the run could not write" in err
    assert "training stopped: could not save iteration" in err and "no checkpoint was ever written" not in err
    assert f"{run / 'checkpoints/latest.pt'} still holds iteration" in err and "--resume" in err
    time.sleep(1.0)
    assert [pid for pid in family if alive(pid)] == []
