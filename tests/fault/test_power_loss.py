"""The power-loss model over every durable step of an upgrade, three seeds (fault suite), with four
of the recoveries per seed cut at every one of their own steps too; the ``make test`` subset runs a
sample of the cuts (``test_crash_smoke.py``). See ``powerloss.py`` for what the model covers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fault.power_campaign import power_loss_campaign


@pytest.mark.fault
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_power_cut_recovers_to_exactly_one_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        seed: int) -> None:
    tally, events = power_loss_campaign(tmp_path, seed, monkeypatch, nested=4)
    tally.report()
    assert tally.scenarios == events + 1 + tally.recovery_kills
    assert tally.recovery_kills > 4  # four recoveries, each cut at every one of its steps
    assert tally.violations == []


@pytest.mark.fault
def test_the_model_catches_an_upgrader_that_skips_directory_fsyncs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The model is only worth its zero if it can fail: with the state directory's fsyncs dropped
    (journal and manifest renames never durable), some cuts must recover to the wrong release."""
    from zos_upgrade import fsutil
    from zos_upgrade.upgrade import journal

    real = fsutil.fsync_dir

    def skips_the_state_dir(path: Path | str) -> None:
        if Path(path).name != "state":
            real(path)

    with pytest.MonkeyPatch.context() as broken:
        broken.setattr(fsutil, "fsync_dir", skips_the_state_dir)
        broken.setattr(journal, "fsync_dir", skips_the_state_dir)
        tally, _ = power_loss_campaign(tmp_path, 0, monkeypatch, limit=30)
    print(tally.summary())
    # caught either where a journal/manifest write is not durable, or by its effect: a cut after which
    # the node is on no whole release (a replaced file survives, the journal that undoes it does not)
    caught = ("durable journal/manifest call for", "node matches no release")
    assert any(any(c in v for c in caught) for v in tally.violations), tally.violations[:5]
