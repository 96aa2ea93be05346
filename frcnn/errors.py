"""The project's input errors: problems the user can fix, as opposed to bugs.

The commands print any :class:`FrcnnError` as one ``[frcnn][ERROR]`` line (the message names the file, key or
value and what to do) and exit with status 1; every other exception is a bug and keeps its traceback. Each kind
also derives from the built-in exception it refines, so ``except ValueError`` around library calls still works.
"""
from __future__ import annotations


class FrcnnError(Exception):
    """An input problem the user can fix: a bad config value, dataset, checkpoint or run directory."""


class ConfigError(FrcnnError, ValueError):
    """A config value that cannot be used (the message names the key, the value and what is allowed)."""


class RunDirError(FrcnnError, OSError):
    """The run directory (or a folder in it) cannot be used: not writable, or holds another run."""
