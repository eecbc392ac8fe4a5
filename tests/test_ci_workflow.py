"""docs/ci.md's GitHub Actions workflow, run step by step on this machine: a push to main, then a pull request that
makes the model slower. The `run:` steps execute as written (bash -eo pipefail, GitHub's default); the few `uses:`
actions are stood in for by what they do (checkout: the work tree is already there; cache: a folder; upload: the file
must exist); the install step (`id: install`) is replaced by this test's own virtual environment on PATH. A step or
condition this test does not know fails it, so the page cannot drift from what was run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "ci.md"
KNOWN_USES = ("actions/checkout@", "actions/setup-python@", "actions/cache/restore@", "actions/cache/save@",
              "actions/upload-artifact@")  # fmt: skip


def workflow() -> dict:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks, "docs/ci.md has no ```yaml block"
    return yaml.safe_load(blocks[0])


def _condition(expr: str | None, ctx: dict[str, str]) -> bool:
    """The `if:` expressions the workflow uses: always(), equality on github.* and &&."""
    if expr is None:
        return ctx["job_failed"] == ""
    parts = [p.strip() for p in expr.split("&&")]
    ok, explicit_always = True, False
    for p in parts:
        if p == "always()":
            explicit_always = True
            continue
        m = re.fullmatch(r"github\.(\w+) == '([^']*)'", p)
        assert m, f"docs/ci.md uses an `if:` this test does not know: {expr!r}"
        ok = ok and ctx[m.group(1)] == m.group(2)
    return ok and (explicit_always or ctx["job_failed"] == "")


def _expand(text: str, ctx: dict[str, str]) -> str:
    def one(m: re.Match[str]) -> str:
        for alt in m.group(1).split("||"):
            name = alt.strip()
            assert name.startswith("github."), f"unknown expression {m.group(0)!r}"
            if ctx.get(name.removeprefix("github.")):
                return ctx[name.removeprefix("github.")]
        return ""

    return re.sub(r"\$\{\{\s*(.*?)\s*\}\}", one, text)


def run_job(wf: dict, work: Path, cache: Path, ctx: dict[str, str]) -> dict[str, int]:
    """Run the one job's steps in ``work``; return each run step's exit code by name (skipped steps absent)."""
    (job,) = wf["jobs"].values()
    summary, gh_path = work / "step-summary.md", work / "github-path"
    summary.write_text("")
    gh_path.write_text("")
    env = {**os.environ, "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_PATH": str(gh_path), "CI": "true",
           "GITHUB_EVENT_NAME": ctx["event_name"], "GITHUB_REF": ctx["ref"], "GITHUB_REF_NAME": ctx["ref_name"],
           "GITHUB_HEAD_REF": ctx["head_ref"]}  # fmt: skip
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env["PATH"]  # the install step's stand-in
    codes: dict[str, int] = {}
    ctx["job_failed"] = ""
    for step in job["steps"]:
        name = step.get("name") or step.get("uses")
        if not _condition(step.get("if"), ctx):
            continue
        if "uses" in step:
            uses, with_ = step["uses"], {k: _expand(str(v), ctx) for k, v in (step.get("with") or {}).items()}
            assert uses.startswith(KNOWN_USES), f"docs/ci.md uses an action this test does not stand in for: {uses}"
            if uses.startswith("actions/cache/restore@"):
                saved = sorted(cache.glob(with_["restore-keys"] + "*"))
                if saved:
                    (work / with_["path"]).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(saved[-1] / Path(with_["path"]).name, work / with_["path"])
            elif uses.startswith("actions/cache/save@"):
                (cache / with_["key"]).mkdir(parents=True)
                shutil.copy(work / with_["path"], cache / with_["key"] / Path(with_["path"]).name)
            elif uses.startswith("actions/upload-artifact@"):
                assert (work / with_["path"]).is_file(), f"{name}: {with_['path']} was not written"
            continue
        if step.get("id") == "install":
            continue
        step_env = {**env, **{k: _expand(str(v), ctx) for k, v in (step.get("env") or {}).items()}}
        proc = subprocess.run(["bash", "-eo", "pipefail", "-c", _expand(step["run"], ctx)], cwd=work, env=step_env,
                              capture_output=True, text=True, timeout=600)  # fmt: skip
        codes[name] = proc.returncode
        if proc.returncode:
            ctx["job_failed"] = name
            print(f"--- step {name!r} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return codes


def _recipe(width_mult: float) -> str:
    from edgestill.chain.recipe import builtin_recipe_text

    text = builtin_recipe_text("demo-quick").replace("name: demo-quick", "name: ci-model")
    text = text.replace("formats: [onnx, tflite, openvino]", "formats: [onnx]").replace("baseline: true", "baseline: false")
    assert "width_mult: 0.25" in text
    return text.replace("width_mult: 0.25", f"width_mult: {width_mult}")


@pytest.mark.slow
def test_the_documented_workflow_gates_a_pull_request_against_main(tmp_path: Path) -> None:
    wf = workflow()
    work, cache = tmp_path / "repo", tmp_path / "actions-cache"
    (work / "ci").mkdir(parents=True)
    cache.mkdir()

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=work, check=True, capture_output=True,
                       env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                            "GIT_COMMITTER_EMAIL": "t@t"})  # fmt: skip

    (work / "ci" / "model.yaml").write_text(_recipe(0.25))
    git("init", "-q", "-b", "main")
    git("add", "ci/model.yaml")
    git("commit", "-q", "-m", "model")
    main = run_job(wf, work, cache, {"event_name": "push", "ref": "refs/heads/main", "ref_name": "main", "head_ref": ""})
    assert main and all(code == 0 for code in main.values()), main
    assert "Gate against main" not in main  # pushes to main only store the baseline
    assert list(cache.iterdir()), "main's results store was not saved"

    # the pull request: a student four times as wide, so several times slower
    shutil.rmtree(work / ".edgestill")  # a fresh runner: only the cache brings main's store back
    shutil.rmtree(work / "build")
    git("checkout", "-q", "-b", "wider-student")
    (work / "ci" / "model.yaml").write_text(_recipe(1.0))
    git("commit", "-q", "-am", "wider student")
    pr = run_job(wf, work, cache, {"event_name": "pull_request", "ref": "refs/pull/7/merge", "ref_name": "7/merge",
                                   "head_ref": "wider-student"})  # fmt: skip
    assert pr["Build, validate and benchmark the model"] == 0
    assert pr["Gate against main"] == 1, pr  # the regression fails the job ...
    assert pr["Post the gate summary"] == 0  # ... and the summary is still posted
    summary = (work / "step-summary.md").read_text()
    assert "edgestill gate: FAILED" in summary and "regression" in summary and "student" in summary
    junit = (work / "gate.xml").read_text()
    assert "<failure" in junit
