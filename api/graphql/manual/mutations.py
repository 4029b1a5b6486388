"""The manual: which userError codes each mutation can answer with, besides those any mutation can.

The payload types' descriptions are made from this table, so a reader of GraphiQL sees next to
each mutation's result what can go wrong and why (each code is explained in UserErrorCode).
"""

# Codes any mutation can answer with: no token, a role or party that may not do it, an ID of the
# wrong type, a reused idempotency key, text that is empty, too long or holds control characters,
# and CONFLICT when another request changed the same thing at the same moment (retry).
ANY_MUTATION = ("UNAUTHENTICATED", "PERMISSION_DENIED", "READ_ONLY_ROLE", "INVALID_ID", "IDEMPOTENCY_KEY_REUSED",
                "REQUIRED", "TOO_LONG", "INVALID_TEXT", "CONFLICT")

CODES = {
    "createParty": ("INVALID_ROLE", "OWNERSHIP_REQUIRED", "OWNERSHIP_NOT_ALLOWED", "INVALID_ORG_NUMBER",
                    "DUPLICATE_ORG_NUMBER"),
    "createApiToken": ("INVALID_ROLE", "PARTY_REQUIRED", "UNKNOWN_PARTY", "WRONG_PARTY_ROLE", "INVALID_DATETIME"),
    "revokeApiToken": ("UNKNOWN_TOKEN",),
    "createFund": ("INVALID_CURRENCY", "UNKNOWN_PARTY", "WRONG_PARTY_ROLE"),
    "depositCapital": ("UNKNOWN_FUND", "CURRENCY_MISMATCH", "NON_POSITIVE_AMOUNT", "TOO_MANY_DECIMALS"),
    "createContract": ("UNKNOWN_FUND", "UNKNOWN_PARTY", "WRONG_PARTY_ROLE", "INVALID_TERM", "INVALID_SCHEDULE",
                       "INVALID_DISPUTE_WINDOW", "NO_METRICS", "INVALID_METRIC_CODE", "DUPLICATE_METRIC_CODE",
                       "BASELINE_REQUIRED", "THRESHOLD_REQUIRED", "ONCE_ONLY_NOT_ALLOWED", "NON_POSITIVE_PRICE",
                       "NON_POSITIVE_CAP", "DUPLICATE_AREA", "INVALID_PAYER", "DUPLICATE_PAYER", "INVALID_PERCENT",
                       "SHARES_NOT_100", "CURRENCY_MISMATCH"),
    "activateContract": ("UNKNOWN_CONTRACT", "INVALID_TRANSITION", "INSUFFICIENT_FUND_CAPITAL"),
    "amendContract": ("UNKNOWN_CONTRACT", "INVALID_TRANSITION", "TERMS_OUTSIDE_CONTRACT",
                      "EFFECTIVE_DATE_BEFORE_CURRENT", "BELOW_AMOUNT_PAID", "NO_METRICS", "DUPLICATE_METRIC_CODE",
                      "INVALID_PAYER", "DUPLICATE_PAYER", "INVALID_PERCENT", "SHARES_NOT_100"),
    "terminateContract": ("UNKNOWN_CONTRACT", "INVALID_TRANSITION", "TERMS_OUTSIDE_CONTRACT"),
    "completeContract": ("UNKNOWN_CONTRACT", "INVALID_TRANSITION", "CLAIM_WINDOW_OPEN", "PAYOUT_AWAITING_APPROVAL"),
    "grantLateClaim": ("UNKNOWN_CONTRACT", "LATE_CLAIM_NOT_ALLOWED", "INVALID_DATE", "UNKNOWN_PARTICIPANT",
                       "UNKNOWN_METRIC"),
    "issueSanction": ("UNKNOWN_CONTRACT", "CONTRACT_NOT_ACTIVE", "INVALID_SANCTION_LEVEL", "PENALTY_REQUIRED",
                      "PENALTY_NOT_ALLOWED", "CURRENCY_MISMATCH", "NON_POSITIVE_AMOUNT", "ALREADY_SUSPENDED"),
    "liftSuspension": ("UNKNOWN_CONTRACT", "NOT_SUSPENDED"),
    "enrollParticipant": ("UNKNOWN_CONTRACT", "CONTRACT_NOT_ACTIVE", "CONTRACT_SUSPENDED", "IDENTITY_REQUIRED",
                          "INVALID_PERSONAL_IDENTITY_NUMBER", "DUPLICATE_PARTICIPANT", "ENROLMENT_CLOSED",
                          "OUTSIDE_TERM", "DATE_IN_FUTURE"),
    "submitEvidence": ("UNKNOWN_CONTRACT", "CONTRACT_NOT_ACTIVE", "CONTRACT_SUSPENDED", "UNKNOWN_PARTICIPANT",
                       "UNKNOWN_METRIC", "DATE_REQUIRED", "VALUE_REQUIRED", "INVALID_PERIOD", "OUTSIDE_TERM",
                       "DATE_IN_FUTURE", "BEFORE_ENROLMENT", "DUPLICATE_CLAIM", "CLAIM_WINDOW_CLOSED",
                       "INVALID_SHA256"),
    "submitEvidenceBatch": ("EMPTY_BATCH", "BATCH_TOO_LARGE", "UNKNOWN_CONTRACT", "CONTRACT_NOT_ACTIVE",
                            "CONTRACT_SUSPENDED", "UNKNOWN_PARTICIPANT", "UNKNOWN_METRIC", "DATE_REQUIRED",
                            "VALUE_REQUIRED", "INVALID_PERIOD", "OUTSIDE_TERM", "DATE_IN_FUTURE", "BEFORE_ENROLMENT",
                            "DUPLICATE_CLAIM", "CLAIM_WINDOW_CLOSED", "INVALID_SHA256"),
    "verifyEvidence": ("UNKNOWN_EVIDENCE", "ALREADY_DECIDED", "SELF_VERIFICATION"),
    "rejectEvidence": ("UNKNOWN_EVIDENCE", "ALREADY_DECIDED", "SELF_VERIFICATION"),
    "invalidateEvidence": ("UNKNOWN_EVIDENCE", "NOT_VERIFIED", "SELF_VERIFICATION"),
    "recordMeasurement": ("UNKNOWN_CONTRACT", "CONTRACT_NOT_ACTIVE", "CONTRACT_SUSPENDED", "UNKNOWN_METRIC",
                          "MEASUREMENT_NOT_ALLOWED", "INVALID_PERIOD", "OUTSIDE_TERM", "DATE_IN_FUTURE",
                          "MEASUREMENT_OUTSIDE_PERIOD", "CLAIM_WINDOW_CLOSED", "INVALID_VALUE",
                          "COHORT_SIZE_REQUIRED", "COMPARISON_REQUIRED", "OVERLAPPING_MEASUREMENT"),
    "calculatePayout": ("UNKNOWN_CONTRACT", "CONTRACT_NOT_ACTIVE", "CONTRACT_SUSPENDED", "CONTRACT_ENDED",
                        "INVALID_PERIOD", "PERIOD_OUTSIDE_TERM", "PERIOD_NOT_IN_SCHEDULE", "PERIOD_OVERLAPS"),
    "approvePayout": ("UNKNOWN_PAYOUT", "ALREADY_POSTED", "PAYOUT_SUPERSEDED", "FOUR_EYES_REQUIRED", "STALE_PAYOUT",
                      "CONTRACT_SUSPENDED", "INSUFFICIENT_FUND_CAPITAL"),
    "recordPayment": ("UNKNOWN_PARTY", "UNKNOWN_CONTRACT", "CURRENCY_MISMATCH", "NON_POSITIVE_AMOUNT",
                      "TOO_MANY_DECIMALS", "NO_OBLIGATION", "OVERPAYMENT"),
    "createInvestment": ("UNKNOWN_CONTRACT", "UNKNOWN_PARTY", "WRONG_PARTY_ROLE", "INVESTOR_NOT_ON_CONTRACT",
                         "INVALID_TRANCHE", "INVALID_RETURN_CAP", "CURRENCY_MISMATCH", "NON_POSITIVE_AMOUNT",
                         "CONTRACT_ENDED", "INVESTMENTS_CLOSED"),
    "recordDrawdown": ("UNKNOWN_INVESTMENT", "CURRENCY_MISMATCH", "NON_POSITIVE_AMOUNT",
                       "DRAWDOWN_EXCEEDS_PRINCIPAL", "INVESTMENTS_CLOSED"),
    "distributeReceipts": ("UNKNOWN_CONTRACT", "NO_INVESTMENTS", "INVESTMENTS_CLOSED", "NOTHING_RECEIVED"),
    "closeInvestments": ("UNKNOWN_CONTRACT", "NO_INVESTMENTS", "CONTRACT_NOT_ENDED", "INVESTMENTS_CLOSED"),
    "reverseTransaction": ("UNKNOWN_TRANSACTION", "REASON_REQUIRED", "ALREADY_REVERSED", "REVERSAL_OF_REVERSAL"),
    "setIndigoFieldStatus": ("UNKNOWN_CONTRACT", "UNKNOWN_INDIGO_FIELD"),
    "correctMeasurement": ("UNKNOWN_MEASUREMENT", "MEASUREMENT_NOT_CURRENT", "INVALID_VALUE", "COHORT_SIZE_REQUIRED",
                           "COMPARISON_REQUIRED"),
    "voidMeasurement": ("UNKNOWN_MEASUREMENT", "MEASUREMENT_NOT_CURRENT"),
    "openDispute": ("UNKNOWN_EVIDENCE", "UNKNOWN_PAYOUT", "NOT_DISPUTABLE", "ALREADY_DISPUTED",
                    "DISPUTE_WINDOW_CLOSED"),
    "resolveDispute": ("UNKNOWN_DISPUTE", "ALREADY_DECIDED", "OWN_DECISION"),
    "approveChangeRequest": ("UNKNOWN_CHANGE_REQUEST", "ALREADY_DECIDED", "FOUR_EYES_REQUIRED"),
    "rejectChangeRequest": ("UNKNOWN_CHANGE_REQUEST", "ALREADY_DECIDED"),
}


def payload_name(mutation: str) -> str:
    return mutation[:1].upper() + mutation[1:] + "Payload"


DESCRIPTIONS = {
    payload_name(mutation): (
        f"What `{mutation}` answers: its result with an empty `userErrors` on success; otherwise null results "
        f"and userErrors. Besides the codes any mutation can give, these can come back: {', '.join(codes)}.")
    for mutation, codes in CODES.items()
}
DESCRIPTIONS["Mutation"] = (
    "Everything you can change. Each mutation takes one `input` (with an optional idempotencyKey for safe retries), "
    "runs in one database transaction, is written to the audit trail, and answers with its result or with "
    f"`userErrors`. Any mutation can answer {', '.join(ANY_MUTATION)}; each payload type lists the other codes "
    "its mutation can give.")
