"""Simulated shoppers: who searches for what (:mod:`.intents`), how they react to a result list
(:mod:`.behaviour`), Poisson-arriving sessions driving the real HTTP API (:mod:`.traffic`),
rounds served in-process for the benchmarks (:mod:`.rounds`) and adversarial bots
(:mod:`.bots`)."""

from services.simulator.behaviour import Reaction, ShopperBehaviour
from services.simulator.intents import Intent, IntentPool, load_intents
from services.simulator.traffic import ShopperTraffic, TrafficStats

__all__ = [
    "Intent",
    "IntentPool",
    "Reaction",
    "ShopperBehaviour",
    "ShopperTraffic",
    "TrafficStats",
    "load_intents",
]
