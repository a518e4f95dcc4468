"""gradinv audit: the grid on Dask (LocalCluster and an external scheduler with two workers),
results.csv streaming and resuming, the HTML report (rendered in headless Chromium), bad arguments."""

import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import gradinv.audit.run as audit_run
from examples.audit_model import write_data
from gradinv.audit import make_grid, run_audit
from gradinv.audit.cells import draw_batch
from gradinv.audit.report import headline, verdict_lines
from gradinv.cli import main

ROOT = Path(__file__).resolve().parents[2]
FACTORY = "examples.audit_model:make_model"
MAX_TIME = 20  # the bound of each cell's attack: plain b = 8 cells finish far below it, even on 2 busy cores


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    write_data(path)
    return path


def _rows(out):
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def _no_cluster(*args, **kwargs):
    raise AssertionError("a cluster was started although nothing was left to compute")


@pytest.fixture(scope="module")
def local_audit(digits, tmp_path_factory):
    """A 4-cell audit on the default LocalCluster: b = 8, σ ∈ {0, 1e-5}, E ∈ {1, 2}."""
    out = tmp_path_factory.mktemp("audit")
    summary = run_audit(FACTORY, digits, out, batch_sizes=[8], noise_multipliers=[0, 1e-5], local_steps=[1, 2],
                        max_time=MAX_TIME, n_workers=2, progress=False)
    return out, summary


def test_local_cluster_audit_writes_results_and_report(local_audit, digits):
    out, summary = local_audit
    assert (summary.n_cells, summary.n_computed, summary.n_skipped, summary.errors) == (4, 4, 0, [])
    rows = {(r["noise_multiplier"], r["local_steps"]): r for r in _rows(out)}
    assert set(rows) == {("0.0", "1"), ("0.0", "2"), ("1e-05", "1"), ("1e-05", "2")}
    plain = rows[("0.0", "1")]
    assert plain["approximate"] == "False" and plain["layer"] == "1" and plain["first_layer"] == "True"
    assert float(plain["exact_fraction"]) == 1.0  # one SGD step of b = 8 leaks exactly (0.8 s of a 20 s bound)
    for key in [("1e-05", "1"), ("1e-05", "2"), ("0.0", "2")]:  # DP-SGD (Opacus), FedAvg: approximate mode
        assert rows[key]["approximate"] == "True" and float(rows[key]["certified_fraction"]) == 0.0
    with np.load(digits) as f:
        batch = f["x"][draw_batch(len(f["x"]), 8, 0)].reshape(8, -1)
    for (sigma, steps), r in rows.items():
        assert r["status"] in ("attacked", "attack failed") and r["false_certificates"] == "0"
        if r["status"] != "attacked":
            continue
        with np.load(out / "cells" / f"layer1_b8_sigma{float(sigma):g}_E{steps}_seed0.npz") as kept:
            # the truth is the client's batch (the first layer's inputs), and "exact" is what it says
            assert all(np.abs(batch - o).sum(axis=1).min() == 0 for o in kept["original"])
            err = np.linalg.norm(kept["recovered"] - kept["original"], axis=1) / np.linalg.norm(kept["original"], axis=1)
            np.testing.assert_allclose(err, kept["relative_error"], rtol=1e-6, atol=1e-12)
            assert np.array_equal(kept["exact"], err <= 1e-6)
            assert kept["exact"].mean() == float(r["exact_fraction"])  # all 8 kept at b = 8
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "not evidence that the setting protects" in page
    for line in verdict_lines([{**r, **{k: float(r[k]) for k in ("noise_multiplier", "exact_fraction", "psnr_db")},
                                "batch_size": 8, "local_steps": int(r["local_steps"])} for r in rows.values()]):
        assert line in page


