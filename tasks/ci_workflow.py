"""P3.3: take the no_std targets out of a GitHub Actions workflow — understood by parsing, changed by
surgical text edits, so every byte the edit does not concern stays (comments, quoting, flow style,
anchors, `run: |` blocks, CRLF).

What the edit does, by the shape the target takes in the file:
- a job that exists for the target (every working step builds it, or its env/`with:` names it, or
  `ci_disable_jobs` lists it) gets `if: ${{ false }}`; jobs that `needs:` it stop needing it, so
  they still run;
- an entry of a job's `strategy.matrix` (a dimension's item or an `include:` item) is taken out and
  the other entries keep running; a dimension left empty turns the job off;
- in a mixed job, every step of the target's build (its installs and its builds) gets
  `if: ${{ false }}` — never the install alone while a build that needs it stays on.
Whatever cannot be edited safely (a multi-line `if:`, an anchored node, a flow-style job, a
reference to a disabled step's or job's outputs, an install other builds still need) is
`needs-human`, naming the construct and its line; nothing matching is `needs-human` with the
candidates seen. The edited text is re-parsed and compared with the intended change: nothing
else may differ.
"""

from __future__ import annotations

import copy
import difflib
import re
from dataclasses import dataclass, field

import yaml as pyyaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from actor_rollback.runbook.errors import BadInputError
from actor_rollback.runbook.model import StepResult
from actor_rollback.tasks.context import StepContext
from actor_rollback.tasks.declare import declare_step
from actor_rollback.tasks.git_repo import commit_files, head_text, open_workspace, sync_with_remote
from actor_rollback.tasks.paths import writable

DISABLED = "${{ false }}"
MARKER = "by actor-rollback"  # every comment the edit leaves says this; a rerun finds them
NO_STD_WORDS = re.compile(r"no[-_ ]?std|nostd|embedded|bare[-_ ]?metal|--no-default-features|-none-", re.I)
ARCH = (r"(?:thumbv[\w.]+|armv[\w.]+|armebv[\w.]+|arm|aarch64\w*|riscv[\w.]+|x86_64|i[3-6]86|xtensa|avr|msp430|mips\w*|"
        r"powerpc\w*|loongarch\w+|nvptx\w*|bpf\w*|sparc\w*|hexagon|m68k|csky|s390x)")
TRIPLE = re.compile(rf"(?<![\w.-]){ARCH}(?:-[a-z0-9_.]+){{0,2}}-none(?:-[a-z0-9_.]+)?(?![\w.-])")
# Steps that prepare a job rather than do its work: actions that check out, cache, install or set up, and
# shell lines that only install (toolchains, targets, packages).
SETUP_ACTIONS = re.compile(r"^\./|checkout|cache|toolchain|setup|install|artifact", re.I)
BUILD_WORDS = re.compile(r"\b(cargo|cross|rustc|rustdoc|make|just|xtask|nextest|wasm-pack|python3?|bash|sh|npm|"
                         r"pytest)\b|\.sh\b|\./")
INSTALL_LINE = re.compile(r"\s*(sudo\s+)?(rustup\s+(target|toolchain|component)\s+(add|install)|apt(-get)?\s+"
                          r"(-\S+\s+)*(update|install)|brew\s+install|cargo\s+(binstall|install)|pip3?\s+install)\b.*")


def bare_metal_targets(text: str) -> list[str]:
    """Target triples of bare-metal (no_std) platforms named in a text: thumbv7em-none-eabihf, x86_64-unknown-none…"""
    return sorted(set(TRIPLE.findall(text)))


def _strings(node) -> list[str]:
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in (str(k), *_strings(v))]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [str(node)] if node is not None else []


def _names(text: str, targets: list[str]) -> list[str]:
    return [t for t in targets if re.search(rf"(?<![\w.-]){re.escape(t)}(?![\w.-])", text)]


