"""benchmark() runs each cell in a runner subprocess; a crash or timeout becomes a failed record, not an exception."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.benchmarks.conftest import write_tiny_onnx

from edgestill.artifact import Artifact
from edgestill.benchmarks.bench import benchmark, benchmark_matrix
from edgestill.runtimes.harness import BenchOptions
from edgestill.runtimes import RuntimeOptions
from edgestill.runtimes.base import PLUGINS_ENV

QUICK = BenchOptions(min_runs=20, min_seconds=0.0, warmup_runs=2)


def test_benchmark_measures_a_good_artifact(tiny_manifest: Path, eval_npz: Path) -> None:
    m = benchmark(tiny_manifest, options=RuntimeOptions(threads=1), bench=QUICK, eval_data=eval_npz, affinity=[0])
    assert m.kind == "measured", m.error
    assert (m.artifact, m.format, m.precision, m.runtime, m.threads) == ("tiny", "onnx", "fp32", "onnxruntime", 1)
    assert m.latency is not None and m.latency.n == len(m.samples_ms) >= 20
    assert m.init_ms and m.init_ms > 0 and m.first_ms and m.first_ms > 0
    assert m.peak_rss_mb and m.peak_rss_mb > 10
    assert m.model_bytes == tiny_manifest.with_name("tiny.onnx").stat().st_size
    assert m.accuracy is not None and m.accuracy.value == pytest.approx(0.75) and m.accuracy.n == 20
    prov = m.provenance
    assert prov["affinity"] == [0] and prov["threads"] == 1 and prov["runtime_version"]
    assert prov["torch_imported"] is False
    assert m.settings["runtime_options"]["threads"] == 1 and m.settings["session"]["providers"]


REPO_ROOT = Path(__file__).resolve().parents[2]


def test_crashing_cell_is_recorded_and_the_next_cell_completes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = write_tiny_onnx(tmp_path / "a", name="crashes")
    good = write_tiny_onnx(tmp_path / "b", name="fine")
    # a test-only runtime that aborts (SIGABRT, no JSON) on loading an artifact named "crash*"
    monkeypatch.setenv(PLUGINS_ENV, "tests.runtimes.crashing_runtime")
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    seen: list[tuple[int, int, str]] = []
    results = benchmark_matrix([bad, good], [1], runtime="crash-test", bench=QUICK,
                               progress=lambda i, n, label: seen.append((i, n, label)))
    crashed, ok = results
    assert crashed.kind == "failed" and crashed.artifact == "crashes"
    assert "SIGABRT" in (crashed.error or "") and "stderr" in (crashed.error or "")
    assert ok.kind == "measured" and ok.latency is not None
    assert [s[0] for s in seen] == [0, 1, 2] and seen[-1][1] == 2


def test_corrupt_model_is_bad_input_with_the_runtime_message(tmp_path: Path) -> None:
    manifest = write_tiny_onnx(tmp_path)
    (tmp_path / "tiny.onnx").write_bytes(b"not an onnx file")
    art = Artifact.load(manifest)
    art.hash_files()  # the manifest vouches for the junk: the runtime, not the sha256 check, must refuse it
    art.write_manifest()
    m = benchmark(manifest, bench=QUICK)
    assert (m.kind, m.artifact, m.runtime) == ("failed", "tiny", "onnxruntime")
    assert m.settings["runner_exit_code"] == 2 and "exit 2" in (m.error or "")
    assert "cannot be parsed as a onnx model by onnxruntime" in (m.error or "")
    assert "onnxruntime could not load" in (m.error or "")  # the runtime's own words are kept


def test_missing_manifest_fails_as_bad_input(tmp_path: Path) -> None:
    m = benchmark(tmp_path / "nope.manifest.json", bench=QUICK)
    assert m.kind == "failed" and "exit 2" in (m.error or "") and "does not exist" in (m.error or "")
    assert m.settings["runner_exit_code"] == 2


def test_timeout_cell_is_recorded_as_failed(tiny_manifest: Path) -> None:
    m = benchmark(tiny_manifest, bench=BenchOptions(min_runs=10, min_seconds=30, max_runs=10**9, max_seconds=30), timeout_s=1.5)
    assert m.kind == "failed" and "timed out after 1.5 s" in (m.error or "")
    assert m.latency is None and m.artifact == "tiny"


def test_rounds_interleave_cells_and_threads(tmp_path: Path) -> None:
    a, b = write_tiny_onnx(tmp_path / "a", name="a"), write_tiny_onnx(tmp_path / "b", name="b")
    bench = BenchOptions(min_runs=5, min_seconds=0.0, warmup_runs=0)
    results = benchmark_matrix([a, b], [1, 2], bench=bench, rounds=2)
    got = [(m.settings["round"], m.artifact, m.threads, m.provenance["threads"]) for m in results]
    assert got == [(r, n, t, t) for r in (0, 1) for n in ("a", "b") for t in (1, 2)]
    assert all(m.kind == "measured" for m in results)


def test_failure_exit_code_is_2_only_when_every_failure_is_bad_input() -> None:
    from edgestill.benchmarks.bench import failure_exit_code
    from edgestill.record import Measurement

    def cell(kind: str, code: int | None = None) -> Measurement:
        return Measurement(artifact="a", format="onnx", precision="fp32", runtime="onnxruntime", threads=1, kind=kind,  # type: ignore[arg-type]
                           settings={} if code is None else {"runner_exit_code": code})  # fmt: skip

    assert failure_exit_code([cell("measured")]) == 0
    assert failure_exit_code([cell("measured"), cell("failed", 2), cell("failed", 2)]) == 2
    assert failure_exit_code([cell("failed", 2), cell("failed", 3)]) == 3
    assert failure_exit_code([cell("failed", 2), cell("failed", -6)]) == 3  # a crash (SIGABRT)
    assert failure_exit_code([cell("failed")]) == 3  # a timeout: no exit code recorded


def test_repeat_summary_cv_and_warning() -> None:
    from edgestill.benchmarks.bench import repeat_summary
    from edgestill.record import Measurement
    from edgestill.stats import summarize

    def cell(p50: float) -> Measurement:
        return Measurement(artifact="a", format="onnx", precision="fp32", runtime="onnxruntime", threads=1,
                           latency=summarize([p50] * 5))  # fmt: skip

    steady = repeat_summary([cell(1.0), cell(1.02), cell(0.98)])[0]
    assert steady["repeat"] == 3 and steady["p50_ms_each"] == [1.0, 1.02, 0.98]
    assert steady["p50_cv_percent"] == 2.0 and steady["warning"] is None
    noisy = repeat_summary([cell(1.0), cell(1.5)])[0]
    assert noisy["p50_cv_percent"] > 5 and "varies" in noisy["warning"]
    single = repeat_summary([cell(1.0)])[0]
    assert single["p50_cv_percent"] is None


def test_openvino_cells_report_openvinos_own_clock_and_keep_the_wall_clock(tiny_manifest: Path, tmp_path: Path) -> None:
    """OpenVINO's figure is InferRequest.latency (what benchmark_app reports); onnxruntime keeps the wall clock."""
    from edgestill.benchmarks.store import ResultsStore

    ov = benchmark(tiny_manifest, runtime="openvino", options=RuntimeOptions(threads=1), bench=QUICK)
    assert ov.kind == "measured", ov.error
    assert ov.clock == "openvino InferRequest.latency"
    assert ov.wall_latency is not None and ov.wall_latency.n == ov.latency.n == len(ov.samples_ms)
    assert ov.wall_latency.p50_ms > ov.latency.p50_ms > 0  # the wall clock also holds the Python call
    ort = benchmark(tiny_manifest, options=RuntimeOptions(threads=1), bench=QUICK)
    assert ort.clock == "wall" and ort.wall_latency is None
    walled = benchmark(tiny_manifest, runtime="openvino", bench=BenchOptions(min_runs=20, min_seconds=0.0, clock="wall"))
    assert walled.clock == "wall" and walled.wall_latency is None
    with ResultsStore(tmp_path / "r.db") as store:
        mid = store.add_measurement(store.add_run("bench"), ov)
        back = store.measurement(mid)
    assert back.clock == ov.clock and back.wall_latency == ov.wall_latency


