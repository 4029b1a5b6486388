"""Utfall's domain core: parties, funds, contracts, evidence, payouts and the ledger.

Nothing in this package knows about HTTP or GraphQL; `api/` calls in, never the reverse.
"""