def _is_disabled(node) -> bool:
    return str(node.get("if", "")).replace(" ", "") in ("${{false}}", "false", "False")


def _line(node, key: str | None = None) -> int:
    return (node.lc.key(key)[0] if key is not None else node.lc.line) + 1


@dataclass
class CiEdit:
    """What P3.3 would do to one workflow file, or why a person must."""

    text: str  # the edited text (the original when nothing is changed)
    changes: list[str] = field(default_factory=list)
    needs_human: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)  # a previous rollback's edits, or jobs already off
    candidates: list[str] = field(default_factory=list)  # when nothing matched: what looks like a no_std build
    notes: list[str] = field(default_factory=list)  # facts worth the evidence (the only job, steps left per entry)

    @property
    def status(self) -> str:
        if self.needs_human:
            return "needs-human"
        return "changed" if self.changes else "already-done"


class _Lines:
    """The file as lines, edited bottom-up by (line, column) so earlier positions stay valid."""

    def __init__(self, text: str) -> None:
        self.eol = "\r\n" if "\r\n" in text else "\n"
        self.lines = text.split(self.eol)
        self.ops: list[tuple[int, int, str, tuple]] = []

    def insert_key(self, line: int, col: int, text: str) -> None:
        """`text` as a new key before the mapping's first key at (line, col): `- a: 1` → `- text` / `  a: 1`."""
        self.ops.append((line, col, "split", (text,)))

    def replace(self, line: int, start: int, end: int, text: str) -> None:
        self.ops.append((line, start, "replace", (end, text)))

    def delete(self, line: int) -> None:
        self.ops.append((line, 10**9, "delete", ()))

    def comment_above(self, line: int, text: str) -> None:
        self.ops.append((line, -1, "comment", (text,)))

    def result(self) -> str:
        lines = list(self.lines)
        commented: set[int] = set()
        for line, col, kind, args in sorted(set(self.ops), key=lambda op: (op[0], op[1]), reverse=True):
            current = lines[line]
            if kind == "split":
                lines[line:line + 1] = [current[:col] + args[0], " " * col + current[col:]]
            elif kind == "replace":
                lines[line] = current[:col] + args[1] + current[args[0]:]
            elif kind == "delete":
                del lines[line]
            elif kind == "comment" and line not in commented:
                commented.add(line)
                indent = len(self.lines[line]) - len(self.lines[line].lstrip(" "))
                lines.insert(line, " " * indent + "# " + args[0])
        return self.eol.join(lines)


_PLAIN_END = re.compile(r"\s*(,|\]|#|$)")


def _flow_token_end(text: str, col: int) -> int:
    """Where the flow-sequence item starting at `col` ends (quoted or plain)."""
    if text[col] in "\"'":
        quote, i = text[col], col + 1
        while i < len(text):
            if text[i] == quote and (quote == "'" and text[i + 1:i + 2] == "'"):
                i += 2
                continue
            if text[i] == "\\" and quote == '"':
                i += 2
                continue
            if text[i] == quote:
                return i + 1
            i += 1
        return len(text)
    i = col
    while i < len(text) and not (text[i] in ",]" or (text[i] == "#" and text[i - 1] in " \t")):
        i += 1
    return len(text[:i].rstrip())


