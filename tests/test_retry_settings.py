"""Retry intervals are settings, read once with the rest of the environment."""

from __future__ import annotations

import pytest

from services import settings_for
from shared.settings import CHASE_RETRY_INTERVALS, NOTIFY_RETRY_INTERVALS, RELAY_RETRY_INTERVALS, ConfigurationError


def test_without_the_variables_each_kind_of_try_keeps_its_own_default(monkeypatch):
    monkeypatch.delenv("NOTIFY_RETRY_INTERVALS", raising=False)
    monkeypatch.delenv("RELAY_RETRY_INTERVALS", raising=False)
    settings = settings_for("outcomes")
    assert settings.relay_retry_intervals == RELAY_RETRY_INTERVALS
    assert settings.notify_retry_intervals == NOTIFY_RETRY_INTERVALS
    assert settings.chase_retry_intervals == CHASE_RETRY_INTERVALS


def test_notify_retry_intervals_set_both_notifications_and_chases(monkeypatch):
    monkeypatch.setenv("NOTIFY_RETRY_INTERVALS", "1, 2")
    monkeypatch.setenv("RELAY_RETRY_INTERVALS", "3")
    settings = settings_for("dissemination")
    assert settings.notify_retry_intervals == settings.chase_retry_intervals == (1, 2)
    assert settings.relay_retry_intervals == (3,)


def test_a_malformed_interval_list_is_refused_by_name(monkeypatch):
    monkeypatch.setenv("RELAY_RETRY_INTERVALS", "5,soon")
    with pytest.raises(ConfigurationError, match="RELAY_RETRY_INTERVALS"):
        settings_for("dissemination")
