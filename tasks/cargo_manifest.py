"""Cargo manifests: take the flag out of every default feature set, and check how it gates code.

The runbook's `sed` on one spelling of one file is replaced by a TOML-aware edit of every
member of the workspace; the edited file is re-read to prove only the flag left `default`.
"""

from __future__ import annotations

import copy
import io
import re
import shlex
import tarfile
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomlkit

from actor_rollback.runbook.errors import BadInputError
from actor_rollback.runbook.model import StepResult
from actor_rollback.tasks.context import StepContext
from actor_rollback.tasks.declare import declare_step
from actor_rollback.tasks.git_repo import commit_files, head_text, open_workspace, run_git, sync_with_remote
from actor_rollback.tasks.paths import writable


@dataclass
class ManifestFinding:
    path: Path  # relative to the workspace root
    declares_flag: bool
    direct: list[str]  # entries of default that enable the flag directly ("flag", "dep/flag")
    chain: list[str]  # default → feature → … → flag, when only indirect


def workspace_manifests(root: Path) -> list[Path]:
    """The root Cargo.toml and every member's: ".", plain paths and globs, `exclude` honoured."""
    root_manifest = root / "Cargo.toml"
    if not root_manifest.exists():
        raise BadInputError(f"{root}: no Cargo.toml at the root; --repo must point at the Rust workspace")
    data = _read(root_manifest, root)
    found = [root_manifest]
    workspace = data.get("workspace", {})
    excluded = {(root / e).resolve() for e in workspace.get("exclude", []) if isinstance(e, str)}
    for pattern in workspace.get("members", []):
        if not isinstance(pattern, str) or pattern.startswith("/") or ".." in Path(pattern).parts:
            raise BadInputError(f"Cargo.toml: workspace member {pattern!r} is not a path inside the workspace")
        pattern = pattern.strip().rstrip("/")
        members = [root] if pattern in ("", ".") else sorted(root.glob(pattern))
        for member in members:
            manifest = member / "Cargo.toml"
            if member.resolve() not in excluded and manifest.exists() and manifest not in found:
                found.append(manifest)
    return found


def member_packages(root: Path) -> dict[str, Path]:
    """Package name → manifest, for every workspace member that is a package."""
    packages = {}
    for manifest in workspace_manifests(root):
        name = _read(manifest, root).get("package", {}).get("name")
        if isinstance(name, str):
            packages[name] = manifest
    return packages