class _Planner:
    def __init__(self, text: str, targets: list[str], source: str, note: str, disable_jobs: list[str],
                 config_key: str) -> None:
        self.text, self.targets, self.source, self.note = text, targets, source, note
        self.disable_jobs, self.config_key = disable_jobs, config_key
        try:
            self.data = YAML().load(text)
            self.plain = pyyaml.safe_load(text)
        except (YAMLError, pyyaml.YAMLError) as exc:
            raise BadInputError(f"{source} is not valid YAML ({exc}); fix it before rolling back") from None
        jobs = self.data.get("jobs") if isinstance(self.data, CommentedMap) else None
        if not isinstance(jobs, CommentedMap) or not jobs:
            raise BadInputError(f"{source} has no jobs: mapping; is it a GitHub Actions workflow? "
                                f"fix {config_key.replace('ci_disable_targets', 'ci_file')}")
        self.jobs: CommentedMap = jobs
        self.lines = _Lines(text)
        self.edit = CiEdit(text=text)
        # What the edit means, applied to a plain parse of the original, to check the text edit against.
        self.expected = copy.deepcopy(self.plain)
        self.off_jobs: list[str] = []
        self.off_steps: dict[str, list[int]] = {}

    # ---------------------------------------------------------------- decisions

    def plan(self) -> CiEdit:
        for name, job in self.jobs.items():
            if not isinstance(job, CommentedMap):
                continue
            if job.fa.flow_style():
                if self._job_mentions(job) or name in self.disable_jobs:
                    self._human(f"job {name} (line {_line(self.jobs, name)}) is written in flow style "
                                "({ … }); disable it by hand")
                continue
            if _is_disabled(job):
                if self._job_mentions(job) or name in self.disable_jobs:
                    self.edit.already.append(f"job {name}: already disabled (if on line {_line(job, 'if')})")
                continue
            self._plan_job(name, job)
        self._release_dependents()
        self._check_step_outputs()
        return self._finish()

    def _job_mentions(self, job: CommentedMap) -> list[str]:
        return _names("\n".join(_strings(job)), self.targets)

    def _plan_job(self, name: str, job: CommentedMap) -> None:
        if name in self.disable_jobs:
            self._disable_job(name, job, f"listed in {self.config_key.replace('targets', 'jobs')}")
            return
        own = {k: _names("\n".join(_strings(job[k])), self.targets) for k in ("env", "with", "name") if k in job}
        if any(own.values()):
            self._disable_job(name, job, "; ".join(f"its {k} names {', '.join(v)}" for k, v in own.items() if v))
            return
        if self._plan_matrix(name, job):
            return
        if re.search(rf"# matrix .* removed {MARKER}", self._job_text(name)):
            self.edit.already.append(f"job {name}: a previous rollback took the target out of its matrix")
            return  # steps naming the target run per entry, and the entry is gone
        self._plan_steps(name, job)

    def _job_text(self, name: str) -> str:
        names = list(self.jobs)
        start = self.jobs.lc.key(name)[0]
        following = names.index(name) + 1
        end = self.jobs.lc.key(names[following])[0] if following < len(names) else len(self.lines.lines)
        return "\n".join(self.lines.lines[start:end])

    def _plan_matrix(self, name: str, job: CommentedMap) -> bool:
        """Take the target's entries out of the job's matrix; True when the matrix named the target."""
        strategy = job.get("strategy")
        matrix = strategy.get("matrix") if isinstance(strategy, CommentedMap) else None
        if not isinstance(matrix, CommentedMap):
            if isinstance(matrix, str) and _names(matrix, self.targets):
                self._human(f"job {name}: its matrix is an expression naming the target (line "
                            f"{_line(strategy, 'matrix')}); edit it by hand")
                return True
            return False
        removals: list[tuple[str, int]] = []
        for key, values in matrix.items():
            if key == "exclude" or not isinstance(values, CommentedSeq):
                continue
            removals += [(key, i) for i, item in enumerate(values) if _names("\n".join(_strings(item)), self.targets)]
        if not removals:
            if _names("\n".join(_strings({k: v for k, v in matrix.items() if k != "exclude"})), self.targets):
                self._human(f"job {name}: its matrix names {', '.join(self.targets)} in a form the edit does not "
                            f"understand (line {_line(strategy, 'matrix')}); edit it by hand")
                return True
            return False
        dimensions = [k for k in matrix if k not in ("include", "exclude")]
        emptied = [k for k in dimensions if isinstance(matrix[k], CommentedSeq)
                   and len(matrix[k]) == sum(1 for key, _ in removals if key == k)]
        only_include = not dimensions and len(matrix.get("include") or []) == len(removals)
        if emptied or only_include:
            why = f"dimension {emptied[0]}" if emptied else "include"
            self._disable_job(name, job, f"its matrix {why} has no entry left without {', '.join(self.targets)}")
            return True
        for key, index in sorted(removals, key=lambda r: (r[0], -r[1])):
            seq = matrix[key]
            shown = self._remove_item(seq, index, where=f"job {name} matrix {key}", what=f"matrix {key} entry")
            if shown is None:
                return True
            del self.expected["jobs"][name]["strategy"]["matrix"][key][index]
            self.edit.changes.append(f"job {name}: matrix {key} entry {shown} removed (line {seq.lc.item(index)[0] + 1}); "
                                     "the other entries keep running")
        steps = [s for s in job.get("steps") or [] if isinstance(s, CommentedMap) and self._step_mentions(s)]
        if steps:
            self.edit.notes.append(f"job {name}: {len(steps)} step(s) name the target but run per matrix entry; "
                                   "left as they are")
        return True

    def _step_mentions(self, step: CommentedMap) -> list[str]:
        return _names("\n".join(_strings({k: step.get(k) for k in ("run", "with", "env", "name") if k in step})),
                      self.targets)

    @staticmethod
    def _is_install(step: CommentedMap) -> bool:
        if "run" in step:
            lines = [ln for ln in str(step["run"]).splitlines() if ln.strip() and not ln.strip().startswith("#")]
            return bool(lines) and all(INSTALL_LINE.fullmatch(ln) for ln in lines)
        return bool(SETUP_ACTIONS.search(str(step.get("uses", ""))))

    @staticmethod
    def _works(step: CommentedMap) -> bool:
        """A step that does the job's work (builds, tests, runs a script), not one that sets up."""
        if "run" in step:
            return not _Planner._is_install(step) and bool(BUILD_WORDS.search(str(step["run"])))
        return "uses" in step and not SETUP_ACTIONS.search(str(step.get("uses", "")))

    def _plan_steps(self, name: str, job: CommentedMap) -> None:
        steps = [s if isinstance(s, CommentedMap) else None for s in job.get("steps") or []]
        live = [(i, s) for i, s in enumerate(steps) if s is not None and not _is_disabled(s)]
        matched = [(i, s) for i, s in live if self._step_mentions(s)]
        for i, s in enumerate(steps):
            if s is not None and _is_disabled(s) and self._step_mentions(s):
                self.edit.already.append(f"job {name}: step {self._step_label(s, i)} already disabled")
        if not matched:
            return
        installs = [(i, s) for i, s in matched if self._is_install(s)]
        builds = [(i, s) for i, s in matched if not self._is_install(s)]
        others = [(i, s) for i, s in live if self._works(s) and (i, s) not in matched]
        if not others:
            named = sorted({t for _, s in matched for t in self._step_mentions(s)})
            self._disable_job(name, job, f"every step that builds or tests builds {', '.join(named)}")
            return
        if not builds:
            label = self._step_label(installs[0][1], installs[0][0])
            words = NO_STD_WORDS.search(f"{name} {job.get('name', '')}")
            if words:
                self._disable_job(name, job, f"it installs {', '.join(self.targets)} (step {label}) and is a "
                                             f"{words.group(0)} job whose steps build through scripts")
            else:
                self._human(f"job {name}: step {label} (line {installs[0][1].lc.line + 1}) installs "
                            f"{', '.join(self._step_mentions(installs[0][1]))} but no step names it, so its builds may use it through a "
                            f"script; set {self.config_key.replace('targets', 'jobs')} = [\"{name}\"] to turn the job "
                            "off, or edit it by hand")
            return
        still_built = set(bare_metal_targets("\n".join(_strings([s for _, s in others]))))
        for i, step in installs:
            shared = sorted(set(bare_metal_targets("\n".join(_strings(step)))) & still_built - set(self.targets))
            if shared:
                self._human(f"job {name}: step {self._step_label(step, i)} (line {step.lc.line + 1}) also installs "
                            f"{', '.join(shared)}, which steps left running still build; disabling it would break "
                            "them: split the install by hand or add those targets to "
                            f"{self.config_key}")
                return
        for i, step in matched:
            self._disable_step(name, job, i, step)

    # ---------------------------------------------------------------- edits

    def _human(self, reason: str) -> None:
        self.edit.needs_human.append(f"{self.source}: {reason}")

    @staticmethod
    def _step_label(step: CommentedMap, index: int) -> str:
        label = step.get("name") or step.get("id") or step.get("uses") or str(step.get("run", "")).split("\n")[0]
        return f"{index + 1} ({str(label)[:60]})"

    def _set_if(self, node: CommentedMap, what: str) -> bool:
        """Give the mapping `if: ${{ false }}` (replacing a one-line `if:`); False, said why, when unsafe."""
        anchor = getattr(node, "anchor", None)
        if anchor is not None and anchor.value:
            self._human(f"{what} (line {node.lc.line + 1}) is the anchor &{anchor.value}, so other places share it; "
                        "disable it by hand")
            return False
        if node.fa.flow_style():
            self._human(f"{what} (line {node.lc.line + 1}) is written in flow style ({{ … }}); disable it by hand")
            return False
        comment = f"disabled {MARKER} {self.note}"
        if "if" in node:
            line, col = node.lc.value("if")
            rest = self.lines.lines[line][col:]
            try:
                same = pyyaml.safe_load(f"k: {rest}") == {"k": node["if"]}
            except pyyaml.YAMLError:
                same = False
            if line != node.lc.key("if")[0] or not same:
                self._human(f"{what} has a multi-line if: on line {node.lc.key('if')[0] + 1}; set it to "
                            f"{DISABLED} by hand")
                return False
            self.lines.replace(line, col, len(self.lines.lines[line]),
                               f"{DISABLED}  # {comment}; was: {rest.strip()}")
        else:
            self.lines.insert_key(node.lc.line, node.lc.col, f"if: {DISABLED}  # {comment}")
        return True

    def _disable_job(self, name: str, job: CommentedMap, why: str) -> None:
        if not self._set_if(job, f"job {name}"):
            return
        self.off_jobs.append(name)
        self.expected["jobs"][name]["if"] = DISABLED
        self.edit.changes.append(f"job {name}: disabled (if: {DISABLED}) — {why}")
        active = [n for n, j in self.jobs.items() if isinstance(j, CommentedMap) and not _is_disabled(j)]
        if active == [name]:
            self.edit.notes.append(f"{self.source}: job {name} is the workflow's only job; the workflow now runs "
                                   "nothing (the file stays, to be re-enabled by the reintroduction)")

    def _disable_step(self, name: str, job: CommentedMap, index: int, step: CommentedMap) -> None:
        label = self._step_label(step, index)
        if not self._set_if(step, f"job {name}, step {label}"):
            return
        self.off_steps.setdefault(name, []).append(index)
        self.expected["jobs"][name]["steps"][index]["if"] = DISABLED
        self.edit.changes.append(f"job {name}, step {label}: disabled")

    def _remove_item(self, seq: CommentedSeq, index: int, where: str, what: str) -> str | None:
        """Take one item out of a block or flow sequence; the item as shown, or None (said why)."""
        line, col = seq.lc.item(index)
        text = self.lines.lines[line]
        shown = str(seq[index]) if not isinstance(seq[index], dict) else "{" + ", ".join(
            f"{k}: {v}" for k, v in seq[index].items()) + "}"
        if getattr(seq[index], "anchor", None) is not None and seq[index].anchor.value:
            self._human(f"{where}: the entry on line {line + 1} is an anchor; edit it by hand")
            return None
        comment = f"{what} {shown} removed {MARKER} {self.note}"
        if not seq.fa.flow_style():
            dash = text.rfind("-", 0, col)
            if dash < 0 or text[:dash].strip():
                self._human(f"{where}: the entry on line {line + 1} is not on its own line; edit it by hand")
                return None
            last = self._item_end(seq, index, dash)
            for number in range(line, last + 1):
                self.lines.delete(number)
            self.lines.comment_above(line, comment)
            return shown
        if isinstance(seq[index], dict):
            self._human(f"{where}: the entry on line {line + 1} is a mapping inside a flow sequence; edit it by hand")
            return None
        end = _flow_token_end(text, col)
        after = _PLAIN_END.match(text, end)
        if after and after.group(1) == ",":
            cut_end = after.end()
            while cut_end < len(text) and text[cut_end] == " ":
                cut_end += 1
            cut_start = col
        else:
            before = text[:col].rstrip()
            cut_start, cut_end = (len(before) - 1, end) if before.endswith(",") else (col, end)
        remaining = text[:cut_start] + text[cut_end:]
        if not remaining.strip() or remaining.strip().startswith("#"):
            self.lines.delete(line)
        else:
            self.lines.replace(line, cut_start, cut_end, "")
        self.lines.comment_above(line, comment)
        return shown

    def _item_end(self, seq: CommentedSeq, index: int, dash: int) -> int:
        """The last line of a block sequence item: up to the next item, comments after it kept."""
        lines = self.lines.lines
        start = seq.lc.item(index)[0]
        if index + 1 < len(seq):
            stop = seq.lc.item(index + 1)[0]
        else:
            stop = start + 1
            while stop < len(lines) and (not lines[stop].strip() or len(lines[stop]) - len(lines[stop].lstrip()) > dash):
                stop += 1
        last = stop - 1
        while last > start and (not lines[last].strip() or lines[last].lstrip().startswith("#")):
            last -= 1
        return last

    # ---------------------------------------------------------------- what depends on what was turned off

    def _release_dependents(self) -> None:
        """Jobs that need a disabled job would be skipped with it: they stop needing it."""
        for name, job in self.jobs.items():
            if not isinstance(job, CommentedMap) or name in self.off_jobs or _is_disabled(job):
                continue
            text = "\n".join(_strings({k: v for k, v in job.items() if k != "needs"}))
            for gone in self.off_jobs:
                if re.search(rf"\bneeds\.{re.escape(gone)}\.", text):
                    self._human(f"job {name} reads needs.{gone}.… (outputs/result) of the job being disabled; "
                                "it would read nothing: edit it by hand")
            needs = job.get("needs")
            if isinstance(needs, str) and needs in self.off_jobs:
                self._drop_needs_key(name, job, [needs])
            elif isinstance(needs, CommentedSeq):
                gone = [n for n in needs if n in self.off_jobs]
                if gone and len(gone) == len(needs):
                    self._drop_needs_key(name, job, gone)
                else:
                    for index in reversed([i for i, n in enumerate(needs) if n in self.off_jobs]):
                        if self._remove_item(needs, index, where=f"job {name} needs", what="needs:") is None:
                            return
                        self.expected["jobs"][name]["needs"].remove(needs[index])
                        self.edit.changes.append(f"job {name}: no longer needs {needs[index]} (still runs)")

    def _drop_needs_key(self, name: str, job: CommentedMap, gone: list[str]) -> None:
        key_line = job.lc.key("needs")[0]
        needs = job["needs"]
        last = key_line
        if isinstance(needs, CommentedSeq) and len(needs):
            last = needs.lc.item(len(needs) - 1)[0]
            if needs.fa.flow_style():
                while last < len(self.lines.lines) and "]" not in self.lines.lines[last].split("#")[0]:
                    last += 1
        closing = self.lines.lines[last].split("#")[0].rstrip()
        if last == len(self.lines.lines) or (isinstance(needs, CommentedSeq) and needs.fa.flow_style()
                                             and not closing.endswith("]")):
            self._human(f"job {name}: its needs (line {key_line + 1}) continues past its list; edit it by hand")
            return
        for number in range(key_line, last + 1):
            self.lines.delete(number)
        self.lines.comment_above(key_line, f"needs: {', '.join(gone)} removed {MARKER} {self.note}")
        del self.expected["jobs"][name]["needs"]
        self.edit.changes.append(f"job {name}: no longer needs {', '.join(gone)} (still runs)")

    def _check_step_outputs(self) -> None:
        """A disabled step whose outputs are read elsewhere would leave a dangling reference."""
        for name, indices in self.off_steps.items():
            job = self.jobs[name]
            steps = job.get("steps") or []
            for index in indices:
                step_id = steps[index].get("id")
                if not step_id:
                    continue
                readers = [self._step_label(s, i) for i, s in enumerate(steps)
                           if i not in indices and re.search(rf"\bsteps\.{re.escape(str(step_id))}\.",
                                                             "\n".join(_strings(s)))]
                if re.search(rf"\bsteps\.{re.escape(str(step_id))}\.", "\n".join(_strings(job.get("outputs") or {}))):
                    readers.append("the job's outputs")
                if readers:
                    self._human(f"job {name}: step {self._step_label(steps[index], index)} (id {step_id}) is read by "
                                f"{', '.join(readers)}; disabling it would leave that reference dangling: edit by hand")

    # ---------------------------------------------------------------- the result

    def _finish(self) -> CiEdit:
        edit = self.edit
        if edit.needs_human:
            edit.changes, edit.text = [], self.text  # nothing half-done: all of it, or a person
            return edit
        if not edit.changes:
            marks = [f"line {n}: {line.strip()}" for n, line in enumerate(self.lines.lines, 1) if MARKER in line]
            if marks:
                edit.already += [f"{self.source}: a previous rollback's edit is there ({m})" for m in marks]
            elif not edit.already:
                self._no_match()
            return edit
        edit.text = self.lines.result()
        problem = self._verify(edit.text)
        if problem:
            edit.changes, edit.text = [], self.text
            self._human(f"the edit could not be verified ({problem}); nothing was written: disable the no_std build "
                        "by hand")
        return edit

    def _no_match(self) -> None:
        seen = bare_metal_targets(self.text)
        candidates = []
        for name, job in self.jobs.items():
            if not isinstance(job, CommentedMap):
                continue
            head = f"{name} {job.get('name', '')}"
            body = "\n".join(_strings(job))
            if NO_STD_WORDS.search(head) or bare_metal_targets(body):
                candidates.append(f"job {name} (line {_line(self.jobs, name)})")
                continue
            for i, step in enumerate(job.get("steps") or []):
                if isinstance(step, CommentedMap) and NO_STD_WORDS.search("\n".join(_strings(step))):
                    candidates.append(f"job {name}, step {self._step_label(step, i)} (line {step.lc.line + 1})")
        self.edit.candidates = candidates
        fix = (f"set {self.config_key} to the targets this CI builds" + (f" (seen: {', '.join(seen)})" if seen else "")
               + f", or {self.config_key.replace('targets', 'jobs')} to the jobs to turn off")
        if candidates:
            self._human(f"no job or step builds {', '.join(self.targets) or '(no target configured)'}; candidates "
                        f"that look like a no_std build: {'; '.join(candidates)}; {fix}")
        else:
            self._human(f"no job or step builds {', '.join(self.targets) or '(no target configured)'} and none looks "
                        f"like a no_std build; if this CI has none, skip P3.3 (--skip ci-file); else {fix}")

    def _verify(self, edited: str) -> str:
        try:
            after = pyyaml.safe_load(edited)
        except pyyaml.YAMLError as exc:
            return f"the result does not parse: {exc}"
        if after != self.expected:
            return "the result differs from the intended change"
        jobs = after["jobs"]
        running = {n for n, j in jobs.items() if isinstance(j, dict) and not _is_disabled(j)}
        for name in running:
            needs = jobs[name].get("needs", [])
            for need in [needs] if isinstance(needs, str) else needs or []:
                if need not in jobs:
                    return f"job {name} needs {need}, which does not exist"
                if need not in running:
                    return f"job {name} still needs disabled job {need}"
        return ""


