"""perf/quant_real.py end to end on a tiny setting: a tiny MobileNetV2 trained one epoch on a slice of the data, one format."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

NAME = "mobilenetv2-student"
PERF = Path(__file__).resolve().parents[2] / "perf"


@pytest.fixture()
def perf_path(monkeypatch: pytest.MonkeyPatch):
    """The two perf modules, importable; torch's thread count (they set 1) restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    monkeypatch.syspath_prepend(str(PERF))
    import quant_real
    import quant_real_models

    yield quant_real, quant_real_models
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_quant_real_trains_caches_and_prints_one_row_per_cell_and_a_summary(tmp_path: Path, perf_path, capsys) -> None:
    """A cached model is reused (not retrained), each cell row carries the acceptance fields and a verdict, and the
    markdown table has one row per cell. Bad inputs tried: a model name the cache lacks (FileNotFoundError naming
    the training command), and a row with no agreement and a slow int8 file (marked a miss with each reason)."""
    quant_real, qm = perf_path
    cache = tmp_path / "cache"
    tiny = {NAME: {"blocks": [[2, 16, 1, 2]], "last_channels": 32, "stem_stride": 2}}
    (info,) = qm.train_all([NAME], cache=cache, n_train=128, n_test=64, epochs=1, threads=1, model_kwargs=tiny,
                           log=lambda _s: None)
    assert info["architecture"] == NAME and info["n_train"] == 128 and info["epochs"] == 1
    assert 0.0 <= info["fp32_test_accuracy"] <= 1.0 and info["input_shape"] == [3, 32, 32]
    assert (cache / f"{NAME}.safetensors").exists()
    again = qm.train_all([NAME], cache=cache, n_train=128, n_test=64, epochs=1, log=lambda _s: None)
    assert again == [info]  # reused from the cache, not retrained
    model, example, data = qm.load_trained(NAME, cache=cache)
    assert tuple(example.shape) == (1, 3, 32, 32) and data.test_x.shape == (64, 3, 32, 32) and data.train_y.shape == (128,)
    with pytest.raises(FileNotFoundError, match="quant_real_models.py --models resnet18"):
        qm.load_trained("resnet18", cache=cache)

    md = tmp_path / "table.md"
    assert quant_real.main(["--models", NAME, "--formats", "onnx", "--no-latency", "--no-repair",
                            "--max-float-layers", "0", "--calibration-samples", "32", "--cache", str(cache),
                            "--latency-size", "40", "--latency-calibration", "8", "--latency-eval", "8", "--rounds", "1",
                            "--md-out", str(md)]) == 0
    out = capsys.readouterr().out
    lines = [json.loads(s) for s in out.strip().splitlines()]
    assert [r.get("kind", "summary") for r in lines] == ["cell", "speed_at_size", "summary"]
    row, speed, summary = lines
    assert row["model"] == NAME and row["format"] == "onnx" and row["runtime"] == "onnxruntime"
    assert row["calibration_samples"] == 32 and row["eval_samples"] == 64 and len(row["load_average"]) == 3
    assert row["naive_sqnr_db"] is not None and 0 <= row["final_agreement"] <= 1 and row["verdict"] in ("pass", "miss")
    assert row["options"]  # the resolved options that ran, from the manifest
    assert row["final_speedup"] is None and not any("speed" in m for m in row["misses"])  # --no-latency: not judged
    assert speed["image_size"] == 40 and speed["fp32_p50_ms"] > 0 and speed["int8_p50_ms"] > 0
    assert speed["speedup"] == pytest.approx(speed["fp32_p50_ms"] / speed["int8_p50_ms"], rel=0.01)
    assert summary["summary"] and summary["cells"] == 1 and summary["latency"] is False
    assert summary["models"][NAME]["two_fast_runtimes_at_40"] is False  # one runtime cannot be two
    table = md.read_text().splitlines()
    assert f"| {NAME} |" in table[2] and f"| {NAME} | onnx |" in table[8]
    assert table[-1].startswith(f"- {NAME}: 1/1 cells pass") or table[-1].startswith(f"- {NAME}: 0/1 cells pass")
    (tmp_path / "run.jsonl").write_text(out)
    assert quant_real.main(["--from", str(tmp_path / "run.jsonl"), "--md-out", str(tmp_path / "again.md")]) == 0
    assert (tmp_path / "again.md").read_text() == md.read_text()  # the table again from the saved rows, nothing rerun

    bad = {"final_agreement": None, "final_drop_points": 2.5, "final_speedup": 1.1, "final_acc": 0.5}
    verdict, misses = quant_real.verdict(bad, latency_on=True)
    assert verdict == "miss" and len(misses) == 3 and misses[0] == "agreement unknown < 97%"
    verdict, misses = quant_real.verdict({**bad, "final_agreement": 0.99, "final_drop_points": 0.0, "final_speedup": 2.0,
                                          "passed": False, "error": "x failed parity with torch: output 'y' missed "
                                          "sqnr_db 19.0 vs bound 20 (max_abs 1.2)"}, latency_on=True)
    assert misses == ["rejected by the verb (parity: output 'y' missed sqnr_db 19.0 vs bound 20)"]
    assert quant_real.verdict({**bad, "final_agreement": 0.99, "final_drop_points": 0.4, "final_speedup": 2.0},
                              latency_on=True) == ("pass", [])
