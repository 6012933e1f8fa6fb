"""Cargo manifests: take the flag out of every default feature set, and check how it gates code.

The runbook's `sed` on one spelling of one file is replaced by a TOML-aware edit of every
member of the workspace; the edited file is re-read to prove only the flag left `default`.
"""

from __future__ import annotations

import copy
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomlkit

from runbook.errors import BadInputError
from runbook.model import StepResult
from tasks.context import StepContext
from tasks.git_repo import commit_files, head_text, open_workspace, sync_with_remote


@dataclass
class ManifestFinding:
    path: Path  # relative to the workspace root
    declares_flag: bool
    direct: list[str]  # entries of default that enable the flag directly ("flag", "dep/flag")
    chain: list[str]  # default → feature → … → flag, when only indirect


def workspace_manifests(root: Path) -> list[Path]:
    """The root Cargo.toml and every member's, glob members included, `exclude` honoured."""
    root_manifest = root / "Cargo.toml"
    if not root_manifest.exists():
        raise BadInputError(f"{root}: no Cargo.toml at the root; --repo must point at the Rust workspace")
    data = _read(root_manifest, root)
    found = [root_manifest]
    workspace = data.get("workspace", {})
    excluded = {(root / e).resolve() for e in workspace.get("exclude", [])}
    for pattern in workspace.get("members", []):
        for member in sorted(root.glob(pattern)):
            manifest = member / "Cargo.toml"
            if member.resolve() not in excluded and manifest.exists() and manifest not in found:
                found.append(manifest)
    return found


