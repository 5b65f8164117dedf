"""Lending protocols on the devnet: Aave v3 and Morpho Blue from their real contracts
(contracts/artifacts), and the demo accounts' positions in them.

Modules: spec (the scenario's part), entries (the manifest's part), plan (the
transaction planner and token book), aave and morpho (their deployments), setup (the
three phases and the read-back). Kept import-free here: manifest imports plan.
"""
