"""Where the tool may write in a target's work tree: inside it, never through a symbolic link.

A path from the configuration or derived from an incident (an issue file, a postmortem draft) is
checked component by component before anything is written: a link — dangling or not — could send
the write outside the repository, and git would commit the link, not the text (a silent no-op, or
someone else's file overwritten). A link is refused with the path and the fix; nothing is written.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from actor_rollback.runbook.errors import BadInputError


def inside(rel: str) -> PurePosixPath:
    """`rel` as a relative path with no `..`: what every repository path of the configuration must be."""
    path = PurePosixPath(rel)
    if not rel or path.is_absolute() or ".." in path.parts or rel.startswith("~"):
        raise BadInputError(f"{rel!r} is not a path inside the repository (relative, without '..')")
    return path


def writable(root: Path, rel: str) -> Path:
    """root/rel, after making sure no component of it below root is a symbolic link."""
    at = root
    for part in inside(rel).parts:
        at = at / part
        if os.path.islink(at):
            raise BadInputError(
                f"{at.relative_to(root)} in {root} is a symbolic link (to {os.readlink(at)!r}); actor-rollback "
                "writes no file through a link — it could point outside the repository. Replace the link with the "
                "file (or point the setting at the real path), then rerun")
    return at
