"""Scan progress on a terminal, and the scan's stop points: a big tree shows signs of life and stops at once.

Only when stderr is a terminal: a line as the scan starts, then one every INTERVAL seconds with the
files found and checked so far; logs written to a file stay as they were. Each tick is also a stop
point (retrain.stop.check), and the scan runs inside stop.immediate(), so the first Ctrl-C or SIGTERM
ends it at once: the scan is plain Python with nothing half-written to protect.
"""
from __future__ import annotations

import logging
import sys
import time

from retrain import stop
from retrain.errors import printable

log = logging.getLogger(__name__)
INTERVAL = 2.0  # seconds between progress lines


class Progress:
    """Counts files found and checked; logs a progress line every INTERVAL seconds on a terminal."""

    def __init__(self, images) -> None:
        self.found = self.checked = self.total = 0
        self.on = sys.stderr.isatty()
        self.next = time.monotonic() + INTERVAL
        if self.on:
            log.info("scanning %s (Ctrl-C stops)", printable(images))

    def tick(self, found: int = 0, checked: int = 0) -> None:
        """Count found and checked files; a stop point."""
        stop.check()
        self.found += found
        self.checked += checked
        if self.on and time.monotonic() >= self.next:
            self.next = time.monotonic() + INTERVAL
            if self.total:
                log.info("scanning: checked %d of %d files", self.checked, self.total)
            else:
                log.info("scanning: %d files found so far", self.found)