def plan_ci_edit(text: str, targets: list[str], source: str, note: str, disable_jobs: list[str] | None = None,
                 config_key: str = "phases.3.ci_disable_targets") -> CiEdit:
    """What taking `targets` (and `disable_jobs`) out of this workflow text takes — pure, nothing written."""
    return _Planner(text, list(targets), source, note, list(disable_jobs or []), config_key).plan()


def changed_lines(before: str, after: str) -> list[str]:
    return [line.rstrip("\r\n") for line in difflib.unified_diff(before.splitlines(True), after.splitlines(True), n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


@declare_step("ci-file", describe=lambda spec, cfg, phase: [
    f"disable the jobs/steps of {cfg.phase(phase).ci_file} that build {', '.join(cfg.phase(phase).ci_disable_targets)} "
    "(YAML-aware, keeps the job graph valid)", "git commit"])
def disable_no_std_ci(ctx: StepContext) -> StepResult:
    """P3.3: the no_std build out of CI, committed once; evidence says exactly what was disabled."""
    p = ctx.phase_cfg
    key = f"phases.{ctx.phase}.ci_disable_targets"
    if not p.ci_disable_targets and not p.ci_disable_jobs:
        raise BadInputError(f"phase {ctx.phase} has no ci_disable_targets (or ci_disable_jobs) in the config; set {key}")
    path = ctx.repo / p.ci_file
    if not path.exists():
        raise BadInputError(f"{p.ci_file} does not exist in {ctx.repo}; fix phases.{ctx.phase}.ci_file")
    note = f"{ctx.step_id} ({ctx.incident})"

    def plan(text: str) -> CiEdit:
        return plan_ci_edit(text, p.ci_disable_targets, p.ci_file, note, p.ci_disable_jobs, key)

    def result(status: str, edit: CiEdit, evidence: list[str], extra: list[str] = ()) -> StepResult:
        lines = [*evidence, *edit.needs_human, *[f"{p.ci_file}: {c}" for c in edit.changes], *edit.notes,
                 *edit.already, *extra]
        return StepResult(id=ctx.step_id, name="ci-file", status=status, evidence=lines,
                          data={"ci_candidates": "; ".join(edit.candidates)} if edit.candidates else {})

    if ctx.dry_run:
        edit = plan(path.read_bytes().decode())
        status = {"changed": "planned", "needs-human": "needs-human", "already-done": "already-done"}[edit.status]
        return result(status, edit, [])
    repo = open_workspace(ctx.repo)
    committed = head_text(repo, p.ci_file)
    resumable = {}
    if committed is not None and (at_head := plan(committed)).status == "changed":
        resumable[p.ci_file] = at_head.text
    evidence = sync_with_remote(repo, ctx, resumable)
    original = head_text(repo, p.ci_file) or path.read_bytes().decode()
    edit = plan(original)
    if edit.status != "changed":
        return result(edit.status, edit, evidence)
    writable(ctx.repo, p.ci_file).write_bytes(edit.text.encode())
    try:
        sha = commit_files(ctx, [p.ci_file], f"disable the {', '.join(p.ci_disable_targets or p.ci_disable_jobs)} "
                                             "build in CI")
    except BaseException:
        path.write_bytes(original.encode())
        raise
    return result("done", edit, evidence, [*changed_lines(original, edit.text), f"committed {sha[:10]}"])
