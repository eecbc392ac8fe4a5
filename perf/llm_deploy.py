"""Small generative LMs (issue 16), the deployment half: each model exported with a KV cache, scored and timed.

For every ``--model LABEL=HF_DIR`` (a local causal-LM folder: the teacher and the students ``perf/llm_chain.py``
trained), each format x precision is exported and validated against torch by ``edgestill.chain.llm_export.export_llm``
(fp32: greedy tokens identical on the validation prompts; weight-only: token agreement and KL to the fp32 file), then
every published file is scored by greedy exact match on the held-out test problems on its own runtime, and timed by
the runner (``benchmark_matrix``: one subprocess per cell, TTFT, prefill and decode tokens/s at ``--prompt`` /
``--gen`` tokens) at each ``--threads`` count.

One JSON line per artifact (exact match, size, validation) and per timed cell; a last line with the weight-only
speed-ups against each format's fp32 file at 1 thread and their exact-match drop. ``--markdown`` writes the README
table to stderr.

Usage: python perf/llm_deploy.py --model teacher=DIR --model student=DIR [--formats onnx,openvino,tflite]
       [--precisions fp32,int8-weight,int4-weight] [--threads 1,2] [--prompt 64] [--gen 64] [--test 200]
       [--work perf/.cache/llm_deploy] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def eval_file(path: Path, hf_dir: Path, problems: list[Any], max_new_tokens: int) -> Path:
    """The problems as LLM eval arrays in the model's own tokenizer."""
    import numpy as np

    from edgestill.data.reasoning import eval_arrays
    from edgestill.models.llm import load_causal_lm

    _, tokenizer = load_causal_lm(hf_dir)
    with open(path, "wb") as f:
        np.savez(f, **eval_arrays(problems, tokenizer, max_new_tokens=max_new_tokens))
    return path


