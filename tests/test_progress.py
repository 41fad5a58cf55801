"""The progress display's ETA: it counts down between estimates, never moves later while no trial finished,
and is a range while fewer than two epochs are measured (issue 25). Time is the test's own clock."""

from dataclasses import dataclass, field

import optuna
import pytest

from nas_attn.progress import Progress
from nas_attn.records import EpochStats, TrialReport


@dataclass
class TuneTrial:
    """What the callback reads of Ray Tune's ``Trial``: its id, its config and its last result."""

    trial_id: str
    config: dict = field(default_factory=dict)
    last_result: dict = field(default_factory=dict)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _epoch(n: int) -> dict:
    stats = EpochStats(epoch=n, train_loss=1.0, train_acc=0.5, val_loss=1.0, val_acc=0.5, lr=0.1, epoch_s=1.0,
                       train_images_per_s=100.0)
    return TrialReport(epoch=stats).to_result()


def _seconds(eta: str) -> float:
    """Seconds of an ETA (a range's upper end; overdue: 0)."""
    if eta.startswith("overdue by "):
        return 0
    m, s = eta.lstrip("~").split("–")[-1].split("m")
    return int(m) * 60 + int(s.rstrip("s"))


@pytest.fixture
def progress():
    clock = Clock()
    study = optuna.create_study(directions=["maximize", "minimize"])
    return Progress(study, budget=4, epochs=3, concurrency=2, mode="quiet", clock=clock), clock


def test_the_eta_counts_down_and_never_moves_later_while_no_trial_finished(progress):
    p, clock = progress
    a, b = TuneTrial("a", {"trial_number": 0}), TuneTrial("b", {"trial_number": 1})
    p.on_trial_start(0, [], a)
    p.on_trial_start(0, [], b)
    assert p.eta(0) == "estimating…"
    clock.now += 60  # the first epoch, start-up in it
    p.on_trial_result(0, [], a, _epoch(1))
    first = p.eta(0)
    assert "–" in first  # one epoch measured: a range
    low, high = (_seconds(x) for x in first.lstrip("~").split("–"))
    assert (low, high) == (165, 330)  # 11 epochs left × 60 s ÷ 2 at once, and half that
    shown = []
    # epochs of very different lengths (a loaded machine): re-estimated each time, never later
    for dt, trial in [(200, b), (20, a), (300, b), (15, a)]:
        for _ in range(4):
            clock.now += dt / 4
            shown.append(_seconds(p.eta(0)))
        p.on_trial_result(0, [], trial, _epoch(p.running[trial.trial_id].epoch + 1))
        shown.append(_seconds(p.eta(0)))
    assert all(later <= earlier for earlier, later in zip(shown, shown[1:], strict=False)), str(shown)
    assert "–" not in p.eta(0)
    assert shown[-1] == 0 and p.eta(0).startswith("overdue by ")  # the epochs ran slower than measured


def test_after_a_trial_finishes_the_estimate_may_move_later(progress):
    p, clock = progress
    a = TuneTrial("a", {"trial_number": 0})
    p.on_trial_start(0, [], a)
    for _ in range(2):
        clock.now += 10
        p.on_trial_result(0, [], a, _epoch(p.running["a"].epoch + 1))
    before = _seconds(p.eta(0))
    clock.now += 500  # a slow last epoch
    p.on_trial_result(0, [], a, _epoch(3))
    a.last_result = _epoch(3)
    p.on_trial_complete(0, [], a)
    b = TuneTrial("b", {"trial_number": 1})
    p.on_trial_start(0, [], b)
    clock.now += 400
    p.on_trial_result(0, [], b, _epoch(1))
    assert _seconds(p.eta(0)) > before  # the measured epochs say later: shown, now that a trial finished
