"""Errors a step raises. Each message names the problem and the fix.

The class says how the flow treats it: bad input is the operator's to fix (exit 2, no retry),
a transient fault is retried with backoff, any other fault fails the step at once (exit 1).
"""

from __future__ import annotations


class StepError(Exception):
    failure = "fault"
    retryable = False


class BadInputError(StepError):
    """Usage, configuration or repository state the operator must fix (dirty tree, ambiguity)."""

    failure = "bad-input"


class ConflictError(StepError):
    """A change does not apply cleanly; the tree was restored. Retrying cannot help."""


class TransientError(StepError):
    """Network, a remote that moved, a server's 5xx: worth retrying."""

    retryable = True