def test_resume_recomputes_nothing_already_written(local_audit, digits, monkeypatch):
    out, _ = local_audit
    before = _rows(out)
    with monkeypatch.context() as m:  # everything is in the file: no cluster, no attack
        m.setattr(audit_run, "_client", _no_cluster)
        s = run_audit(FACTORY, digits, out, batch_sizes=[8], noise_multipliers=[0, 1e-5], local_steps=[1, 2],
                      max_time=MAX_TIME, progress=False)
    assert (s.n_computed, s.n_skipped) == (0, 4) and _rows(out) == before
    # an interruption: the plain-SGD cell's row never written, the last line cut mid-write
    lines = (out / "results.csv").read_text().splitlines(keepends=True)
    lost = next(i for i, r in enumerate(before) if (r["noise_multiplier"], r["local_steps"]) == ("0.0", "1"))
    kept = [line for i, line in enumerate(lines) if i != lost + 1]
    (out / "results.csv").write_text("".join(kept) + lines[lost + 1][:25])
    s = run_audit(FACTORY, digits, out, batch_sizes=[8], noise_multipliers=[0, 1e-5], local_steps=[1, 2],
                  max_time=MAX_TIME, n_workers=1, progress=False)
    after = _rows(out)
    assert (s.n_computed, s.n_skipped) == (1, 3) and len(after) == 4
    assert after[:3] == before[:lost] + before[lost + 1:]  # the rows kept were not recomputed (same finish times)
    assert after[3]["finished_at"] > max(r["finished_at"] for r in before)


def test_resume_refuses_other_settings(local_audit, digits):
    out, _ = local_audit
    assert main(["audit", "--model-factory", FACTORY, "--data", str(digits), "--batch-sizes", "8",
                 "--lr", "0.1", "--out", str(out)]) == 2


