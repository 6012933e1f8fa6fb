"""P3.3: take the no_std targets out of the CI workflow — a YAML-aware edit, not the runbook's `sed`.

A job that exists only to build a target gets `if: ${{ false }}` and leaves every other job's
`needs` (a job needing a skipped job would be skipped too); a step that builds a target inside
a mixed job gets `if: ${{ false }}` itself. The file must still parse, every `needs` must point
at a job that runs, and nothing else may change: the edited text is compared line by line.
"""

from __future__ import annotations

import difflib
import io

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from runbook.errors import BadInputError
from runbook.model import StepResult
from tasks.context import StepContext
from tasks.git_repo import commit_files, head_text, open_workspace, sync_with_remote

DISABLED = "${{ false }}"
# Indentation styles tried in turn; the one that reproduces the file byte for byte is used.
INDENT_STYLES = [(2, 4, 2), (2, 2, 0), (4, 4, 2), (4, 6, 4), (4, 4, 0)]


def _yaml(style: tuple[int, int, int]) -> YAML:
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    mapping, sequence, offset = style
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    return yaml


def _dump(yaml: YAML, data) -> str:
    stream = io.StringIO()
    yaml.dump(data, stream)
    return stream.getvalue()


def load_round_trip(text: str, source: str) -> tuple[YAML, CommentedMap]:
    for style in INDENT_STYLES:
        yaml = _yaml(style)
        try:
            data = yaml.load(text)
        except YAMLError as exc:
            raise BadInputError(f"{source} is not valid YAML ({exc}); fix it before rolling back") from None
        if _dump(yaml, data) == text:
            return yaml, data
    raise BadInputError(
        f"{source} cannot be edited without reformatting it (unusual indentation); "
        "disable the no_std jobs by hand"
    )


def _mentions(node, targets: list[str]) -> bool:
    return any(t in str(node.get("run", "")) or t in str(node.get("with", "")) for t in targets)


def _is_disabled(node: CommentedMap) -> bool:
    return str(node.get("if", "")).replace(" ", "") in ("${{false}}", "false")


def disable_targets(text: str, targets: list[str], source: str, note: str) -> tuple[str, list[str]]:
    """The workflow with every job/step building `targets` disabled; and what was disabled."""
    yaml, data = load_round_trip(text, source)
    jobs = data.get("jobs") if isinstance(data, CommentedMap) else None
    if not isinstance(jobs, CommentedMap):
        raise BadInputError(f"{source} has no jobs: mapping; is it a GitHub Actions workflow?")
    disabled_jobs, changes = [], []
    for name, job in jobs.items():
        steps = job.get("steps") or []
        building = [i for i, step in enumerate(steps) if isinstance(step, CommentedMap) and _mentions(step, targets)]
        if not building and not _mentions(job, targets):
            continue
        run_steps = {i for i, step in enumerate(steps) if isinstance(step, CommentedMap) and "run" in step}
        if run_steps <= set(building):  # the job exists only to build the target
            if not _is_disabled(job):
                job.insert(0, "if", DISABLED, comment=note)
                changes.append(f"job {name}: disabled (if: {DISABLED})")
            disabled_jobs.append(name)
        else:
            for i in building:
                step = steps[i]
                if not _is_disabled(step):
                    step.insert(0, "if", DISABLED, comment=note)
                    changes.append(f"job {name}, step {step.get('name') or step.get('run')}: disabled")
    for name, job in jobs.items():
        needs = job.get("needs")
        if isinstance(needs, CommentedSeq):
            for gone in [n for n in needs if n in disabled_jobs]:
                needs.remove(gone)
                changes.append(f"job {name}: no longer needs {gone}")
        elif isinstance(needs, str) and needs in disabled_jobs:
            del job["needs"]
            changes.append(f"job {name}: no longer needs {needs}")
    edited = _dump(yaml, data)
    _check_job_graph(YAML(typ="safe").load(edited), source)
    return edited, changes


def _check_job_graph(data: dict, source: str) -> None:
    jobs = data["jobs"]
    running = {n for n, j in jobs.items() if str(j.get("if", "")).replace(" ", "") not in ("${{false}}", "False", "false")}
    for name, job in jobs.items():
        needs = job.get("needs", [])
        for need in [needs] if isinstance(needs, str) else needs:
            if need not in jobs:
                raise RuntimeError(f"{source}: job {name} needs {need}, which does not exist; nothing was written")
            if name in running and need not in running:
                raise RuntimeError(f"{source}: job {name} needs disabled job {need}; nothing was written")


def disable_no_std_ci(ctx: StepContext) -> StepResult:
    """P3.3: the no_std build out of CI, committed once; evidence says exactly what was disabled."""
    p = ctx.phase_cfg
    if not p.ci_disable_targets:
        raise BadInputError(f"phase {ctx.phase} has no ci_disable_targets in the config")
    path = ctx.repo / p.ci_file
    if not path.exists():
        raise BadInputError(f"{p.ci_file} does not exist in {ctx.repo}; fix phases.{ctx.phase}.ci_file")
    note = f"disabled by actor-rollback {ctx.step_id} ({ctx.incident})"
    if ctx.dry_run:
        _, changes = disable_targets(path.read_text(), p.ci_disable_targets, p.ci_file, note)
        return StepResult(id=ctx.step_id, name="ci-file", status="planned" if changes else "already-done",
                          evidence=[f"{p.ci_file}: {c}" for c in changes] or ["nothing builds those targets"])
    repo = open_workspace(ctx.repo)
    committed = head_text(repo, p.ci_file)
    resumable = {}
    if committed is not None:
        resumable[p.ci_file] = disable_targets(committed, p.ci_disable_targets, p.ci_file, note)[0]
    evidence = sync_with_remote(repo, ctx, resumable)
    original = head_text(repo, p.ci_file) or path.read_text()
    edited, changes = disable_targets(original, p.ci_disable_targets, p.ci_file, note)
    if not changes:
        return StepResult(id=ctx.step_id, name="ci-file", status="already-done",
                          evidence=[*evidence, f"{p.ci_file}: no enabled job or step builds {', '.join(p.ci_disable_targets)}"])
    path.write_text(edited)
    try:
        sha = commit_files(ctx, [p.ci_file], f"disable the {', '.join(p.ci_disable_targets)} build in CI")
    except BaseException:
        path.write_text(original)
        raise
    diff = [line.rstrip("\n") for line in difflib.unified_diff(original.splitlines(True), edited.splitlines(True), n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    return StepResult(id=ctx.step_id, name="ci-file", status="done",
                      evidence=[*evidence, *[f"{p.ci_file}: {c}" for c in changes], *diff, f"committed {sha[:10]}"])
