"""Smoke runs of the benchmark scripts (benchmarks are not tests: only that they run and report)."""

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_frontier_quick(tmp_path):
    rows = load("frontier").main(["--quick", "--memory", "--out", str(tmp_path / "f")])
    assert {r["victim"] for r in rows} == {"random_upstream", "cross_entropy"}
    assert all(r["peak_mem_over_grad"] > 0 for r in rows if r["solver"] == "informed")
    assert all(r["false_certificates"] == 0 for r in rows)
    assert all(r["columns_found"] == r["b"] for r in rows if r["solver"] == "informed" and r["exact"] == 1)
    data = json.loads((tmp_path / "f.json").read_text())
    assert len(data["rows"]) == len(rows)
    assert (tmp_path / "f.png").stat().st_size > 0 and "| victim |" in (tmp_path / "f.md").read_text()


def test_frontier_zoo_quick(tmp_path):
    kinds = ["mlp2_photos", "mlp3_photos", "conv_photos"]
    rows = load("frontier").main(["--zoo", *kinds, "--quick", "--out", str(tmp_path / "z")])
    assert [r["victim"] for r in rows] == kinds and all(r["false_certificates"] == 0 for r in rows)
    assert all(r["solver"] and "spear_exact" in r and r["time_over_svd"] > 0 for r in rows)
    assert all(r["layer"] == {"conv_photos": "5"}.get(r["victim"], "0") for r in rows if "error" not in r)
    data = json.loads((tmp_path / "z.json").read_text())
    (worst,) = data["worst_case"]
    assert worst["min_exact"] == min(r["exact"] for r in rows) and worst["kinds"] == 3
    assert next(r for r in rows if r["victim"] == worst["worst_kind"])["exact"] == worst["min_exact"]
    assert {k["victim"] for k in data["per_kind"]} == set(kinds) and set(data["kinds"]) == set(kinds)
    text = (tmp_path / "z.md").read_text()
    assert text.index("Worst case over kinds and seeds") < text.index("Per kind") < text.index("Every row")
    assert (tmp_path / "z.png").stat().st_size > 0
    assert all(len(r["found_times"]) == r["columns_found"] for r in rows if "found_times" in r)
    # resumed: the cells already in z.jsonl are not run again; a new kind is added to the same file
    again = load("frontier").main(["--zoo", "mlp3_photos", "mlp2_grey28", "--quick", "--out", str(tmp_path / "z")])
    assert [r["victim"] for r in again] == [*kinds, "mlp2_grey28"] and again[:3] == rows
    assert len((tmp_path / "z.jsonl").read_text().splitlines()) == 4
    assert load("frontier").main(["--zoo", "--report", "--out", str(tmp_path / "z")]) == again


def test_a_cell_past_its_cap_is_recorded_as_failed(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))  # as the benchmarks import it: the spawned cell re-imports it
    import _resumable as resumable
    script = tmp_path / "slow.py"
    script.write_text("import time\n\ndef cell(t):\n    time.sleep(t)\n    return {'slept': t}\n")
    assert resumable.run_capped(script, "cell", (0.1,), cap=60) == ("ok", {"slept": 0.1})
    assert resumable.run_capped(script, "cell", (60,), cap=2) == ("capped", None)
    status, text = resumable.run_capped(script, "cell", ("x",), cap=60)
    assert status == "error" and "TypeError" in text
    path = tmp_path / "rows.jsonl"
    resumable.append_row(path, {"a": 1, "b": 2})
    with path.open("a") as f:
        f.write('{"a": 2, "b"')  # a run killed while writing its last line
    assert resumable.read_rows(path) == [{"a": 1, "b": 2}] and resumable.done_keys(path, ("a",)) == {(1,)}


def test_rounding_floor_quick():
    from gradinv.factorize import FLOOR_FACTOR

    (row,) = load("rounding_floor").main(["--clients", "mlp2_trained:8", "--width", "120"])
    assert row["b"] == 8 and 0 < row["sigma_over_floor"] < FLOOR_FACTOR and 0 < row["zero_over_floor"] < FLOOR_FACTOR