def test_a_cell_measured_in_rounds_is_recorded_as_its_median_round() -> None:
    from edgestill.benchmarks.bench import median_round
    from edgestill.record import Measurement
    from edgestill.stats import summarize

    def cell(p50: float | None) -> Measurement:
        if p50 is None:
            return Measurement(artifact="a", format="onnx", precision="fp32", runtime="onnxruntime", threads=1,
                               kind="failed", error="crashed")
        return Measurement(artifact="a", format="onnx", precision="fp32", runtime="onnxruntime", threads=1,
                           latency=summarize([p50] * 5), samples_ms=[p50] * 5)

    chosen = median_round([cell(0.5), cell(0.2), cell(0.3)])
    assert chosen.latency.p50_ms == 0.3 and chosen.settings["rounds_p50_ms"] == [0.5, 0.2, 0.3]
    assert median_round([cell(0.4), cell(None), cell(0.2)]).latency.p50_ms == 0.2  # lower middle of what ran
    assert median_round([cell(None), cell(None)]).kind == "failed"


def test_each_runner_runs_under_a_memory_limit_derived_from_the_available_memory(tiny_manifest: Path) -> None:
    from edgestill.benchmarks.bench import default_memory_limit_bytes
    from edgestill.limits import available_memory_bytes

    m = benchmark(tiny_manifest, bench=QUICK)
    assert m.kind == "measured", m.error
    limit = m.settings["memory_limit_bytes"]
    assert limit == pytest.approx(default_memory_limit_bytes(), rel=0.05)  # MemAvailable moves a little between calls
    assert limit <= max(available_memory_bytes(), 512 << 20)


