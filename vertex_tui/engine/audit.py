"""The audit log (who did what, when, to how many): its statements live in store/audit.py."""

from vertex_tui.engine.store.audit import current_actor, record

__all__ = ["current_actor", "record"]
