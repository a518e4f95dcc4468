"""When a search stops: stagnation counted in rounds (no new column for a while), or a cap in seconds.

A fixed time bound fails solvable batches whose search is merely slow (b = 150 took 12 s on one
client and 168 s on another), and any bound in seconds makes the answer depend on the machine's
speed and load.  So by default the informed and cell searches run while they keep finding columns
and stop once no new column has come for the *patience*, counted in the search's own rounds: the
larger of :data:`MIN_IDLE_ROUNDS` and :data:`PATIENCE_FACTOR` times the longest run of rounds
without a new column so far (a search that waited 40 rounds for a column waits 80 for the next).
One ``random_state`` then gives one answer on a fast, slow or busy machine.  ``max_time`` (seconds)
caps the whole search when the caller needs a hard bound; only then does the machine's speed
matter.  A search that knows no round can find more stops itself (:meth:`SearchBound.stop`).
"""

import time

MIN_IDLE_ROUNDS = 60
"""Rounds without a new column a search waits at least (:class:`SearchBound`).  Measured: the
longest run of rounds without a new column before a later one came is 21 rounds over the 149
informed and cell-search rows of ``docs/*.jsonl`` (zoo b = 20–100, random-upstream and gradient-only
b = 100–150; mlp2_trained_raw, b = 50, seed 0; 99 % of the rows: ≤ 13), and 52 rounds on the zoo's
mlp3_blanks client (b = 20, seed 2, ``attack_model(..., random_state=0)``: its 19th column)."""
PATIENCE_FACTOR = 2.0
"""The patience is at least this many times the longest run of rounds without a new column so far."""


class SearchBound:
    """The stopping rule of a search: stagnation in rounds, ``max_time`` seconds (None: no cap), or
    :meth:`stop`."""

    def __init__(self, max_time=None, min_idle_rounds=MIN_IDLE_ROUNDS, factor=PATIENCE_FACTOR):
        self.start = time.perf_counter()
        self.cap = float("inf") if max_time is None else self.start + float(max_time)
        self.min_idle_rounds, self.factor = int(min_idle_rounds), float(factor)
        self.longest_idle = 0  # the longest run of rounds without a new column, between two columns
        self.last_round = 0  # the round in which the last column was found (0: none yet)
        self.found_at = []  # seconds from the start at which each column was found
        self.rounds = 0  # rounds completed (:meth:`round_done`)
        self.found_in_round = []  # the round (0-based) in which each column was found
        self.reason = None  # why the search stopped itself (:meth:`stop`)

    def found(self):
        """Record that a new column was found now, in the current round."""
        self.longest_idle = max(self.longest_idle, self.rounds - self.last_round)
        self.last_round = self.rounds
        self.found_at.append(time.perf_counter() - self.start)
        self.found_in_round.append(self.rounds)

    def round_done(self):
        """Record that a round of the search ended."""
        self.rounds += 1

    @property
    def patience(self):
        """Rounds without a new column after which the search stops."""
        return max(self.min_idle_rounds, int(round(self.factor * self.longest_idle)))

    @property
    def deadline(self):
        """The ``time.perf_counter()`` value at which work inside a round stops: the cap."""
        return self.cap

    def stop(self, reason):
        """End the search now, for ``reason`` (the search knows no round can find more)."""
        self.reason = reason

    def capped(self):
        """Whether ``max_time`` has run out."""
        return time.perf_counter() > self.cap

    def stagnated(self):
        """Whether the last :attr:`patience` rounds found no column."""
        return self.rounds - self.last_round >= self.patience

    def expired(self):
        return self.reason is not None or self.stagnated() or self.capped()