def test_sudl_benchmark_quick(tmp_path):
    out = tmp_path / "sudl.md"
    load("sudl_benchmark").main(["--quick", "--support-correlations", "0", "0.6", "--out", str(out)])
    text = out.read_text()
    assert "logcosh" in text and "FastICA" in text and "DictionaryLearning" in text
    fits = [json.loads(line) for line in out.with_suffix(".jsonl").read_text().splitlines()]
    assert {f["support_correlation"] for f in fits} == {0.0, 0.6} and len(fits) == 12
    out.write_text("")
    load("sudl_benchmark").main(["--quick", "--support-correlations", "0", "0.6", "--out", str(out)])  # resumed: no fit run again
    assert len(out.with_suffix(".jsonl").read_text().splitlines()) == 12 and "logcosh" in out.read_text()


def test_threat_models_quick(tmp_path):
    rows = load("threat_models").main(["--quick", "--out", str(tmp_path / "t")])
    assert {r["threat"] for r in rows} == {"dp", "fedavg", "float32", "batch_size", "labels"}
    assert all(r["false_certificates"] == 0 for r in rows)
    assert all(r["certified"] == 0 for r in rows if r["mode"] == "approximate")
    assert (tmp_path / "t.png").stat().st_size > 0 and "| threat |" in (tmp_path / "t.md").read_text()


def test_threat_models_zoo_quick(tmp_path):
    rows = load("threat_models").main(["--sections", "zoo", "--zoo", "mlp2_photos", "mlp3_photos", "--quick",
                                       "--out", str(tmp_path / "z")])
    assert [(r["client"], r["threat"]) for r in rows] == [(k, t) for k in ("mlp2_photos", "mlp3_photos")
                                                          for t in ("dp", "fedavg")]
    assert all(r["certified"] == 0 and r["false_certificates"] == 0 for r in rows)
    worst = json.loads((tmp_path / "z.json").read_text())["worst_case"]
    assert [w["threat"] for w in worst] == ["dp", "fedavg"]
    for w in worst:
        psnr = [r["psnr"] for r in rows if r["threat"] == w["threat"]]
        assert w["worst_psnr"] == min(psnr) and w["rows"] == 2
    assert "Worst case over the zoo" in (tmp_path / "z.md").read_text()
    assert all(r["hints"] is False and r["batch_size_read"] is not None for r in rows)  # read from the update
    lines = (tmp_path / "z.jsonl").read_text()
    again = load("threat_models").main(["--sections", "zoo", "--zoo", "mlp2_photos", "mlp3_photos", "--quick",
                                        "--out", str(tmp_path / "z")])
    assert (tmp_path / "z.jsonl").read_text() == lines and again == rows  # resumed: every cell already there


def test_search_yield_quick():
    rounds = load("search_yield").main(["--batch-size", "6", "--width", "80", "--starts", "8", "--max-time", "10"])
    assert rounds and rounds[-1]["found"] == sum(r["new"] for r in rounds) <= 6


def test_label_counts_quick():
    rows = load("label_counts").main(["--cells", "40x200", "--seeds", "1", "--known", "5"])
    assert len(rows) == 1 and sum(rows[0]["true"]) == 40
    assert 0 <= rows[0]["max_error_known_5"] < 4 and 0 <= rows[0]["max_error_uniform"] < 4  # measured 0.75, 0.82


def test_cell_yield_quick():
    rows = load("cell_yield").main(["--victim", "random_upstream", "--batch-size", "30", "--width", "300",
                                    "--starts", "40", "--passes", "0", "20"])
    assert [r["passes"] for r in rows] == [0, 20]
    assert all(0 <= r["distinct"] <= r["exact"] <= 40 for r in rows)
    assert rows[1]["distinct"] > rows[0]["distinct"]


def test_profile_search_quick(tmp_path):
    args = ["--zoo", "mlp2_photos", "--widths", "200", "--batch-sizes", "6", "--out", str(tmp_path / "p")]
    rows = load("profile_search").main(args)
    (row,) = rows
    assert row["exact"] == 1 and row["solver"] == "informed"
    stages = row["stages"]
    assert 0 < stages["descents"] <= stages["search"] <= row["total"]  # the search's stages nest inside it
    assert "| descents |" in (tmp_path / "p.md").read_text() and "| mlp2_photos | 200 | 6 | 0 |" in (tmp_path / "p.md").read_text()
    assert load("profile_search").main(args) == rows  # resumed: the cell is not run again
