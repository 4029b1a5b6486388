"""The manual: investors in an impact bond, drawdowns and the repayment waterfall (WATERFALL.md)."""

DESCRIPTIONS = {
    "Tranche.SENIOR": "Repaid first: its principal, then its capped return, before any SUBORDINATE money.",
    "Tranche.SUBORDINATE": "Repaid only after every SENIOR investment got its principal and return; carries more risk.",
    "CreateInvestmentPayload.investment": "The new investment, nothing drawn yet; null when userErrors is not empty.",
    "RecordDrawdownPayload.drawdown": "The drawdown, posted to the ledger; null when userErrors is not empty.",
    "DistributeReceiptsPayload.distribution": "The distribution with its lines in waterfall order; null when userErrors is not empty.",
    "DistributionLine": "What one step of the waterfall paid to one investment, or the residual left with the provider.",
    "DistributionLineKind.PRINCIPAL": "Repays principal drawn.",
    "DistributionLineKind.RETURN": "The return on top of principal, up to the investment's returnCap.",
    "DistributionLineKind.RESIDUAL": "What is left after every investor got its due; stays with the provider.",
}
