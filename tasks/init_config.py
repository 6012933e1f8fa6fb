"""`actor-rollback init`: read a workspace and write the starter rollback.toml for *it* — only looks.

Every value it writes is one it found, with a comment saying where; what it could not find is
listed for a person to fill in. The file is partial: the shipped defaults fill in the rest.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from git import GitCommandError

from actor_rollback.runbook.config import PHASES, RollbackConfig
from actor_rollback.runbook.phases import phase_steps
from actor_rollback.runbook.benchstats import BenchmarkInputError, parse_markdown_baseline
from actor_rollback.tasks.cargo_manifest import (_read, cargo_features, flag_removal, inspect_manifests, member_packages,
                                  undeclared_features)
from actor_rollback.tasks.ci_workflow import NO_STD_WORDS, bare_metal_targets, plan_ci_edit
from actor_rollback.tasks.git_repo import _log, open_workspace, run_git

BASELINE_HEADER = re.compile(r"^\|\s*Benchmark\s*\|\s*Mean\s*\|\s*Std Dev\s*\|", re.I | re.M)


def _toml(value) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string or list of strings is valid TOML


@dataclass
class Finding:
    key: str  # dotted, under its table
    value: object
    comment: str


@dataclass
class Scan:
    repo: Path
    tables: dict[str, list[Finding]] = field(default_factory=dict)
    summary: list[str] = field(default_factory=list)
    to_fill: list[str] = field(default_factory=list)

    def set(self, table: str, key: str, value, comment: str) -> None:
        self.tables.setdefault(table, []).append(Finding(key, value, comment))

    def render(self) -> str:
        lines = [f"# rollback.toml for {self.repo.name}, written by `actor-rollback init` from what is in the workspace.",
                 "# Each value says where it was found. Anything not here comes from the shipped defaults",
                 "# (the ActorScheduler runbook); `actor-rollback plan PHASE --repo .` shows what they turn into.", ""]
        if self.to_fill:
            lines += ["# A person must still fill in:"] + [f"#   - {item}" for item in self.to_fill] + [""]
        for table, findings in self.tables.items():
            if table:
                lines.append(f"[{table}]")
            for f in findings:
                lines.append(f"{f.key} = {_toml(f.value)}" + (f"   # {f.comment}" if f.comment else ""))
            lines.append("")
        return "\n".join(lines)


def scan_workspace(repo_path: Path, defaults: RollbackConfig, flag: str = "") -> Scan:
    root = repo_path.resolve()
    repo = open_workspace(root)
    scan = Scan(repo=root)
    flag = flag or defaults.flag
    _scan_git(scan, repo, defaults)
    _scan_flag(scan, root, flag)
    _scan_merges(scan, repo, defaults)
    _scan_ci(scan, root, defaults)
    _scan_benchmarks(scan, root, defaults)
    _scan_deploy(scan, root, defaults)
    _scan_phase_files(scan, root, defaults)
    _scan_cargo(scan, root)
    _scan_shipped_values(scan, repo, defaults)
    return scan


def _scan_git(scan: Scan, repo, defaults: RollbackConfig) -> None:
    remotes = [r.name for r in repo.remotes]
    remote = defaults.remote if defaults.remote in remotes else (remotes[0] if remotes else "")
    if not remote:
        scan.to_fill.append("a remote: the rollback pushes its commits (git remote add origin URL)")
        return
    try:
        head = run_git(repo, "symbolic-ref", "--short", f"refs/remotes/{remote}/HEAD").split("/", 1)[1]
        how = f"{remote}/HEAD"
    except GitCommandError:
        head, how = repo.active_branch.name if not repo.head.is_detached else defaults.main_branch, "the current branch"
    scan.set("", "remote", remote, f"git remote ({', '.join(remotes)})")
    scan.set("", "main_branch", head, f"from {how}")
    scan.summary.append(f"git: pushes go to {remote} {head}")


def _scan_flag(scan: Scan, root: Path, flag: str) -> None:
    findings = inspect_manifests(root, flag)
    declared = [str(f.path) for f in findings if f.declares_flag]
    in_default = [str(f.path) for f in findings if f.direct]
    if declared:
        where = f"declared in {', '.join(declared)}; in default of {', '.join(in_default) or 'no member'}"
        scan.set("", "flag", flag, where)
        scan.summary.append(f"flag {flag}: {where}")
        return
    removal = flag_removal(root, flag)
    if removal:
        scan.set("", "flag", flag, f"declared nowhere now: removed by {removal[0][:10]} {removal[1]}")
        scan.summary.append(f"flag {flag}: removed by {removal[0][:10]} ({'a revert' if removal[2] else 'not a revert'})")
        return
    features = sorted({f for have in cargo_features(root).values() for f in have})
    scan.to_fill.append(f"flag: {flag} is declared in no Cargo.toml; the features seen are {', '.join(features)}"
                        " (init --flag NAME)")
    scan.set("", "flag", flag, "NOT FOUND in any Cargo.toml: set the feature that gates the new code")


def _scan_merges(scan: Scan, repo, defaults: RollbackConfig) -> None:
    for phase in PHASES:
        p = defaults.phase(phase)
        table = f"phases.{phase}"
        if p.merged and not any(spec.name == "find-merge" for spec in phase_steps(phase)):
            continue  # a phase without a revert step (3) needs no merge patterns
        if not p.merged:
            exists = _branch_exists(repo, defaults.remote, p.branch)
            scan.set(table, "branch", p.branch, "found" if exists else "NOT FOUND here or on the remote")
            if not exists:
                scan.to_fill.append(f"phases.{phase}.branch: the never-merged PoC branch to archive (P0.1)")
            continue
        greps = [f"--grep={pattern}" for pattern in p.merge_patterns]
        try:
            merges = _log(repo, "HEAD", "--first-parent", "--merges", "-i", "--fixed-strings", *greps)
        except GitCommandError:
            merges = []
        if len(merges) == 1:
            comment = f"matches {merges[0].sha[:10]} {merges[0].subject}"
        elif merges:
            comment = f"AMBIGUOUS: {len(merges)} merges match ({'; '.join(m.sha[:10] for m in merges[:3])}): narrow them"
            scan.to_fill.append(f"phases.{phase}.merge_patterns: {len(merges)} merges match; narrow the patterns")
        else:
            comment = "not found: no merge on the first-parent history matches (not merged yet, or another message)"
            scan.to_fill.append(f"phases.{phase}.merge_patterns: no merge matches {p.merge_patterns}; if phase {phase} "
                                "was merged, set the words of its merge message (or pass --merge SHA to run)")
        scan.set(table, "merge_patterns", p.merge_patterns, comment)
        scan.summary.append(f"phase {phase} merge: {comment}")


def _branch_exists(repo, remote: str, branch: str) -> bool:
    refs = run_git(repo, "for-each-ref", "--format=%(refname)", f"refs/heads/{branch}",
                   f"refs/remotes/{remote}/{branch}")
    return bool(refs.strip())


def _scan_ci(scan: Scan, root: Path, defaults: RollbackConfig) -> None:
    workflows = sorted((root / ".github" / "workflows").glob("*.y*ml"))
    if not workflows:
        scan.to_fill.append("phases.3.ci_file: no .github/workflows/*.yml here; P3.3 has nothing to edit (--skip ci-file)")
        return
    chosen, best = workflows[0], -1
    for path in workflows:
        text = path.read_bytes().decode(errors="replace")
        score = len(bare_metal_targets(text)) * 2 + len(NO_STD_WORDS.findall(text)) + (path.stem in ("ci", "CI"))
        if score > best:
            chosen, best = path, score
    rel = str(chosen.relative_to(root))
    text = chosen.read_bytes().decode(errors="replace")
    targets = bare_metal_targets(text)
    scan.set("phases.3", "ci_file", rel, f"of {len(workflows)} workflow(s), the one that looks most like a no_std build")
    try:
        edit = plan_ci_edit(text, targets, rel, "P3.3 (init)")
        named = [n for n in (workflow_job_ids(text)) if re.search(r"no[-_]?std|nostd|embedded|bare[-_]?metal", n, re.I)]
        untouched = [n for n in named if not any(c.startswith(f"job {n}:") or c.startswith(f"job {n},")
                                                 for c in edit.changes)]
        used_jobs: list[str] = []
        if untouched:  # a job named for a no_std build that names no target (it runs a script): turn it off too
            second = plan_ci_edit(text, targets, rel, "P3.3 (init)", untouched)
            if second.status == "changed":
                edit, used_jobs = second, untouched
    except Exception as exc:  # a workflow init cannot read is for a person, not a crash
        scan.to_fill.append(f"phases.3: {rel} could not be read ({exc})")
        return
    if targets:
        scan.set("phases.3", "ci_disable_targets", targets, f"bare-metal targets built in {rel}")
    if edit.status == "changed" and not targets:
        scan.set("phases.3", "ci_disable_targets", [], "no bare-metal target named in the workflow")
    if used_jobs:
        scan.set("phases.3", "ci_disable_jobs", used_jobs, "jobs named like a no_std build whose steps name no target")
    if edit.status == "changed":
        scan.summary.append(f"CI {rel}: P3.3 would change: " + "; ".join(edit.changes))
    else:
        scan.summary.append(f"CI {rel}: P3.3 {edit.status}")
        scan.to_fill += [f"phases.3 (P3.3): {reason}" for reason in edit.needs_human]


def workflow_job_ids(text: str) -> list[str]:
    import yaml

    data = yaml.safe_load(text)
    jobs = data.get("jobs") if isinstance(data, dict) else None
    return [str(name) for name in jobs] if isinstance(jobs, dict) else []


def _scan_benchmarks(scan: Scan, root: Path, defaults: RollbackConfig) -> None:
    commands = []
    for name, manifest in member_packages(root).items():
        data = _read(manifest, root)
        declared = {b.get("name"): b for b in data.get("bench", []) if isinstance(b, dict)}
        found = sorted(p.stem for p in (manifest.parent / "benches").glob("*.rs")) if (manifest.parent / "benches").is_dir() else []
        for bench in sorted(set(declared) | set(found)):
            required = declared.get(bench, {}).get("required-features", [])
            commands.append(f"cargo bench -p {name} --bench {bench}" + (f" --features {','.join(required)}" if required else ""))
    if commands:
        scan.set("benchmarks", "commands", commands, "[[bench]] targets and benches/*.rs, with their required-features")
        scan.summary.append(f"benchmarks: {len(commands)} bench target(s)")
    else:
        scan.to_fill.append("benchmarks.commands: no bench target found ([[bench]] or benches/*.rs)")
    baselines = []
    for path in sorted(root.glob("benchmarks/**/*.md")) + sorted(root.glob("docs/**/bench*.md")):
        text = path.read_text(errors="replace")
        if BASELINE_HEADER.search(text):
            try:
                rows = parse_markdown_baseline(text, str(path))
            except BenchmarkInputError:
                continue
            title = next((line for line in text.splitlines() if line.startswith("#")), "")
            rel = str(path.relative_to(root))
            baselines.append((f"{rel}" + (f" “{title.lstrip('# ').strip()}”" if FIXTURE_WORDS.search(title) else ""), rows))
    benches = sorted({command.split(" --bench ")[1].split()[0] for command in commands})
    covering = [(path, rows) for path, rows in baselines if _covers(path, rows, benches)]
    if covering:
        chosen, rows = covering[0]
        others = f"; others: {', '.join(b for b, _ in covering[1:])}" if len(covering) > 1 else ""
        scan.set("benchmarks", "baseline", chosen,
                 f"a | Benchmark | Mean | Std Dev | table of {len(rows)} rows covering the {len(benches)} bench target(s){others}")
        scan.set("benchmarks", "baseline_ref", "", "compare with that file")
        return
    passed = "; ".join(f"{path} ({_why_not(path, rows, benches)})" for path, rows in baselines)
    scan.set("benchmarks", "baseline_ref", "merge-parent", "no saved baseline covers the benches found"
             + (f" — not {passed}" if passed else "") + ": the pre-merge code is benched in the same run")
    if passed:
        scan.summary.append(f"benchmarks: no baseline: {passed}")


FIXTURE_WORDS = re.compile(r"fixture|test[-_ ]?data|example|sample|dummy", re.I)


def _covers(path: str, rows: dict, benches: list[str]) -> bool:
    return not _why_not(path, rows, benches)


def _why_not(path: str, rows: dict, benches: list[str]) -> str:
    """Why a baseline table cannot stand for this workspace's benches ('' when it can): a fixture or test file,
    or one that names too few of the bench targets (criterion's ids start with the group, often the target's)."""
    if FIXTURE_WORDS.search(path):
        return "a fixture or test file, by its path"
    names = " ".join(rows).lower().replace("-", "_")
    named = [b for b in benches if b.lower().replace("-", "_") in names]
    if benches and len(named) < len(benches) and (named or len(rows) < len(benches)):
        return f"covers {len(named)} of {len(benches)} bench targets: {', '.join(benches)}"
    return ""


def _scan_deploy(scan: Scan, root: Path, defaults: RollbackConfig) -> None:
    scripts = [p for p in (root / "scripts" / "deploy.sh", root / "deploy.sh", root / "scripts" / "deploy") if p.exists()]
    if not scripts:
        scan.set("deploy", "command", "", "NOT FOUND: no deploy script; set the command that deploys a version")
        scan.to_fill.append("deploy.command: how a version is deployed ({version} is the rollback version), or "
                            "deploy.backend = \"kubernetes\" with [deploy.kubernetes]")
        return
    rel = "./" + str(scripts[0].relative_to(root))
    scan.set("deploy", "command", f"{rel} production --version={{version}}", f"{rel} exists; check its arguments")
    if not os.access(scripts[0], os.X_OK):
        scan.to_fill.append(f"{rel} is not executable: chmod +x it (and commit the mode), or run it through sh")


def _scan_phase_files(scan: Scan, root: Path, defaults: RollbackConfig) -> None:
    restore = defaults.phase("2A").restore
    if restore and restore.file and not (root / restore.file).exists():
        scan.set("phases.2A.restore", "file", "", f"{restore.file} is not in this workspace: nothing to restore (P2A.3)")
    checks = defaults.phase("2B").code_checks
    if checks and checks.file and not (root / checks.file).exists():
        scan.set("phases.2B.code_checks", "file", "", f"{checks.file} is not in this workspace")
        scan.to_fill.append("phases.2B.code_checks: the file and strings that show Phase 2B's code is gone (P2B.3)")
    build = defaults.phase("3").tokio_build
    if build and undeclared_features(root, build):
        selector = tokio_selector(root)
        if selector:
            command, how = selector
            scan.set("phases.3", "tokio_build", command,
                     f"the runbook's `{build}` asks for features this workspace lacks; {how}")
        else:
            scan.set("phases.3", "tokio_build", "", f"the runbook's `{build}` asks for features this workspace lacks, "
                     "and nothing here selects Tokio")
            scan.to_fill.append("phases.3.tokio_build: no feature or package here selects the Tokio runtime; set the "
                                "build that pins it (P3.1), or --skip build if the workspace has one runtime")
    adr = root / defaults.after.adr_dir
    if not adr.is_dir():
        found = sorted({p.parent for p in root.glob("**/adr/*.md") if ".git" not in p.parts})
        if found:
            scan.set("after", "adr_dir", str(found[0].relative_to(root)), "where this workspace keeps its ADRs")
        else:
            scan.summary.append(f"ADRs: none yet; P0.3/A.2 will create {defaults.after.adr_dir}/")


def check_starter_config(text: str, source: str) -> RollbackConfig:
    """What init writes must load over the shipped defaults: checked before anything is written."""
    from actor_rollback.runbook.config import config_over_defaults

    return config_over_defaults(tomllib.loads(text), source)


def _scan_cargo(scan: Scan, root: Path) -> None:
    """CI, the benchmarks and the Tokio build compile the workspace: cargo must resolve it where the run runs."""
    from actor_rollback.runbook.errors import BadInputError
    from actor_rollback.tasks.cargo_resolve import cargo_resolves

    try:
        scan.summary.append(cargo_resolves(root, "CI, the benchmarks and the Tokio build"))
    except BadInputError as exc:
        scan.to_fill.append(f"cargo: {exc}")


SHIPPED_SAMPLE = "the shipped value is the ActorScheduler sample's"


def _scan_shipped_values(scan: Scan, repo, defaults: RollbackConfig) -> None:
    """Every value left at a shipped default that cannot be right for another repository, listed for a person."""
    m = defaults.monitoring
    if not m.prometheus_url:
        scan.to_fill.append(f"monitoring.prometheus_url (or monitoring.metrics_url): {SHIPPED_SAMPLE} "
                            f"{m.metrics_url}; set where this service's metrics are (P1.3b)")
    logs = defaults.logs
    if logs.source == "kubernetes":
        k = defaults.deploy.kubernetes
        scan.to_fill.append(f"logs: {SHIPPED_SAMPLE} Kubernetes Deployment {k.deployment!r} (pods {k.label_selector!r} "
                            f"in {k.namespace!r}); set [deploy.kubernetes] or logs.source = \"file\"/\"command\" (P1.3c)")
    scan.to_fill.append(f"ci.command: {SHIPPED_SAMPLE} `{defaults.ci.command}`; set what CI runs here, or ci.check = "
                        "\"commit-status\" with ci.status_url (P1.2c)")
    unnamed = [role for role, contact in defaults.contacts.items() if contact.name.strip().upper() in ("", "TBD")]
    if unnamed:
        scan.to_fill.append(f"contacts: {', '.join(unnamed)} are \"TBD\"; name each and its channels (X.1)")
    shipped = [f"{key} = {value}" for key, value in defaults.dashboards.model_dump().items() if "example.com" in str(value)
               or value == "kubectl logs deployment/actor-system"]
    if shipped:
        scan.to_fill.append(f"dashboards: {SHIPPED_SAMPLE} ({'; '.join(shipped)}); link this service's (X.2)")
    p4 = defaults.phase("4")
    if p4.baseline_commit_pattern:
        try:
            found = run_git(repo, "log", "--all", "--fixed-strings", f"--grep={p4.baseline_commit_pattern}", "--format=%h %s")
        except GitCommandError:
            found = ""
        if found:
            first = found.splitlines()[-1]
            scan.set("phases.4", "baseline_commit_pattern", p4.baseline_commit_pattern, f"matches {first}")
        else:
            scan.to_fill.append(f"phases.4.baseline_commit_pattern: no commit contains {p4.baseline_commit_pattern!r}; "
                                "name the commit Phase 0 started from, or P4.3 (the last resort) has nowhere to go")


def tokio_selector(root: Path) -> tuple[str, str] | None:
    """The build that pins Tokio here: a feature that enables the `tokio` dependency (or is named for it), else
    a member package built on Tokio — with how it was found. None: nothing selects it (a person decides)."""
    packages = member_packages(root)
    for name, manifest in packages.items():
        data = _read(manifest, root)
        for feature, enables in sorted(data.get("features", {}).items()):
            values = [v for v in enables if isinstance(v, str)]
            if any(v in ("tokio", "dep:tokio") or v.startswith(("tokio/", "tokio?/", "dep:tokio")) for v in values) \
                    or "tokio" in feature.lower():
                return (f"cargo build -p {name} --features {feature}",
                        f"feature {feature} of {name} selects Tokio ({', '.join(values) or 'by its name'})")
        if "tokio" in name.lower() and "tokio" in data.get("dependencies", {}):
            return f"cargo build -p {name}", f"package {name} is the Tokio runtime's (it depends on tokio)"
    return None
