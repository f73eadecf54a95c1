"""A stochastic SIR model: a daily chain-binomial epidemic in a closed population.

Each day every susceptible person is infected with probability ``1 - exp(-beta_eff * I / N)`` and
every infected person recovers with probability ``1 - exp(-gamma)``, where
``beta_eff = beta * (1 - contact_reduction)``. The ``lockdown`` scenario halves contacts.

Config: ``days`` (default 100) and ``contact_reduction`` (default 0.0).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelops.model import Model, Parameter, Scenario


class SIR(Model):
    """Daily chain-binomial SIR; outputs ``incidence`` (one row per day) and ``summary``."""

    parameters = (
        Parameter("beta", 0.05, 1.0),
        Parameter("gamma", 0.02, 0.5),
        Parameter("population", 100, 1_000_000, kind="int", default=10_000),
        Parameter("initial_infected", 1, 1000, kind="int", default=100),
    )
    scenarios = (
        Scenario("baseline"),
        Scenario("lockdown", config={"contact_reduction": 0.5}),
    )
    outputs = ("incidence", "summary")

    def simulate(self, params: dict[str, Any], seed: int) -> dict[str, Any]:
        """Run one epidemic of ``days`` days from ``initial_infected`` cases."""
        rng = np.random.default_rng(seed)
        days = int(self.config.get("days", 100))
        reduction = float(self.config.get("contact_reduction", 0.0))
        beta = params["beta"] * (1.0 - reduction)
        population = params["population"]
        infected = min(params["initial_infected"], population)
        susceptible, recovered = population - infected, 0
        p_recover = 1.0 - np.exp(-params["gamma"])

        new_cases = np.zeros(days, dtype=np.int64)
        infected_by_day = np.zeros(days, dtype=np.int64)
        recovered_by_day = np.zeros(days, dtype=np.int64)
        for day in range(days):
            p_infect = 1.0 - np.exp(-beta * infected / population)
            cases = int(rng.binomial(susceptible, p_infect))
            recoveries = int(rng.binomial(infected, p_recover))
            susceptible -= cases
            infected += cases - recoveries
            recovered += recoveries
            new_cases[day] = cases
            infected_by_day[day] = infected
            recovered_by_day[day] = recovered

        peak_day = int(np.argmax(infected_by_day)) if days else 0
        return {
            "incidence": {
                "day": np.arange(days, dtype=np.int64),
                "new_cases": new_cases,
                "infected": infected_by_day,
                "recovered": recovered_by_day,
            },
            "summary": {
                "peak_day": peak_day,
                "peak_infected": int(infected_by_day[peak_day]) if days else infected,
                "attack_rate": (population - susceptible) / population,
            },
        }
