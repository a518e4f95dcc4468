"""The README's command lines, run as a user runs them: from a fresh folder holding a copy of
``examples/``, with the installed ``gradinv`` command (the ``test`` extra's packages present,
Opacus' top-level ``examples`` package among them): the demo, the training example then ``gradinv attack``
both ways, the audit example on a small grid, and the Flower demo."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("user")
    shutil.copytree(ROOT / "examples", folder / "examples")
    return folder


def run(folder, line):
    """Run one README command line in ``folder``; its output, after checking it exits 0."""
    gradinv = shutil.which("gradinv")
    assert gradinv, "the gradinv command is not installed (pip install -e '.[test]')"
    words = line.split()
    argv = [gradinv, *words[1:]] if words[0] == "gradinv" else [sys.executable, *words[1:]]
    done = subprocess.run(argv, cwd=folder, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{line}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


@pytest.mark.slow
def test_readme_demo_line(user_folder):
    out = run(user_folder, "gradinv demo --victim cross_entropy --batch-size 20 --width 1000 -o demo.png")
    assert "20/20" in out and (user_folder / "demo.png").stat().st_size > 1000


@pytest.mark.slow
def test_readme_attack_lines_after_the_training_example(user_folder):
    run(user_folder, "python examples/train_client.py")
    out = run(user_folder, "gradinv attack --model client_model.pt --grads client_grads.pt -o batch.npz")
    assert "16 certified exact" in out and "search: " in out
    out = run(user_folder, "gradinv attack client_grads.pt --model-factory examples.train_client:make_model "
                           "--state client_model.pt -o batch.npz")
    assert "16 certified exact" in out and "search: " in out


@pytest.mark.slow
def test_readme_audit_example_on_a_small_grid(user_folder):
    run(user_folder, "python examples/audit_model.py --data digits.npz")
    out = run(user_folder, "gradinv audit --model-factory examples.audit_model:make_model --data digits.npz "
                           "--batch-sizes 8 --noise-multipliers 0 --local-steps 1 --max-time 10 --workers 1 "
                           "--out audit-digits")
    assert "1 cells: 1 computed" in out and (user_folder / "audit-digits" / "report.html").exists()


@pytest.mark.slow
def test_readme_flower_demo_line(user_folder):
    """Real Flower processes (a SuperLink, 3 SuperNodes, `flwr run`): every FedSGD batch exact, all stopped after."""
    import json

    from gradinv.flower.processes import processes_with_home

    out = run(user_folder, "gradinv flower-demo --clients 3 --rounds 2 --batch-size 12 --out flower-demo")
    records = [json.loads(line) for line in (user_folder / "flower-demo" / "leakage.jsonl").read_text().splitlines()]
    assert len(records) == 6 and {r["round"] for r in records} == {1, 2} and len({r["node_id"] for r in records}) == 3
    for r in records:
        assert r["inverted"] and r["truth_compared"] and r["exact_fraction"] >= 0.9 and r["false_certificates"] == 0, r
    assert "6 of 6 client updates recovered exactly" in out
    assert not processes_with_home(user_folder / "flower-demo" / "flwr-home")
