"""Logging set-up for pipeline jobs: everything (log records, warnings, tracebacks) to the rule's log."""

import logging
import sys


def to_file(path):
    """Send logging, warnings and uncaught tracebacks of this process to ``path`` (appending)."""
    stream = open(path, "a", buffering=1)
    sys.stderr = stream  # uncaught exceptions print their traceback here
    logging.basicConfig(
        stream=stream, level=logging.INFO, force=True,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.captureWarnings(True)
    return logging.getLogger("thermocg")