def exact_match(manifest: Path, eval_npz: Path) -> dict[str, Any]:
    """Greedy exact match of one published file on its own runtime (1 thread)."""
    from edgestill.artifact import Artifact
    from edgestill.runtimes.generate import eval_generations, load_generator, read_eval_arrays, score_generations

    gen = load_generator(Artifact.load(manifest), threads=1)
    try:
        arrays = read_eval_arrays(eval_npz, gen.info)
        return {**score_generations(eval_generations(gen, arrays), arrays, eos_token_id=gen.info.eos_token_id),
                "runtime": gen.runtime}
    finally:
        gen.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", required=True, help="LABEL=HF_DIR (repeatable)")
    ap.add_argument("--formats", default="onnx,openvino,tflite")
    ap.add_argument("--precisions", default="fp32,int8-weight,int4-weight")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--val", type=int, default=100, help="the validation split's size (as perf/llm_chain.py's)")
    ap.add_argument("--validate-prompts", type=int, default=16, help="validation prompts each file is checked on")
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--corpus-seed", type=int, default=0)
    ap.add_argument("--difficulty", default="default")
    ap.add_argument("--train", type=int, default=3000, help="the training split's size (the held-out problems follow it)")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--work", type=Path, default=Path(__file__).resolve().parent / ".cache" / "llm_deploy")
    ap.add_argument("--rounds", type=int, default=3, help="timing rounds over all cells, interleaved; a cell's median")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)

    from edgestill.benchmarks.bench import benchmark_matrix, median_round
    from edgestill.chain.llm_export import export_llm
    from edgestill.data.reasoning import splits
    from edgestill.runtimes import RuntimeOptions
    from edgestill.runtimes.harness import BenchOptions

    out_fd = os.dup(1)  # the JSON lines go to the real stdout, the converters' prints to stderr
    os.dup2(2, 1)
    emit = os.fdopen(out_fd, "w", buffering=1)

    def line(doc: dict[str, Any]) -> None:
        print(json.dumps(doc), file=emit, flush=True)

    parts = splits(args.train, args.val, args.test, seed=args.corpus_seed, difficulty=args.difficulty)
    threads = [int(t) for t in args.threads.split(",")]
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for spec in args.model:
        label, _, folder = spec.partition("=")
        hf_dir = Path(folder)
        work = args.work / label
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        val = eval_file(work / "val.npz", hf_dir, parts["val"][:args.validate_prompts], args.max_new_tokens)
        test = eval_file(work / "test.npz", hf_dir, parts["test"], args.max_new_tokens)
        result = export_llm(hf_dir, work / "artifacts", formats=args.formats.split(","),
                            precisions=args.precisions.split(","), name=label, eval_data=val,
                            n_prompts=min(args.validate_prompts, len(parts["val"])))
        for cell in result.cells:
            row = {"what": "artifact", "model": label, "format": cell.format, "precision": cell.precision,
                   "status": cell.status, "bytes": cell.model_bytes, "route": cell.route,
                   "reasons": cell.reasons[:2]}
            if cell.passed:
                row.update(exact_match(Path(cell.manifest), test))
                row["manifest"] = cell.manifest
            line(row)
            rows.append(row)
    timed = [r for r in rows if r["status"] == "passed"]
    ms = benchmark_matrix([r["manifest"] for r in timed], threads, options=RuntimeOptions(),
                          bench=BenchOptions(min_runs=3, min_seconds=1.0), rounds=args.rounds,
                          prompt_tokens=args.prompt, gen_tokens=args.gen)
    n_cells = len(timed) * len(threads)
    for i, r in enumerate(timed):
        for j, t in enumerate(threads):
            m = median_round(ms[i * len(threads) + j::n_cells])  # rounds outer, then artifacts, then threads
            cell = {"threads": t, "kind": m.kind, "ttft_ms": m.ttft_ms, "prefill_tokens_per_s": m.prefill_tokens_per_s,
                    "decode_tokens_per_s": m.decode_tokens_per_s, "prompt_tokens": m.prompt_tokens,
                    "generated_tokens": m.generated_tokens, "error": m.error}
            r.setdefault("timed", []).append(cell)
            line({"what": "timed", "model": r["model"], "format": r["format"], "precision": r["precision"], **cell})
    speedups = []
    for r in timed:
        base = next((b for b in timed if b["model"] == r["model"] and b["format"] == r["format"]
                     and b["precision"] == "fp32"), None)
        if base is None or r is base:
            continue
        one = lambda x: next((c["decode_tokens_per_s"] for c in x.get("timed", []) if c["threads"] == 1), None)  # noqa: E731
        if one(r) and one(base):
            speedups.append({"model": r["model"], "format": r["format"], "precision": r["precision"],
                             "decode_speedup_1t": round(one(r) / one(base), 2),
                             "exact_match_drop_points": round(100 * (base["exact_match"] - r["exact_match"]), 1)})
    line({"what": "verdict", "seconds": round(time.perf_counter() - started, 1), "speedups": speedups,
          "met": [s for s in speedups if s["decode_speedup_1t"] >= 1.5 and s["exact_match_drop_points"] <= 2]})
    if args.markdown:
        lines = ["| model | format | precision | exact match | MB | TTFT ms (1t) | decode tok/s 1t | decode tok/s 2t |",
                 "|---|---|---|---:|---:|---:|---:|---:|"]
        for r in rows:
            by = {c["threads"]: c for c in r.get("timed", [])}
            cells = [f"{by[t]['decode_tokens_per_s']:.0f}" if t in by and by[t]["decode_tokens_per_s"] else "—"
                     for t in (1, 2)]
            ttft = f"{by[1]['ttft_ms']:.2f}" if 1 in by and by[1]["ttft_ms"] else "—"
            em = f"{100 * r['exact_match']:.1f}%" if "exact_match" in r else r["status"]
            mb = f"{r['bytes'] / 1e6:.2f}" if r.get("bytes") else "—"
            lines.append(f"| {r['model']} | {r['format']} | {r['precision']} | {em} | {mb} | {ttft} | {cells[0]} | {cells[1]} |")
        print("\n".join(lines), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
