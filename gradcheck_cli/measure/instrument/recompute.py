"""Activation checkpointing: layers re-run inside the backward pass, mapped back onto the forward's rows.

``torch.utils.checkpoint`` (and Hugging Face's ``gradient_checkpointing_enable()``) re-runs a segment of
the model during the backward. Those calls are not new rows: their statistics were taken in the forward.
What a recomputation can add is a gradient. Non-reentrant checkpointing backpropagates through the
forward's own graph, whose outputs are hooked already; reentrant checkpointing ran the forward without
gradients and backpropagates through the recomputed graph, so there the recomputed outputs' gradients
are the layers' gradients.

A recomputation replays its segment's calls in the forward's order, so the k-th observed output of a
segment's re-run is the k-th output the forward observed while that segment ran. The forward logs, in
one list of ints, the rows it observes (their indices) and every module call's start and end (negative
markers, two per module of the table): two appends a module call, the cheapest record that can be
searched afterwards. The segment's module is the first module of the model called inside the backward;
a module run as several segments (a block shared by several layers) is recomputed last segment first.
"""

from __future__ import annotations


def markers(slot: int) -> tuple[int, int]:
    """The start and end markers of the module in table slot ``slot`` (row indices are >= 0)."""
    return -2 * slot - 1, -2 * slot - 2


class Recomputation:
    """The forward's call log of a batch, and the replay of one recomputed segment against it."""

    def __init__(self) -> None:
        self.events: list[int] = []
        """Row indices observed and module-call markers, in the forward's order."""
        self.hooked: set[int] = set()
        """Rows whose output's gradient is hooked in this batch."""
        self._replays: dict[int, int] = {}  # start marker -> how often that module was recomputed
        self._replay: list[int] | None = None
        self._at = 0
        self.owner: int | None = None
        """id of the module whose recomputation runs now."""

    def begin_batch(self) -> None:
        self.events.clear()
        self.hooked.clear()
        self._replays.clear()
        self.stop()

    def start(self, key: int, opens: int, closes: int) -> None:
        """The first module of the model called inside the backward (id ``key``, its markers): a segment's
        recomputation begins; its replay is what the forward observed during that module's matching call."""
        events = self.events
        starts = [i for i, event in enumerate(events) if event == opens]
        if not starts:
            return
        again = self._replays.get(opens, 0)
        self._replays[opens] = again + 1
        begin = starts[len(starts) - 1 - again % len(starts)]
        depth, end = 0, len(events)
        for i in range(begin, len(events)):
            if events[i] == opens:
                depth += 1
            elif events[i] == closes:
                depth -= 1
                if not depth:
                    end = i
                    break
        self.owner = key
        self._replay = [event for event in events[begin:end] if event >= 0]
        self._at = 0

    def stop(self) -> None:
        self.owner, self._replay, self._at = None, None, 0

    def row(self, name: str, rows: list) -> int | None:
        """The forward row of the recomputation's next observed output, called ``name`` (a mismatch means
        the re-run took another path: the replay stops rather than guess)."""
        replay = self._replay
        if replay is None or self._at >= len(replay):
            return None
        index = replay[self._at]
        self._at += 1
        if rows[index].name.partition("#")[0] != name:
            self._replay = None
            return None
        return index