def _read(path: Path, root: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise BadInputError(f"{path.relative_to(root)} is not valid TOML ({exc}); fix it before rolling back") from None


def _enables(entry: str, flag: str, members: frozenset[str] = frozenset()) -> bool:
    """Whether a feature-list entry turns this flag on: the flag itself, or `member/flag` of a workspace
    member that declares it. `dep/std` of an outside crate is that crate's feature, not ours."""
    if entry == flag:
        return True
    match = re.fullmatch(rf"([A-Za-z0-9_-]+)\??/{re.escape(flag)}", entry)
    return match is not None and match.group(1) in members


def _indirect_chain(features: dict[str, list[str]], flag: str, members: frozenset[str] = frozenset()) -> list[str]:
    """default → a → b → flag through other features (breadth first), or []."""
    queue: list[list[str]] = [["default"]]
    seen = {"default"}
    while queue:
        path = queue.pop(0)
        for entry in features.get(path[-1], []):
            if _enables(entry, flag, members):
                return [*path, entry] if len(path) > 1 else []
            if entry in features and entry not in seen:
                seen.add(entry)
                queue.append([*path, entry])
    return []


def flag_members(root: Path, flag: str) -> frozenset[str]:
    """The workspace's packages that declare the flag: `name/flag` in another member enables ours."""
    return frozenset(name for name, manifest in member_packages(root).items()
                     if flag in _read(manifest, root).get("features", {}))


def inspect_manifests(root: Path, flag: str) -> list[ManifestFinding]:
    members = flag_members(root, flag)
    findings = []
    for manifest in workspace_manifests(root):
        features = _read(manifest, root).get("features", {})
        findings.append(ManifestFinding(
            path=manifest.relative_to(root),
            declares_flag=flag in features,
            direct=[e for e in features.get("default", []) if _enables(e, flag, members)],
            chain=_indirect_chain(features, flag, members),
        ))
    return findings


def remove_from_default(text: str, flag: str, members: frozenset[str] = frozenset()) -> str:
    """The manifest text with the flag's entries removed from [features] default, nothing else: only the
    exact item (or a flag-declaring member's `member/flag`) goes, never `dep/flag` of an outside crate."""
    document = tomlkit.parse(text)
    default = document["features"]["default"]
    for index in reversed(range(len(default))):
        if _enables(str(default[index]), flag, members):
            del default[index]
    edited = tomlkit.dumps(document)
    before, after = tomllib.loads(text), tomllib.loads(edited)
    expected = copy.deepcopy(before)
    expected["features"]["default"] = [e for e in before["features"]["default"] if not _enables(e, flag, members)]
    if after != expected:  # a formatting library surprise must never change what the manifest means
        raise RuntimeError("the TOML edit changed more than the default features; nothing was written")
    return edited


def _describe_flag(spec, cfg, phase) -> list[str]:
    return [f'edit every workspace Cargo.toml whose [features] default lists "{cfg.flag}": remove it '
            "(TOML-aware, formatting kept)",
            f'git commit -m "rollback(<incident>): {spec.id} remove {cfg.flag} from default features"']


@declare_step("flag", describe=_describe_flag, evidence={"P1.C1": None}, milestone="flag off committed",
              changes_target=True)
def disable_feature_flag(ctx: StepContext) -> StepResult:
    """P1.1 (and P2A.1, P2B.1, P3.2, P4.2): the flag out of every default feature set, committed."""
    flag = ctx.cfg.flag
    findings = inspect_manifests(ctx.repo, flag)
    declared = [f for f in findings if f.declares_flag]
    if not declared:
        return _flag_gone(ctx, findings)
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
    members = flag_members(ctx.repo, flag)
    repo = open_workspace(ctx.repo)
    # Work from the committed manifests: a run killed between edit and commit left exactly the
    # edited text in the tree, which may be resumed; anything else dirty is refused.
    resumable = {rel: remove_from_default(text, flag, members)
                 for rel, text in _enabling_at_head(repo, ctx, flag, members).items()}
    evidence = [*sync_with_remote(repo, ctx, resumable), *evidence]
    originals = _enabling_at_head(repo, ctx, flag, members)  # after the sync: the remote may have changed them
    if not originals:
        return StepResult(id=ctx.step_id, name="flag", status="already-done",
                          evidence=[*evidence, f"{flag} is in no default feature set"], data={"flag": "off"})
    try:
        for rel in originals:
            writable(ctx.repo, rel)  # every one checked before the first is written
        for rel, text in originals.items():
            (ctx.repo / rel).write_text(remove_from_default(text, flag, members))
            evidence.append(f"{rel}: removed {flag} from [features] default")
        sha = commit_files(ctx, list(originals), f"remove {flag} from default features")
    except BaseException:
        for rel, text in originals.items():  # nothing half-edited is left behind
            (ctx.repo / rel).write_text(text)
        raise
    return StepResult(id=ctx.step_id, name="flag", status="done",
                      evidence=[*evidence, f"committed {sha[:10]}"], data={"flag": "off", "commit": sha})


def _enabling_at_head(repo, ctx: StepContext, flag: str, members: frozenset[str]) -> dict[str, str]:
    """Committed manifests whose default lists the flag directly: path → committed text."""
    found = {}
    for manifest in workspace_manifests(ctx.repo):
        rel = str(manifest.relative_to(ctx.repo))
        try:
            writable(ctx.repo, rel)
            link = None
        except BadInputError as exc:  # git holds the link, not the manifest: judge by the file it points to
            link = exc
        text = head_text(repo, rel) if link is None else _read_or_none(manifest)
        if text is None:
            continue
        try:
            default = tomllib.loads(text).get("features", {}).get("default", [])
        except tomllib.TOMLDecodeError:
            continue
        if any(_enables(entry, flag, members) for entry in default):
            if link is not None:  # never "already done" while the flag is on behind a link
                raise link
            found[rel] = text
    return found


def _read_or_none(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def flag_removal(root: Path, flag: str) -> tuple[str, str, bool] | None:
    """The newest commit that took the flag's declaration out of a Cargo.toml: (sha, subject, is a revert);
    None when no commit in HEAD's history ever declared it."""
    repo = open_workspace(root)
    declaration = rf'^[[:space:]]*"?{re.escape(flag)}"?[[:space:]]*='
    try:
        out = run_git(repo, "log", "-G", declaration, "--format=%H%x1f%s%x1f%b%x1e", "--", "*Cargo.toml")
    except Exception:  # an empty repository has no log
        return None
    for record in out.split("\x1e"):
        if not record.strip():
            continue
        sha, subject, body = (record.strip("\n").split("\x1f") + ["", ""])[:3]
        diff = run_git(repo, "show", "--format=", "--unified=0", sha, "--", "*Cargo.toml")
        pattern = re.compile(rf'^[-+]\s*"?{re.escape(flag)}"?\s*=', re.M)
        signs = {line[0] for line in pattern.findall(diff)}
        if signs == {"-"}:
            return sha, subject, subject.startswith('Revert "') or "This reverts commit" in body
        if "+" in signs:
            return None  # the newest change declared it: it is not removed
    return None


def _flag_gone(ctx: StepContext, findings: list[ManifestFinding]) -> StepResult:
    """No manifest declares the flag: rolled back already (a revert took it out), or a wrong flag name."""
    flag = ctx.cfg.flag
    checked = ", ".join(str(f.path) for f in findings)
    removal = flag_removal(ctx.repo, flag)
    if removal is None:
        raise BadInputError(
            f'the feature "{flag}" is declared in no Cargo.toml of the workspace (checked {checked}) and never was '
            "in this history; check `flag` in the config or --repo")
    sha, subject, is_revert = removal
    evidence = [f"{flag} is declared in no Cargo.toml (checked {checked})",
                f"its declaration was removed by {sha[:10]} {subject}"]
    if is_revert:
        return StepResult(id=ctx.step_id, name="flag", status="already-done", data={"flag": "off", "removed_by": sha},
                          evidence=[*evidence, "that is a revert (the phase merge rolled back): the flag cannot be on"])
    return StepResult(id=ctx.step_id, name="flag", status="needs-human", data={"removed_by": sha}, evidence=[
        *evidence, "that commit is not a revert: check by hand that the code the flag gated went with it"])


def cargo_features(root: Path) -> dict[str, set[str]]:
    """Package name → the features it has: declared ones and optional dependencies' implicit ones."""
    found = {}
    for name, manifest in member_packages(root).items():
        data = _read(manifest, root)
        optional = {dep for table in ("dependencies", "build-dependencies") for dep, spec in data.get(table, {}).items()
                    if isinstance(spec, dict) and spec.get("optional")}
        found[name] = set(data.get("features", {})) | optional
    return found


def undeclared_features(root: Path, command: str) -> list[str]:
    """What a `cargo … --features a,b [-p crate]` command asks for that no package (or that package) has."""
    argv = shlex.split(command)
    if len(argv) < 2 or Path(argv[0]).name != "cargo":
        return []
    wanted, packages = [], []
    for i, arg in enumerate(argv):
        value = argv[i + 1] if i + 1 < len(argv) else ""
        if arg in ("--features", "-F"):
            wanted += re.split(r"[,\s]+", value)
        elif arg.startswith("--features="):
            wanted += re.split(r"[,\s]+", arg.split("=", 1)[1])
        elif arg in ("-p", "--package"):
            packages.append(value)
        elif arg.startswith("--package="):
            packages.append(arg.split("=", 1)[1])
    features = cargo_features(root)
    problems = [f"no package {p} in the workspace (packages: {', '.join(sorted(features))})"
                for p in packages if p not in features]
    scope = [features[p] for p in packages if p in features] or list(features.values())
    for feature in filter(None, wanted):
        crate, _, own = feature.rpartition("/")
        if crate:
            if crate in features and own not in features[crate]:
                problems.append(f"package {crate} has no feature {own}")
        elif not any(feature in have for have in scope):
            where = ", ".join(packages) or "any workspace package"
            problems.append(f"feature {feature} is declared in no Cargo.toml of {where}")
    return problems


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


def rust_sources(root: Path) -> list[Path]:
    """The .rs files that are part of the workspace's crates: each member's targets (lib, bins, benches, tests,
    examples, build.rs) and the modules they declare (`mod x;`, `#[path]`), followed from file to file. A file no
    `mod` reaches is not compiled, so a cfg gate in it gates nothing. A member whose targets cannot be found
    falls back to every .rs file under it (build output and vendored trees left out)."""
    found: dict[Path, None] = {}
    for manifest in workspace_manifests(root):
        member = manifest.parent
        targets = _crate_targets(member, _read(manifest, root))
        files = _module_tree(targets) if targets else [
            source for source in sorted(member.rglob("*.rs"))
            if not any(p in ("target", ".git", "vendor") for p in source.relative_to(root).parts)]
        for source in files:
            found.setdefault(source, None)
    return list(found)


def stray_sources(root: Path) -> list[Path]:
    """The .rs files under the members that no target or `mod` declaration reaches (not compiled)."""
    compiled = set(rust_sources(root))
    stray = []
    for manifest in workspace_manifests(root):
        for source in sorted(manifest.parent.rglob("*.rs")):
            parts = source.relative_to(root).parts
            if source not in compiled and not any(p in ("target", ".git", "vendor") for p in parts):
                stray.append(source)
    return stray


def _crate_targets(member: Path, data: dict) -> list[Path]:
    if not isinstance(data.get("package"), dict):
        return []
    paths = [member / "src" / "lib.rs", member / "src" / "main.rs", member / "build.rs"]
    lib = data.get("lib")
    if isinstance(lib, dict) and isinstance(lib.get("path"), str):
        paths.append(member / lib["path"])
    build = data["package"].get("build")
    if isinstance(build, str):
        paths.append(member / build)
    for table in ("bin", "bench", "test", "example"):
        for target in data.get(table, []) if isinstance(data.get(table), list) else []:
            if isinstance(target, dict) and isinstance(target.get("path"), str):
                paths.append(member / target["path"])
    for folder in ("src/bin", "benches", "tests", "examples"):
        for source in sorted((member / folder).glob("*.rs")) + sorted((member / folder).glob("*/main.rs")):
            paths.append(source)
    return [path for path in dict.fromkeys(paths) if path.is_file()]


MOD_DECL = re.compile(r'^\s*(?:#\[path\s*=\s*"([^"]+)"\]\s*)?(?:pub(?:\([^)]*\))?\s+)?mod\s+(r#)?(\w+)\s*;')
PATH_ATTR = re.compile(r'^\s*#\[path\s*=\s*"([^"]+)"\]\s*$')


def _module_tree(roots: list[Path]) -> list[Path]:
    """Every file reached from the crate roots through `mod name;` (name.rs or name/mod.rs, beside a mod.rs/lib.rs/
    main.rs or in the folder named after the file) and `#[path = "…"]`."""
    seen: dict[Path, None] = {}
    todo = list(roots)
    while todo:
        source = todo.pop()
        if source in seen:
            continue
        seen[source] = None
        owner = source.name in ("mod.rs", "lib.rs", "main.rs") or source in roots
        folder = source.parent if owner else source.parent / source.stem
        pending_path = None
        for line in source.read_text(errors="replace").splitlines():
            attr = PATH_ATTR.match(line)
            if attr:
                pending_path = attr.group(1)
                continue
            decl = MOD_DECL.match(line)
            if decl:
                path = decl.group(1) or pending_path
                name = decl.group(3)
                candidates = [source.parent / path] if path else [folder / f"{name}.rs", folder / name / "mod.rs"]
                todo += [c.resolve() if c.is_symlink() else c for c in candidates if c.is_file()]
            if line.strip() and not line.strip().startswith("#["):
                pending_path = None
    return list(seen)


def find_gates(root: Path, flag: str, sources: list[Path] | None = None) -> list[GateSite]:
    sites = []
    for source in rust_sources(root) if sources is None else sources:
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


def _describe_gating(spec, cfg, phase) -> list[str]:
    return [f'list #[cfg(feature = "{cfg.flag}")] sites and their #[cfg(not(feature = "{cfg.flag}"))] counterparts; '
            f"the old path ({cfg.phase(phase).old_path}) must remain when the flag is off"]


@declare_step("gating", describe=_describe_gating, evidence={"P1.C2": "old_path"})
def check_flag_gating(ctx: StepContext) -> StepResult:
    """P1.1b: the new path behind cfg(feature), the old one behind cfg(not(feature)) or ungated."""
    flag, old = ctx.cfg.flag, ctx.phase_cfg.old_path
    sites = find_gates(ctx.repo, flag)
    stray = [f"not compiled (no target or `mod` reaches the file), so not counted: {site.show()}"
             for site in find_gates(ctx.repo, flag, stray_sources(ctx.repo))]
    if not sites:
        result = _no_gates(ctx)
        result.evidence += stray
        return result
    evidence = [s.show() for s in sites] + stray
    unpaired = []
    for file in sorted({s.file for s in sites}):
        in_file = [s for s in sites if s.file == file]
        gated_new = [s for s in in_file if not s.negated and not _is_module_inclusion(s.item)]
        if gated_new and not any(s.negated for s in in_file):
            unpaired.extend(gated_new)
    for site in unpaired:
        evidence.append(f"WARNING {site.file}:{site.line}: new path without a cfg(not) old path: {site.item}")
    old_active = old_path_active(ctx.repo, old, sites) if old else []
    evidence += [f"old path with the flag off: {line}" for line in old_active] or [
        f"{old} is not reachable with the flag off"]
    verdict = "pass" if old_active and not unpaired else "fail"
    return StepResult(id=ctx.step_id, name="gating", status="done", evidence=evidence,
                      data={"old_path": verdict, "sites": str(len(sites))})


def _no_gates(ctx: StepContext) -> StepResult:
    """No cfg site at all: the revert took the flag and its code away (done), or the flag gates nothing found."""
    flag = ctx.cfg.flag
    where = f'no #[cfg(feature = "{flag}")] site in the workspace\'s .rs files'
    declared = [f.path for f in inspect_manifests(ctx.repo, flag) if f.declares_flag]
    removal = None if declared else flag_removal(ctx.repo, flag)
    if removal is not None and removal[2]:
        old_active = old_path_active(ctx.repo, ctx.phase_cfg.old_path, []) if ctx.phase_cfg.old_path else []
        return StepResult(id=ctx.step_id, name="gating", status="done", data={
            "old_path": "pass" if old_active or not ctx.phase_cfg.old_path else "fail", "sites": "0"}, evidence=[
            where, f"the flag and the code it gated were removed by the revert {removal[0][:10]} {removal[1]}",
            *[f"old path: {line}" for line in old_active]])
    return StepResult(id=ctx.step_id, name="gating", status="needs-human", data={"sites": "0"}, evidence=[
        where, f"{flag} is declared in {', '.join(map(str, declared)) or 'no Cargo.toml'} but gates nothing that was "
        "found: turning it off may change nothing; check where the new path is selected (build.rs, cfg_attr, "
        "macros) before relying on the flag"])


def old_path_active(root: Path, old: str, sites: list[GateSite]) -> list[str]:
    """Lines naming the old implementation that compile with the flag off."""
    gated_lines = {(s.file, s.line + 1) for s in sites if not s.negated}
    found = []
    for source in rust_sources(root):
        rel = str(source.relative_to(root))
        for number, text in enumerate(source.read_text(errors="replace").splitlines(), start=1):
            stripped = text.strip()
            selects_old = re.search(rf"(=\s*{re.escape(old)}\b|\buse\b.*\b{re.escape(old)}\b)", stripped)
            if selects_old and not stripped.startswith("//") and (rel, number) not in gated_lines:
                found.append(f"{rel}:{number} {stripped}")
    return found[:10]


def flag_off_on_remote(ctx: StepContext) -> tuple[str, list[str]] | None:
    """Read-only and without the target's lock: the remote branch's commit and why, when that commit has the flag
    declared and in no default feature set (another rollback of the target pushed it off). None when this cannot be
    told without a fetch: the flag on there, its commit not in this clone yet, no such branch, manifests unreadable.
    Nothing is written: the clone's refs, index and work tree stay as the lock's holder left them."""
    repo = open_workspace(ctx.repo)
    branch = f"refs/heads/{ctx.cfg.main_branch}"
    try:  # bounded: a hanging remote must not hold the receiver's flag-off worker (the lock's holder will know)
        listed = repo.git.execute(["git", "ls-remote", ctx.cfg.remote, branch], kill_after_timeout=10).split()
        if not listed:
            return None
        sha = listed[0]
        run_git(repo, "cat-file", "-e", f"{sha}^{{commit}}")  # not fetched here yet: left to the holder
        archive = repo.git.execute(["git", "archive", "--format=tar", sha, "--", ":(glob)**/Cargo.toml"],
                                   stdout_as_string=False, strip_newline_in_stdout=False, kill_after_timeout=30)
    except Exception:  # noqa: BLE001 — unreachable, unknown commit, killed: nothing can be said without a fetch
        return None
    with tempfile.TemporaryDirectory(prefix="flag-on-remote-") as folder:
        try:
            with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
                tar.extractall(folder, filter="data")  # a link out of the tree is refused, not followed
            findings = inspect_manifests(Path(folder), ctx.cfg.flag)
        except (BadInputError, tarfile.TarError, OSError):
            return None
    declared = [f for f in findings if f.declares_flag]
    if not declared or any(f.direct or f.chain for f in findings):
        return None
    return sha, [f"{ctx.cfg.remote}/{ctx.cfg.main_branch} is at {sha[:10]}: {', '.join(str(f.path) for f in declared)} "
                 f"declare(s) {ctx.cfg.flag}, and it is in no default feature set there (read from the remote's "
                 "commit, without the target's lock)"]
