"""Write examples/data/llm-teacher-generations.jsonl: stand-in answers of a black-box teacher for llm-socratic.yaml.

A hosted model's answers would come from its API; here the built-in corpus's own worked answers for the training
prompts of ``data: {corpus: builtin, problems: 3000, seed: 0}`` play that part (every tenth one given a wrong final
answer, as a real teacher's would be sometimes, so the verification step has something to drop).

    python examples/make_llm_generations.py
"""

from __future__ import annotations

import json
from pathlib import Path

from edgestill.data.reasoning import MARKER, splits


def main() -> None:
    train = splits(3000, 16, 200, seed=0)["train"]
    lines = []
    for i, p in enumerate(train):
        completion = p.solution
        if i % 10 == 9:  # a wrong final answer: the socratic route keeps only verified rows
            completion = completion.rsplit(MARKER, 1)[0] + f"{MARKER} {int(p.answer) + 1}"
        lines.append(json.dumps({"prompt": p.prompt, "completion": completion}))
    out = Path(__file__).resolve().parent / "data" / "llm-teacher-generations.jsonl"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} rows to {out}")


if __name__ == "__main__":
    main()