def _read(path: Path, root: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise BadInputError(f"{path.relative_to(root)} is not valid TOML ({exc}); fix it before rolling back") from None


def _enables(entry: str, flag: str) -> bool:
    return entry == flag or re.fullmatch(rf"[A-Za-z0-9_-]+\??/{re.escape(flag)}", entry) is not None


def _indirect_chain(features: dict[str, list[str]], flag: str) -> list[str]:
    """default → a → b → flag through other features (breadth first), or []."""
    queue: list[list[str]] = [["default"]]
    seen = {"default"}
    while queue:
        path = queue.pop(0)
        for entry in features.get(path[-1], []):
            if _enables(entry, flag):
                return [*path, entry] if len(path) > 1 else []
            if entry in features and entry not in seen:
                seen.add(entry)
                queue.append([*path, entry])
    return []


def inspect_manifests(root: Path, flag: str) -> list[ManifestFinding]:
    findings = []
    for manifest in workspace_manifests(root):
        features = _read(manifest, root).get("features", {})
        findings.append(ManifestFinding(
            path=manifest.relative_to(root),
            declares_flag=flag in features,
            direct=[e for e in features.get("default", []) if _enables(e, flag)],
            chain=_indirect_chain(features, flag),
        ))
    return findings


def remove_from_default(text: str, flag: str) -> str:
    """The manifest text with the flag's entries removed from [features] default, nothing else."""
    document = tomlkit.parse(text)
    default = document["features"]["default"]
    for index in reversed(range(len(default))):
        if _enables(str(default[index]), flag):
            del default[index]
    edited = tomlkit.dumps(document)
    before, after = tomllib.loads(text), tomllib.loads(edited)
    expected = copy.deepcopy(before)
    expected["features"]["default"] = [e for e in before["features"]["default"] if not _enables(e, flag)]
    if after != expected:  # a formatting library surprise must never change what the manifest means
        raise RuntimeError("the TOML edit changed more than the default features; nothing was written")
    return edited


def disable_feature_flag(ctx: StepContext) -> StepResult:
    """P1.1 (and P2A.1, P2B.1, P3.2, P4.2): the flag out of every default feature set, committed."""
    flag = ctx.cfg.flag
    findings = inspect_manifests(ctx.repo, flag)
    declared = [f for f in findings if f.declares_flag]
    if not declared:
        checked = ", ".join(str(f.path) for f in findings)
        raise BadInputError(
            f'the feature "{flag}" is declared in no Cargo.toml of the workspace (checked {checked}); '
            "check `flag` in the config or --repo"
        )
    direct = [f for f in findings if f.direct]
    indirect = [f for f in findings if f.chain and not f.direct]
    evidence = [f"{f.path}: declares {flag}" for f in declared]
    if indirect:
        chains = "; ".join(f"{f.path}: {' → '.join(f.chain)}" for f in indirect)
        return StepResult(id=ctx.step_id, name="flag", status="needs-human", evidence=[
            *evidence,
            f"{flag} is enabled only through other features ({chains}); removing it would change those "
            "features too, so decide by hand which feature to take out of default",
        ])
    if ctx.dry_run:
        if not direct:
            return StepResult(id=ctx.step_id, name="flag", status="already-done",
                              evidence=[*evidence, f"{flag} is in no default feature set"], data={"flag": "off"})
        return StepResult(id=ctx.step_id, name="flag", status="planned",
                          evidence=[f"{f.path}: remove {', '.join(f.direct)} from [features] default" for f in direct])
    repo = open_workspace(ctx.repo)
    # Work from the committed manifests: a run killed between edit and commit left exactly the
    # edited text in the tree, which may be resumed; anything else dirty is refused.
    resumable = {rel: remove_from_default(text, flag) for rel, text in _enabling_at_head(repo, ctx, flag).items()}
    evidence = [*sync_with_remote(repo, ctx, resumable), *evidence]
    originals = _enabling_at_head(repo, ctx, flag)  # after the sync: the remote may have changed them
    if not originals:
        return StepResult(id=ctx.step_id, name="flag", status="already-done",
                          evidence=[*evidence, f"{flag} is in no default feature set"], data={"flag": "off"})
    try:
        for rel, text in originals.items():
            (ctx.repo / rel).write_text(remove_from_default(text, flag))
            evidence.append(f"{rel}: removed {flag} from [features] default")
        sha = commit_files(ctx, list(originals), f"remove {flag} from default features")
    except BaseException:
        for rel, text in originals.items():  # nothing half-edited is left behind
            (ctx.repo / rel).write_text(text)
        raise
    return StepResult(id=ctx.step_id, name="flag", status="done",
                      evidence=[*evidence, f"committed {sha[:10]}"], data={"flag": "off", "commit": sha})


def _enabling_at_head(repo, ctx: StepContext, flag: str) -> dict[str, str]:
    """Committed manifests whose default lists the flag directly: path → committed text."""
    found = {}
    for manifest in workspace_manifests(ctx.repo):
        rel = str(manifest.relative_to(ctx.repo))
        text = head_text(repo, rel)
        if text is None:
            continue
        try:
            default = tomllib.loads(text).get("features", {}).get("default", [])
        except tomllib.TOMLDecodeError:
            continue
        if any(_enables(entry, flag) for entry in default):
            found[rel] = text
    return found


# ---------------------------------------------------------------- P1.1b the flag's gates in code

CFG_RE = re.compile(r'#\[cfg\((not\()?\s*feature\s*=\s*"([^"]+)"\s*\)?\)\]')


@dataclass
class GateSite:
    file: str
    line: int
    negated: bool
    item: str  # the code line the attribute gates

    def show(self) -> str:
        gate = "cfg(not(feature))" if self.negated else "cfg(feature)"
        return f"{self.file}:{self.line} {gate} {self.item}"


def find_gates(root: Path, flag: str) -> list[GateSite]:
    sites = []
    for source in sorted(root.glob("modules/**/*.rs")) + sorted(root.glob("src/**/*.rs")):
        if "/target/" in str(source):
            continue
        lines = source.read_text(errors="replace").splitlines()
        for number, text in enumerate(lines, start=1):
            for match in CFG_RE.finditer(text):
                if match.group(2) != flag:
                    continue
                item = next((ln.strip() for ln in lines[number:] if ln.strip() and not ln.strip().startswith("#[")), "")
                sites.append(GateSite(str(source.relative_to(root)), number, bool(match.group(1)), item))
    return sites


def _is_module_inclusion(item: str) -> bool:
    return re.match(r"(pub(\(crate\))? )?mod \w+;", item) is not None or item.startswith(("use ", "pub use "))


def check_flag_gating(ctx: StepContext) -> StepResult:
    """P1.1b: the new path behind cfg(feature), the old one behind cfg(not(feature)) or ungated."""
    flag, old = ctx.cfg.flag, ctx.phase_cfg.old_path
    sites = find_gates(ctx.repo, flag)
    evidence = [s.show() for s in sites] or [f'no #[cfg(feature = "{flag}")] site in the workspace']
    unpaired = []
    for file in sorted({s.file for s in sites}):
        in_file = [s for s in sites if s.file == file]
        gated_new = [s for s in in_file if not s.negated and not _is_module_inclusion(s.item)]
        if gated_new and not any(s.negated for s in in_file):
            unpaired.extend(gated_new)
    for site in unpaired:
        evidence.append(f"WARNING {site.file}:{site.line}: new path without a cfg(not) old path: {site.item}")
    old_active = _old_path_active(ctx.repo, old, sites) if old else []
    evidence += [f"old path with the flag off: {line}" for line in old_active] or [
        f"{old} is not reachable with the flag off"]
    verdict = "pass" if old_active and not unpaired else "fail"
    return StepResult(id=ctx.step_id, name="gating", status="done", evidence=evidence,
                      data={"old_path": verdict, "sites": str(len(sites))})


def _old_path_active(root: Path, old: str, sites: list[GateSite]) -> list[str]:
    """Lines naming the old implementation that compile with the flag off."""
    gated_lines = {(s.file, s.line + 1) for s in sites if not s.negated}
    found = []
    for source in sorted(root.glob("modules/**/*.rs")) + sorted(root.glob("src/**/*.rs")):
        rel = str(source.relative_to(root))
        for number, text in enumerate(source.read_text(errors="replace").splitlines(), start=1):
            stripped = text.strip()
            selects_old = re.search(rf"(=\s*{re.escape(old)}\b|\buse\b.*\b{re.escape(old)}\b)", stripped)
            if selects_old and not stripped.startswith("//") and (rel, number) not in gated_lines:
                found.append(f"{rel}:{number} {stripped}")
    return found[:10]