@pytest.fixture
def dask_cluster(tmp_path):
    """A scheduler and two workers, separate processes on loopback; stopped after the test."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    sched_file = tmp_path / "scheduler.json"
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", "0", "--no-dashboard", "--scheduler-file", str(sched_file)],
                              env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.time() + 60
        while not sched_file.exists() and time.time() < deadline:
            time.sleep(0.2)
        import json

        address = json.loads(sched_file.read_text())["address"]
        for _ in range(2):
            procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address,
                                           "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1"],
                                          env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        deadline = time.time() + 5
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_cli_audit_on_an_external_scheduler(dask_cluster, digits, tmp_path, capsys):
    out = tmp_path / "audit"
    rc = main(["audit", "--model-factory", FACTORY, "--data", str(digits), "--batch-sizes", "8", "--seeds", "2",
               "--max-time", str(MAX_TIME), "--scheduler", dask_cluster, "--out", str(out)])
    assert rc == 0
    rows = _rows(out)
    assert sorted(r["seed"] for r in rows) == ["0", "1"] and all(r["status"] == "attacked" for r in rows)
    assert "2 computed" in capsys.readouterr().out and (out / "report.html").is_file()


def test_every_layer_is_audited_the_most_exposed_named_and_cells_scored_over_distinct_inputs(digits, tmp_path):
    """A model with two Linear → ReLU layers, on data that holds one image twice, both drawn into the
    seed's batch.  By default the audit attacks both layers (the second one's inputs are the first
    one's ReLU features); the rows and kept arrays say which, and the report's verdict names the
    most exposed layer before the per-layer lines.  The gradient has one column for the image drawn
    twice, so each row counts the batch's 7 distinct inputs (all exact here) and carries the
    attack's own account (the input standing for 2 samples), which the report's table quotes."""
    from gradinv.audit.report import cell_status

    with np.load(digits) as f:
        x, y = f["x"].copy(), f["y"].copy()
    first, second = draw_batch(len(x), 8, 0)[:2]
    x[second] = x[first]
    np.savez(tmp_path / "twice.npz", x=x, y=y)
    out = tmp_path / "audit"
    s = run_audit("examples.audit_model:make_deep_model", tmp_path / "twice.npz", out, batch_sizes=[8],
                  max_time=MAX_TIME, n_workers=1, progress=False)
    assert (s.n_cells, s.n_computed, s.errors) == (2, 2, [])
    rows = {r["layer"]: r for r in _rows(out)}
    assert set(rows) == {"1", "3"} and rows["1"]["first_layer"] == "True" and rows["3"]["first_layer"] == "False"
    assert {p.name for p in (out / "cells").iterdir()} == {"layer1_b8_sigma0_E1_seed0.npz", "layer3_b8_sigma0_E1_seed0.npz"}
    page = (out / "report.html").read_text()
    verdict = page[page.index("Verdict"):page.index("Per number of local steps")]
    assert "Most exposed of the 2 layers attacked: layer" in verdict
    assert "layer 1: σ = 0: every sample of a batch of ≤ 8" in verdict and "layer 3: σ = 0:" in verdict
    assert "Attacked layer 1:" in page and "Attacked layer 3:" in page
    for row in rows.values():
        assert row["distinct"] == "7" and float(row["exact_fraction"]) == 1.0 and row["false_certificates"] == "0"
        assert "1 input standing for 2 samples" in row["outcome"]  # measured: 6 certified, the shared one not
        words = cell_status({**row, "batch_size": 8, "exact_fraction": 1.0,
                             "certified_fraction": float(row["certified_fraction"])})
        assert words.startswith("all 7 distinct of 8 samples recovered exactly (the attack: ") and row["outcome"] in words
        assert row["outcome"] in page
    s = run_audit("examples.audit_model:make_deep_model", tmp_path / "twice.npz", tmp_path / "one", batch_sizes=[8],
                  layers=["3"], max_time=MAX_TIME, n_workers=1, progress=False)
    assert [r["layer"] for r in _rows(tmp_path / "one")] == ["3"]


def _chromium():
    return shutil.which("chromium") or (Path("/usr/bin/chromium").is_file() and "/usr/bin/chromium")


@pytest.mark.skipif(not _chromium(), reason="headless Chromium (Debian package 'chromium') is not installed")
def test_report_renders_in_headless_chromium(local_audit, tmp_path):
    import matplotlib.image

    out, _ = local_audit
    shot = tmp_path / "report.png"
    subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1100,1600", f"--screenshot={shot}",
                    (out / "report.html").as_uri()], check=True, timeout=120,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    img = matplotlib.image.imread(shot)
    assert img.shape[:2] == (1600, 1100)
    assert img[..., :3].std() > 0.05  # text, plots and images drawn, not a blank page
    reddish = (img[..., 0] > 0.9) & (img[..., 1] < 0.95) & (img[..., 1] > 0.85)  # the verdict box's background
    assert reddish[:400].mean() > 0.01


def _audit_cli_error(tmp_path, digits, capsys, **changes):
    args = dict(model_factory=FACTORY, data=str(digits), batch_sizes="8")
    args.update(changes)
    argv = ["audit", "--model-factory", args["model_factory"], "--data", args["data"],
            "--batch-sizes", *args["batch_sizes"].split(), "--out", str(tmp_path / "out")]
    argv += ["--state", args["state"]] if "state" in args else []
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    return rc, err


@pytest.mark.parametrize("case, expected", [
    ("missing_key", "missing key(s) ['y']"),
    ("no_relu", "no Linear layer followed by an nn.ReLU"),
    ("too_large", "batch size 5000 is larger than the data (1797 samples)"),
    ("bad_factory", "no function 'nope'"),
    ("bad_state", "the state does not fit the model"),
    ("wrong_shape", "the model does not accept the data's inputs of shape (5,)"),
])
def test_bad_arguments_are_one_line_errors_before_any_cluster(case, expected, digits, tmp_path, capsys,
                                                              monkeypatch):
    monkeypatch.setattr(audit_run, "_client", _no_cluster)
    changes = {}
    if case == "missing_key":
        np.savez(tmp_path / "x_only.npz", x=np.zeros((10, 64)))
        changes["data"] = str(tmp_path / "x_only.npz")
    elif case == "no_relu":
        changes["model_factory"] = "torch.nn:Flatten"
    elif case == "too_large":
        changes["batch_sizes"] = "8 5000"
    elif case == "wrong_shape":
        np.savez(tmp_path / "flat5.npz", x=np.zeros((20, 5)), y=np.arange(20) % 10)
        changes["data"] = str(tmp_path / "flat5.npz")
    elif case == "bad_factory":
        changes["model_factory"] = "examples.audit_model:nope"
    else:
        import torch

        torch.save({"1.weight": torch.zeros(3, 64)}, tmp_path / "state.pt")
        changes["state"] = str(tmp_path / "state.pt")
    rc, err = _audit_cli_error(tmp_path, digits, capsys, **changes)
    assert rc == 2 and err.startswith("error: ") and expected in err and "\n" not in err
    assert not (tmp_path / "out" / "results.csv").exists()


def test_grid_and_batches_are_reproducible():
    grid = make_grid(["1", "3"], [16, 8, 8], [1e-5, 0], [2, 1], 3)
    assert len(grid) == 2 * 2 * 2 * 2 * 3 and grid[0].key == ("1", 8, 0.0, 1, 0)
    assert len({c.name for c in grid}) == len(grid)
    small, large = draw_batch(100, 8, 3), draw_batch(100, 16, 3)
    assert np.array_equal(small, large[:8]) and len(set(large)) == 16
    assert np.array_equal(draw_batch(100, 8, 3), small) and not np.array_equal(draw_batch(100, 8, 4), small)


def test_verdict_never_calls_an_unbroken_cell_safe():
    def row(b, frac, psnr, sigma=1e-3, status="attacked"):
        return dict(batch_size=b, noise_multiplier=sigma, local_steps=1, seed=0, exact_fraction=frac,
                    certified_fraction=0.0, psnr_db=psnr, status=status)

    rows = [row(4, 1.0, 150.0), row(8, 1.0, 150.0), row(16, 0.5, 40.0), row(32, 0.0, 20.0),
            row(64, 0.0, float("nan"), status="attack failed"), row(4, 0.0, 30.0, sigma=1e-2),
            row(8, 0.0, 25.0, sigma=1e-2), row(4, 0.0, float("nan"), sigma=1.0, status="attack failed")]
    (line, _, _) = verdict_lines(rows)
    assert "every sample recovered exactly at b ≤ 8" in line
    assert "b = 16: 50 % exact, the rest not recovered exactly by this attack within its bound (mean PSNR 40 dB)" in line
    assert "b = 32: no sample exact; approximate reconstructions at mean PSNR 20 dB" in line
    assert "b = 64: not recovered by this attack within its bound (no sparse column found)" in line
    assert headline(rows) == [
        "σ = 0.001: every sample of a batch of ≤ 8 is recovered exactly (1 local step)",
        "σ = 0.01: no batch recovered exactly; the closest reconstructions reach mean PSNR 30 dB (b = 4, 1 local step)",
        "σ = 1: not recovered by this attack within its bound at any b and E tested"]
    text = " ".join(verdict_lines(rows) + headline(rows)).lower()
    assert "safe" not in text and "private" not in text and "protect" not in text


def test_the_privacy_line_answers_in_epsilon_from_opacus_accountant():
    """Exact reconstruction stops between σ = 1e-3 and 1e-2, approximate (≥ 20 dB) between 1e-2 and 1:
    the line says so with the ε of Opacus' RDP accountant, and never calls a setting safe."""
    from opacus.accountants import RDPAccountant

    from gradinv.audit.privacy import epsilon
    from gradinv.audit.report import privacy_line

    def row(b, frac, psnr, sigma):
        return dict(batch_size=b, noise_multiplier=sigma, local_steps=1, seed=0, exact_fraction=frac, psnr_db=psnr)

    rows = [row(8, 1.0, 150.0, 1e-3), row(16, 0.5, 40.0, 1e-3), row(8, 0.0, 30.0, 1e-2),
            row(8, 0.0, 12.0, 1.0), row(16, 0.0, float("nan"), 1.0)]
    line = privacy_line(rows, n_samples=1000, delta=1e-5, rounds=10)
    accountant = RDPAccountant()
    accountant.history = [(1.0, 16 / 1000, 10)]
    assert epsilon(1.0, 16 / 1000, 10, 1e-5) == accountant.get_epsilon(delta=1e-5)
    assert f"from σ = 1 (ε ≤ {accountant.get_epsilon(delta=1e-5):.3g})" in line
    assert "exact reconstruction up to σ = 0.001" in line and "from σ = 0.01" in line
    assert "approximate reconstruction above 20 dB up to σ = 0.01" in line and "δ = 1e-05" in line
    assert epsilon(0.0, 0.1, 1) == float("inf") and "safe" not in line.lower()
