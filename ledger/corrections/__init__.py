"""Corrections you can trust (PAYOUTS.md §9): reversals, measurement versions, disputes and
change requests under dual control."""