def test_a_runner_that_exceeds_its_memory_limit_is_a_failed_cell_with_that_reason(tmp_path: Path,
                                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A timing input of 1 GiB (a valid .npy the runner loads into memory) cannot fit a 256 MiB limit: the cell fails
    with "ran out of memory (limit 256.0 MiB)" and no traceback in its reason; the next cell, with room, is measured."""
    import numpy as np

    from edgestill.benchmarks.bench import failure_exit_code, failure_reason

    manifest = write_tiny_onnx(tmp_path / "art")
    big = tmp_path / "big.npy"
    np.lib.format.open_memmap(big, mode="w+", dtype=np.float32, shape=(1 << 28,)).flush()  # sparse on disk
    m = benchmark(manifest, bench=QUICK, inputs=big, memory_limit_bytes=256 << 20)
    assert m.kind == "failed", m.to_dict()
    assert (m.error or "").startswith("ran out of memory (limit 256.0 MiB)"), m.error
    assert "Traceback" not in (m.error or "") and m.settings["failure"] == "out_of_memory"
    assert failure_reason(m).startswith("ran out of memory (limit 256.0 MiB)")
    assert failure_exit_code([m]) == 3  # a runtime failure, never hidden as bad input
    ok = benchmark(manifest, bench=QUICK, memory_limit_bytes=1 << 30)
    assert ok.kind == "measured", ok.error


@pytest.mark.parametrize("bad", [0, 1 << 20, -5, 2.5, True])
def test_a_memory_limit_a_runner_cannot_start_under_is_refused(tiny_manifest: Path, bad: object) -> None:
    from edgestill.errors import InputError

    with pytest.raises(InputError, match="memory_limit_bytes"):
        benchmark_matrix([tiny_manifest], [1], bench=QUICK, memory_limit_bytes=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("said", [
    "MemoryError: Unable to allocate 1.00 GiB for an array with shape (268435456,) and data type float32",
    "Check 'false' failed at src/frontends/common/src/frontend.cpp:47:\nLoading input model\nstd::bad_alloc",  # OpenVINO
    "terminate called after throwing an instance of 'std::bad_alloc'\n  what():  std::bad_alloc",  # a native abort
    "cannot allocate memory for thread-local data: ABORT",  # glibc starting a thread
])
def test_what_runtimes_print_when_memory_runs_out_is_recognised(said: str) -> None:
    from edgestill.benchmarks.bench import _out_of_memory

    assert _out_of_memory(1 << 30, said)
    assert not _out_of_memory(None, said)  # no limit set: a failure is what it says it is
    assert not _out_of_memory(1 << 30, "RuntimeFailure: OpenVINO could not compile x.xml: unsupported op Foo")


@pytest.mark.slow
def test_onnxruntime_openvino_and_litert_artifacts_run_under_the_default_memory_limit(tmp_path: Path) -> None:
    """RLIMIT_DATA, not RLIMIT_AS: the runtimes reserve address space they never touch (onnxruntime 1.5 GB at 32
    threads for 70 MB resident); under the default limit every format runs, at 1 and at many threads."""
    import numpy as np
    import torch

    from edgestill.export import ExportConfig, export
    from tests.conftest import build_tiny_cnn

    torch.set_num_threads(1)
    x = np.random.default_rng(0).normal(size=(4, 3, 32, 32)).astype(np.float32)
    results = export(build_tiny_cnn(seed=1), (torch.from_numpy(x[:1]),),
                     ExportConfig(formats=("onnx", "tflite", "openvino"), name="cnn"), tmp_path / "art",
                     validation_inputs=x)  # fmt: skip
    manifests = [r.artifact.manifest_path for r in results]
    assert sorted(r.artifact.format for r in results) == ["onnx", "openvino", "tflite"]
    ms = benchmark_matrix(manifests, [1, 16], bench=BenchOptions(min_runs=5, min_seconds=0.0, warmup_runs=1))
    for m in ms:
        assert m.kind == "measured", (m.format, m.threads, m.error)
        assert m.settings["memory_limit_bytes"] >= 512 << 20
