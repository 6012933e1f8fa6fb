"""Errors a step raises. Each message names the problem and the fix.

The class says how the flow treats it: bad input is the operator's to fix (exit 2, no retry),
a transient fault is retried with backoff, any other fault fails the step at once (exit 1).
"""

from __future__ import annotations


class StepError(Exception):
    failure = "fault"
    retryable = False


class BadInputError(StepError):
    """Usage, configuration or repository state the operator must fix (dirty tree, ambiguity). The one family of
    bad input: a config that does not validate, an unknown step, a malformed incident id or alert are subclasses,
    so every entry (CLI, flow, receiver) catches this class alone and answers exit 2 / a Failed "bad input" run."""

    failure = "bad-input"


class ConflictError(StepError):
    """A change does not apply cleanly; the tree was restored. Retrying cannot help."""


class TransientError(StepError):
    """Network, a remote that moved, a server's 5xx: worth retrying."""

    retryable = True
