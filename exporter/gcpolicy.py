"""The process's garbage-collection policy, decided here and nowhere else (standard library only).

It applies to the exporter's own process (``python -m exporter``, the installed script): the exporter
used as a library leaves the collector as its user set it.

- Start-up: the cyclic collector is paused from before the slow imports (``python -m exporter``) or
  from the start of ``serve`` until the exporter listens, and for the whole of ``--config.check``.
  Imports, the config and the targets' states build hundreds of thousands of objects and free almost
  none: each collection would only walk the growing heap again. Reference counting frees as usual.
- Once the exporter listens, what start-up built is frozen out of later collections (``gc.freeze``),
  and so is what the first round of probes builds (connections, caches, the history's buffers): they
  live as long as their targets, and a full collection walks every object not frozen, a stall of the
  event loop that makes every probe due meanwhile start late.
- A reload unfreezes it all, so that what it replaced can be collected; its first round is frozen in
  turn. A reload never pauses the collector: it reads the config in a worker thread while the event
  loop runs on, and the loop's cycles must still be collected.
"""

from __future__ import annotations

import gc

__all__ = ["GC", "GCPolicy"]


class GCPolicy:
    __slots__ = ("paused",)

    def __init__(self) -> None:
        #: paused for a start-up (``pause``) and not yet resumed
        self.paused = False

    def pause(self) -> None:
        """A start-up begins: no cyclic collection until ``resume``. A collector someone else switched
        off is left to them (and then nothing is frozen either)."""
        if not self.paused and gc.isenabled():
            gc.disable()
            self.paused = True

    def resume(self, listening: bool = False) -> None:
        """The start-up is over (or failed, or this command does not serve): the collector runs again;
        once the exporter ``listening``, with what start-up built frozen out of it."""
        if self.paused:
            if listening:
                gc.freeze()
            gc.enable()
            self.paused = False

    @staticmethod
    def first_round_done() -> None:
        """Every target has been probed after a start or a reload: what that built is frozen too. Only
        for an exporter whose process follows this policy (``Exporter.freeze_after_first_round``)."""
        gc.freeze()

    @staticmethod
    def reloaded() -> None:
        """A reload replaced the config: what was frozen may now be garbage."""
        if gc.get_freeze_count():
            gc.unfreeze()


#: the process's one policy
GC = GCPolicy()
