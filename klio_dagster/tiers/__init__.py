"""Tiers: where a catalogue's tracks and per-(feature, track) state live (see :mod:`klio_dagster.tiers.base`).

The tier is configuration: ``build_feature_definitions(graph, tier=LedgerTier())``, or for
every location that names none, ``KLIO_TIER`` (``native``, the default, or ``ledger``) with
``KLIO_LEDGER_SHARDS`` and ``KLIO_LEDGER_URL``.
"""

from __future__ import annotations

import os

from klio_dagster.errors import ConfigurationError
from klio_dagster.tiers.base import Catalogue, Recorder, Tier
from klio_dagster.tiers.ledger import LedgerTier
from klio_dagster.tiers.native import NativeTier

TIER_VARIABLE = "KLIO_TIER"
SHARDS_VARIABLE = "KLIO_LEDGER_SHARDS"


def tier_from_environment() -> Tier:
    """The tier ``KLIO_TIER`` names (default ``native``); ``ledger`` takes ``KLIO_LEDGER_SHARDS`` (default 4,096)."""
    name = os.environ.get(TIER_VARIABLE, "native").strip().lower() or "native"
    if name == "native":
        return NativeTier()
    if name == "ledger":
        shards = os.environ.get(SHARDS_VARIABLE, "").strip()
        if shards and not (shards.isdigit() and int(shards) > 0):
            raise ConfigurationError(f"{SHARDS_VARIABLE}={shards!r}: give a positive whole number of shards")
        return LedgerTier(shards=int(shards)) if shards else LedgerTier()
    raise ConfigurationError(f"{TIER_VARIABLE}={name!r}: use 'native' (every track a partition) or 'ledger' (track shards)")


__all__ = ["Catalogue", "LedgerTier", "NativeTier", "Recorder", "Tier", "tier_from_environment"]
