"""The target's own files besides manifests: the scheduler config (P2A.3) and code checks (P2B.2/3)."""

from __future__ import annotations

import tomllib

import tomlkit

from actor_rollback.runbook.errors import BadInputError, StepError
from actor_rollback.runbook.model import StepResult
from actor_rollback.tasks.context import StepContext
from actor_rollback.tasks.declare import declare_step
from actor_rollback.tasks.git_repo import commit_files, head_text, open_workspace, sync_with_remote
from actor_rollback.tasks.paths import writable


def restored_text(text: str, table: str, values: dict) -> str:
    """`text` with [table] set to `values`; every other byte, comments on those lines included, kept."""
    document = tomlkit.parse(text)
    if table not in document:
        document[table] = tomlkit.table()
    section = document[table]
    for key, value in values.items():
        old = section.get(key)
        new = tomlkit.item(value)
        trivia = getattr(old, "trivia", None)
        if trivia is not None:  # keep the line's trailing comment
            new.trivia.comment_ws, new.trivia.comment = trivia.comment_ws, trivia.comment
        section[key] = new
    edited = tomlkit.dumps(document)
    expected = tomllib.loads(text)
    expected.setdefault(table, {}).update(values)
    if tomllib.loads(edited) != expected:
        raise RuntimeError("the TOML edit changed more than the restored values; nothing was written")
    return edited


def _describe_config(spec, cfg, phase) -> list[str]:
    restore = cfg.phase(phase).restore
    if not restore:
        return []
    values = ", ".join(f"{k} = {v!r}" for k, v in restore.values.items())
    return [f"set [{restore.table}] {values} in {restore.file} (formatting kept)", "git commit"]


@declare_step("config", describe=_describe_config)
def restore_scheduler_config(ctx: StepContext) -> StepResult:
    """P2A.3: `[scheduler]` back to the Phase 1 settings, formatting kept, committed once."""
    spec = ctx.phase_cfg.restore
    if spec is None:
        raise BadInputError(f"phase {ctx.phase} has no [phases.{ctx.phase}.restore] in the config")
    if not spec.file:
        return StepResult(id=ctx.step_id, name="config", status="skipped", evidence=[
            f"phases.{ctx.phase}.restore.file is empty: this workspace keeps no scheduler settings in a file"])
    path = ctx.repo / spec.file
    wanted = ", ".join(f"{k} = {v!r}" for k, v in spec.values.items())
    if ctx.dry_run:
        if not path.exists():
            raise BadInputError(f"{spec.file} does not exist in {ctx.repo}; fix phases.{ctx.phase}.restore.file "
                                f"(or --skip config when this workspace has no such file)")
        try:
            current = tomllib.loads(path.read_text()).get(spec.table, {})
        except tomllib.TOMLDecodeError as exc:
            raise BadInputError(f"{spec.file} is not valid TOML ({exc}); fix it by hand") from None
        if all(current.get(k) == v for k, v in spec.values.items()):
            return StepResult(id=ctx.step_id, name="config", status="already-done",
                              evidence=[f"{spec.file} [{spec.table}] already has {wanted}"])
        return StepResult(id=ctx.step_id, name="config", status="planned",
                          evidence=[f"{spec.file}: set [{spec.table}] {wanted}"])
    repo = open_workspace(ctx.repo)
    evidence = sync_with_remote(repo, ctx, resumable=_resumable(ctx))
    if not path.exists():
        raise BadInputError(f"{spec.file} does not exist in {ctx.repo}; fix phases.{ctx.phase}.restore.file")
    text = path.read_text()
    try:
        current = tomllib.loads(text).get(spec.table, {})
    except tomllib.TOMLDecodeError as exc:
        raise BadInputError(f"{spec.file} is not valid TOML ({exc}); fix it by hand") from None
    if all(current.get(k) == v for k, v in spec.values.items()) and not _dirty(repo, spec.file):
        return StepResult(id=ctx.step_id, name="config", status="already-done",
                          evidence=[*evidence, f"{spec.file} [{spec.table}] already has {wanted}"])
    changed = [f"{k}: {current.get(k)!r} → {v!r}" for k, v in spec.values.items() if current.get(k) != v]
    writable(ctx.repo, spec.file).write_text(restored_text(text, spec.table, spec.values))
    try:
        sha = commit_files(ctx, [spec.file], f"restore [{spec.table}] of {spec.file}")
    except BaseException:
        path.write_text(text)
        raise
    return StepResult(id=ctx.step_id, name="config", status="done",
                      evidence=[*evidence, f"{spec.file} [{spec.table}]: " + ", ".join(changed) or "recommitted",
                                f"committed {sha[:10]}"])


def _dirty(repo, rel: str) -> bool:
    return bool(repo.git.status("--porcelain", "--", rel).strip())


def _resumable(ctx: StepContext) -> dict[str, str]:
    """An interrupted run may have written the file but not committed it: that edit may be resumed."""
    spec = ctx.phase_cfg.restore
    text = head_text(open_workspace(ctx.repo), spec.file)
    try:
        return {spec.file: restored_text(text, spec.table, spec.values)} if text is not None else {}
    except (tomllib.TOMLDecodeError, RuntimeError):
        return {}


def _describe_code_checks(spec, cfg, phase) -> list[str]:
    c = cfg.phase(phase).code_checks
    return [f"{c.file} must contain {c.present} and must not contain {c.absent}"] if c else []


@declare_step("code-checks", describe=_describe_code_checks,
              evidence={"P2B.C1": "present", "P2B.C2": "absent"})
def check_phase_code(ctx: StepContext) -> StepResult:
    """P2B.2 / P2B.3: after the revert, the direct path is back and the middleware chain gone."""
    checks = ctx.phase_cfg.code_checks
    if checks is None:
        raise BadInputError(f"phase {ctx.phase} has no [phases.{ctx.phase}.code_checks] in the config")
    if not checks.file:
        return StepResult(id=ctx.step_id, name="code-checks", status="needs-human", evidence=[
            f"phases.{ctx.phase}.code_checks.file is empty: check by hand that the phase's code is gone after the "
            "revert, or name the file and the strings to look for"])
    path = ctx.repo / checks.file
    if ctx.dry_run and path.exists():
        return StepResult(id=ctx.step_id, name="code-checks", status="planned",
                          evidence=[f"{checks.file}: must contain {checks.present}, must not contain {checks.absent}"])
    if not path.exists():
        raise BadInputError(f"{checks.file} does not exist in {ctx.repo}; fix phases.{ctx.phase}.code_checks.file")
    lines = path.read_text(errors="replace").splitlines()
    evidence, present_ok, absent_ok = [], True, True
    for needle in checks.present:
        hits = [f"{checks.file}:{n} {line.strip()}" for n, line in enumerate(lines, 1) if needle in line]
        present_ok &= bool(hits)
        evidence += hits or [f"MISSING {needle!r} in {checks.file}"]
    for needle in checks.absent:
        hits = [f"{checks.file}:{n} {line.strip()}" for n, line in enumerate(lines, 1) if needle in line]
        absent_ok &= not hits
        evidence += [f"STILL PRESENT {h}" for h in hits] or [f"{needle!r} is gone from {checks.file}"]
    if not (present_ok and absent_ok):
        raise StepError("the code after the revert is not what the runbook expects: " + "; ".join(evidence))
    return StepResult(id=ctx.step_id, name="code-checks", status="done", evidence=evidence,
                      data={"present": "pass", "absent": "pass"})
