"""The dashboard's mail sparklines follow `t`: 1h (per minute), 24h and 7d (per hour), from
the same history as `vertex-tui email history`, what was just delivered included."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.widgets import Label, Sparkline

from vertex_tui.screens.dashboard import DashboardScreen

if TYPE_CHECKING:
    from textual.pilot import Pilot

    from .conftest import Console


def sparklines(pilot: Pilot[Any]) -> tuple[str, list[float], list[float]]:
    screen = pilot.app.screen
    assert isinstance(screen, DashboardScreen)
    title = str(screen.query_one("#history-title", Label).render())
    sent = list(screen.query_one("#sparkline", Sparkline).data or [])
    p95 = list(screen.query_one("#sparkline-p95", Sparkline).data or [])
    return title, sent, p95


async def test_t_switches_the_sparklines_between_1h_24h_and_7d(console: Console) -> None:
    console.clock.set(1_800_000_000.0 + 30)  # 30 s into a minute that starts an hour
    await console.deliver([{"to": f"u{i}@example.org", "subject": "Hi", "body": "Hi\n"}
                           for i in range(3)])
    engine = await console.engine()
    app = console.app(engine)
    seen = []
    async with app.run_test(size=(80, 24)) as pilot:
        await console.settle(pilot)
        for _ in range(4):
            seen.append(sparklines(pilot))
            text = "\n".join(console.screen_text(app))
            assert seen[-1][0] in text, text  # the title is not clipped at 80x24
            await pilot.press("t")
            await console.settle(pilot)
        assert "t 1h/24h/7d" in "\n".join(console.screen_text(app))  # in the footer
    titles = [title for title, _, _ in seen]
    assert titles == ["Mail sent per minute, last hour │ p95 latency",
                      "Mail sent per hour, last 24 h │ p95 latency",
                      "Mail sent per hour, last 7 days │ p95 latency",
                      "Mail sent per minute, last hour │ p95 latency"]
    assert [len(sent) for _, sent, _ in seen] == [60, 24, 168, 60]
    # The three mails were sent in the current minute (and hour): the last bucket.
    for _, sent, p95 in seen:
        assert sent[-1] == 3 and sum(sent) == 3
        assert len(p95) == len(sent)
