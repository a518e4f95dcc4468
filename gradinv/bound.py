"""When a search stops: a cap on its time, and stagnation (no new column for a while).

A fixed time bound fails solvable batches whose search is merely slow (b = 150 took 12 s on one
client and 168 s on another), so by default the informed search runs while it keeps finding
columns: it stops once no new column has come for the *patience*, the larger of
``min_patience`` seconds and ``factor`` times the longest wait for a column so far (a search
that found its columns every 20 s waits at least 40 s for the next).  A search whose rounds are
long (the cell search at m = 4000: minutes a round) reports each round's length
(:meth:`SearchBound.round_done`), and the patience is also at least ``factor`` times the longest
round: a round in progress is not cut by the patience, only by ``max_time``.  ``max_time`` caps
the whole search when the caller needs a hard bound.  A search that knows no round can find
more stops itself (:meth:`SearchBound.stop`).
"""

import time

MIN_PATIENCE = 60.0
"""Seconds a search waits for its next column at least (:class:`SearchBound`)."""
PATIENCE_FACTOR = 2.0
"""The patience is at least this many times the longest wait for a column so far."""


class SearchBound:
    """The stopping rule of a search: ``max_time`` seconds (None: no cap) or stagnation."""

    def __init__(self, max_time=None, min_patience=MIN_PATIENCE, factor=PATIENCE_FACTOR):
        self.start = self.last = time.perf_counter()
        self.cap = float("inf") if max_time is None else self.start + float(max_time)
        self.min_patience, self.factor = float(min_patience), float(factor)
        self.longest = self.longest_round = 0.0
        self.found_at = []  # seconds from the start at which each column was found
        self.rounds = 0  # rounds completed (:meth:`round_done`)
        self.found_in_round = []  # the round (0-based) in which each column was found
        self.reason = None  # why the search stopped itself (:meth:`stop`)

    def found(self):
        """Record that a new column was found now."""
        now = time.perf_counter()
        self.longest = max(self.longest, now - self.last)
        self.last = now
        self.found_at.append(now - self.start)
        self.found_in_round.append(self.rounds)

    def round_done(self, seconds=None):
        """Record that a round of the search ended (and took ``seconds``: the patience then also
        covers twice the longest round)."""
        self.rounds += 1
        if seconds is not None:
            self.longest_round = max(self.longest_round, float(seconds))

    @property
    def deadline(self):
        """The ``time.perf_counter()`` value at which the search stops unless it finds a column first."""
        patience = max(self.min_patience, self.factor * self.longest, self.factor * self.longest_round)
        return min(self.cap, self.last + patience)

    def stop(self, reason):
        """End the search now, for ``reason`` (the search knows no round can find more)."""
        self.reason = reason

    def capped(self):
        """Whether ``max_time`` has run out (the patience aside)."""
        return time.perf_counter() > self.cap

    def expired(self):
        return self.reason is not None or time.perf_counter() > self.deadline
