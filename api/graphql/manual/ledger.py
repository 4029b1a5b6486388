"""The manual: the double-entry, hash-chained ledger, its verification and proofs."""

DESCRIPTIONS = {
    "LedgerAccount": ("An account of the double-entry ledger, owned by one party (and where it matters for one "
                      "contract, fund and counterparty). Obligations are PAYABLE accounts of the debtor mirrored "
                      "by RECEIVABLE accounts of the creditor."),
    "LedgerAccount.code": ("What the account records. Funds and payers: FUND_CASH, FUND_CAPITAL, FUND_COMMITTED, "
                           "FUND_COMMITMENT_RESERVE, PAYER_COMMITTED, PAYER_COMMITMENT_RESERVE, OUTCOME_COST; "
                           "providers: OUTCOME_REVENUE; obligations: PAYABLE, RECEIVABLE; penalties (vite): "
                           "PENALTY_EXPENSE, PENALTY_INCOME; impact bonds: INVESTMENT, PREFINANCE, "
                           "INVESTMENT_RETURN, INVESTOR_RETURN_COST, INVESTMENT_LOSS, PREFINANCE_WRITTEN_OFF; "
                           "and CASH."),
    "LedgerAccount.name": "The account's name in words, e.g. \"Owed to\" or \"Penalties (vite) receivable\".",
    "LedgerAccount.currency": "The account's currency; all its entries are in it.",
    "LedgerAccount.closedAt": "When the account was closed; null while open. A closed account takes no entries (ACCOUNT_CLOSED).",
    "LedgerAccount.party": "The party whose account it is.",
    "LedgerAccount.counterparty": "For PAYABLE and RECEIVABLE accounts, the other party of the obligation; null otherwise.",
    "LedgerTransaction": ("One posting to the ledger: two or more entries that sum to zero per currency. Never "
                          "changed or deleted; a mistake is corrected by a reversing transaction. Each is chained "
                          "to the one before by its hash."),
    "LedgerTransaction.sequence": "Its number in the ledger: 1, 2, 3 … without gaps, in the order posted.",
    "LedgerTransaction.postedAt": "When it was written to the ledger (UTC).",
    "LedgerTransaction.effectiveDate": "The business date it concerns, e.g. the day a payment was made; may be before postedAt.",
    "LedgerTransaction.kind": ("What it records: CAPITAL_DEPOSIT, COMMITMENT, COMMITMENT_CHANGE, COMMITMENT_RELEASE, "
                               "PAYOUT, PAYMENT, PENALTY, DRAWDOWN, DISTRIBUTION, INVESTMENT_WRITE_OFF or REVERSAL."),
    "LedgerTransaction.description": "What happened, in words, e.g. \"Capital paid in to Utfallsfonden: beslut 2026-14\".",
    "LedgerTransaction.actor": "Who caused the posting.",
    "LedgerTransaction.hash": "SHA-256 over previousHash and the transaction's canonical bytes, lower-case hexadecimal: any later change to it or an earlier one breaks the chain.",
    "LedgerTransaction.previousHash": "The hash of the transaction before it (sequence − 1); 64 zeros for the first.",
    "Query.ledgerTransactions": "Transactions the caller may see, in sequence order: all for fund managers, admins and auditors; those touching a party's accounts for the others.",
    "Query.ledgerTransactions(partyId:)": "Only transactions with an entry on this party's accounts.",
    "Query.ledgerTransactions(contractId:)": "Only transactions of this contract.",
    "Query.ledgerTransactions(accountId:)": "Only transactions with an entry on this account.",
    "Query.ledgerTransactions(fromSequence:)": "Start at this sequence number.",
    "Query.ledgerTransactions(asOf:)": "Only transactions posted at or before this moment (with an offset).",
    "LedgerEntry": "One line of a transaction: an amount on one account. Debits are positive, credits negative.",
    "LedgerEntry.line": "The entry's line number within the transaction, from 1.",
    "LedgerEntry.currency": "The entry's currency, the account's.",
    "LedgerEntry.amount": "The amount: positive a debit, negative a credit.",
    "LedgerEntry.account": "The account; null if the caller may not see it.",
    "Query.balance(accountId:)": "The account.",
    "Query.balance(asOf:)": "The balance as the ledger held it at this moment (with an offset).",
    "Query.balance(asOfSequence:)": "The balance right after this transaction.",
    "LedgerDigest": "A point of the hash chain: a sequence number and the hash there. Keep it; `verifyLedger(digest:)` later proves the ledger still holds it.",
    "LedgerDigest.sequence": "The sequence number of the transaction.",
    "LedgerDigest.hash": "Its chain hash, lower-case hexadecimal.",
    "LedgerDigestInput": "A digest (sequence and hash) from `ledgerDigest`, kept earlier, to check against the ledger now.",
    "Query.ledgerDigest": "The newest transaction's sequence and hash: hand it to an auditor to check later that nothing up to it changed.",
    "Query.verifyLedger(digest:)": "A digest kept earlier: also prove that the ledger still holds that sequence with that hash.",
    "LedgerVerification": "The outcome of recomputing the hash chain and the running balances.",
    "LedgerVerification.ok": "True when every hash and balance recomputes and the digest or tree head given still holds.",
    "LedgerVerification.checkedTransactions": "How many transactions were checked.",
    "LedgerVerification.firstInvalidSequence": "The first transaction that does not check out; null when ok.",
    "LedgerVerification.reason": "Why the check failed, in words; null when ok.",
    "Mutation.reverseTransaction(input:)": "The transaction to reverse and why (FUND_MANAGER; under dual control a change request).",
    "ReverseTransactionInput.transactionId": "The transaction to reverse; not a reversal (REVERSAL_OF_REVERSAL) and not one reversed before (ALREADY_REVERSED).",
    "ReverseTransactionInput.reason": "Why; kept in the reversing transaction's description.",
    "ReverseTransactionInput.effectiveDate": "The business date of the reversal (default: the original's effective date).",
    "ReverseTransactionPayload.transaction": "The new reversing transaction; null when userErrors is not empty or the reversal waits for approval.",
    "Receipt.sequence": "The sequence number of the posted transaction.",
    "ConsistencyProof.fromSize": "The size of the earlier tree.",
    "ConsistencyProof.toSize": "The size of the later tree.",
    "Query.signedTreeHead(treeSize:)": "Sign the head of the tree of the first treeSize transactions instead of the whole ledger.",
    "Query.inclusionProof(sequence:)": "The transaction's sequence number.",
    "Query.inclusionProof(treeSize:)": "The size of the tree to prove against, e.g. a kept tree head's; default the ledger now.",
    "Query.consistencyProof(fromSize:)": "The size of the earlier tree, e.g. of a tree head kept earlier.",
    "Query.consistencyProof(toSize:)": "The size of the later tree; default the ledger now.",
}
