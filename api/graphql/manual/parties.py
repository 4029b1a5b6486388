"""The manual: parties, tokens and roles, the caller, audit events, and the shared types."""

DESCRIPTIONS = {
    # --- shared types -------------------------------------------------------------------
    "Money": ("An amount of money in one currency. Amounts are exact decimals (a string such as \"18750.00\", "
              "to the minor unit: öre for SEK), never floats."),
    "Money.amount": "The amount as an exact decimal string, e.g. \"18750.00\"; negative where money flows the other way.",
    "Money.currency": "The ISO 4217 currency code, e.g. \"SEK\". A fund and its contracts keep to the fund's currency.",
    "MoneyInput": ("An amount you send: `amount` as a decimal string (\"18750.00\", at most the currency's minor "
                   "unit, no thousands separators) and the ISO 4217 `currency` of the fund, e.g. \"SEK\"."),
    "UserError": ("Why a mutation did nothing: an expected failure such as invalid input, a broken rule or a "
                  "missing permission. Check `code` in programs and show `message` to people."),
    "UserError.message": "A plain-English explanation for a person, e.g. \"the evidence is already VERIFIED\".",
    "PageInfo": "Where a page lies in the whole list, and the cursors to move from it.",
    "PageInfo.hasNextPage": "True when more items follow this page: ask again with `after: endCursor`.",
    "PageInfo.hasPreviousPage": "True when this page was asked for with a cursor, so items come before it.",
    "PageInfo.startCursor": "The cursor of the first item of this page; null for an empty page.",
    "PageInfo.endCursor": "The cursor of the last item of this page, to pass as `after`; null for an empty page.",
    "Query": ("Everything you can read. Most fields need a bearer token and answer only with what its role and "
              "party may see; `publicResults` and `evaluationReport` also answer without one."),
    "Query.node(id:)": "The global ID of any object, as returned in its `id` field.",

    # --- parties --------------------------------------------------------------------------
    "Party": ("An organisation taking part in outcomes contracts: the fund's manager, a municipality (kommun), a "
              "provider of the service, an investor, or an independent verifier."),
    "Party.name": "The organisation's name.",
    "Party.role": "What the organisation is in contracts: FUND, MUNICIPALITY, PROVIDER, INVESTOR or VERIFIER.",
    "Party.ownership": ("For providers, who owns them: PRIVATE, NONPROFIT or PUBLIC_IN_HOUSE (egen regi). Null for "
                        "other parties. Reports compare providers by it; the rules are the same for all."),
    "Party.orgNumber": "The Swedish organisation number (organisationsnummer), as NNNNNN-NNNN; null if not given.",
    "Party.createdAt": "When the party was registered.",
    "PartyRole": "What an organisation is in outcomes contracts.",
    "PartyRole.FUND": "Manages an outcomes fund (e.g. a statlig utfallsfond) that pays for verified outcomes.",
    "PartyRole.MUNICIPALITY": "A municipality (kommun) that commissions the service and pays its share of outcomes.",
    "PartyRole.PROVIDER": "Delivers the service and is paid for outcomes: a company, a non-profit or the municipality's own unit (egen regi).",
    "PartyRole.INVESTOR": "Pre-finances a provider in an impact bond and is repaid out of outcome payments.",
    "PartyRole.VERIFIER": "An independent evaluator who verifies or rejects evidence and records measured results.",
    "Ownership": ("Who owns a provider. The same rules apply to all forms (competition neutrality); reports set "
                  "them side by side."),
    "Ownership.PRIVATE": "A privately owned company.",
    "Ownership.NONPROFIT": "A non-profit organisation (idéburen organisation), e.g. a foundation or association.",
    "Ownership.PUBLIC_IN_HOUSE": "The municipality's own in-house unit (egen regi).",
    "Role": ("The role of an API token: what its holder may do. MUNICIPALITY, PROVIDER, VERIFIER and INVESTOR "
             "tokens are bound to one party of that role and see only what concerns it."),
    "Role.ADMIN": "Runs the service: creates and revokes tokens and registers parties; sees everything.",
    "Role.FUND_MANAGER": "Sets up funds, parties and contracts, calculates and approves payouts, records payments and issues sanctions; sees everything.",
    "Role.MUNICIPALITY": "A municipality's officer: sees its own contracts, obligations and results; records its own payments.",
    "Role.PROVIDER": "A provider: enrolls participants and submits evidence for its own contracts; sees only those.",
    "Role.VERIFIER": "An independent verifier: decides on evidence and records measurements for the contracts it verifies.",
    "Role.AUDITOR": "Read-only access to everything: the ledger as of any date, the audit trail, every figure.",
    "Role.INVESTOR": "An investor: sees its own investments, drawdowns and distributions.",
    "Viewer": "Who the calling token belongs to.",
    "Viewer.name": "The token's name, as given when it was created.",
    "Viewer.role": "The token's role, which decides what it may see and do.",
    "Viewer.party": "The party the token acts for; null when it is not bound to one (e.g. most ADMIN, FUND_MANAGER and AUDITOR tokens).",
    "Query.viewer": "The calling token: its name, role and party. Null without a token.",
    "Query.parties": "Every registered organisation, oldest first (any token).",
    "Query.parties(role:)": "Only parties of this role.",
    "ApiToken": ("A bearer token for the API: a name, a role and, for party-bound roles, a party. Only a hash of "
                 "the secret is stored. Admins only."),
    "ApiToken.name": "A name saying who or what uses the token.",
    "ApiToken.role": "What the token may do.",
    "ApiToken.createdAt": "When the token was created.",
    "ApiToken.expiresAt": "After this moment the token is refused; null if it never expires.",
    "ApiToken.revokedAt": "When the token was revoked; null while it is valid.",
    "ApiToken.lastUsedAt": "When the token was last used; null if never.",
    "ApiToken.party": "The party the token acts for; null when it is not bound to one.",
    "Mutation.createParty": ("Register an organisation (ADMIN, FUND_MANAGER). A provider must give its ownership "
                             "form, other parties none (OWNERSHIP_REQUIRED, OWNERSHIP_NOT_ALLOWED); an organisation "
                             "number is checked (INVALID_ORG_NUMBER) and unique (DUPLICATE_ORG_NUMBER)."),
    "CreatePartyInput.name": "The organisation's name.",
    "CreatePartyInput.role": "What it is in contracts; cannot be changed later.",
    "CreatePartyInput.ownership": "Required for a PROVIDER, not allowed for others: PRIVATE, NONPROFIT or PUBLIC_IN_HOUSE (egen regi).",
    "CreatePartyInput.orgNumber": "Optional Swedish organisation number, with or without the hyphen; checked with its control digit.",
    "CreatePartyPayload.party": "The new party; null when userErrors is not empty.",
    "Mutation.createApiToken": ("Create a bearer token (ADMIN). The secret is in the payload's `token` once and "
                                "never again. MUNICIPALITY, PROVIDER, VERIFIER and INVESTOR tokens need a party of "
                                "that role (PARTY_REQUIRED, WRONG_PARTY_ROLE)."),
    "CreateApiTokenInput.name": "Who or what will use the token, e.g. \"Kommunen ekonomi\".",
    "CreateApiTokenInput.role": "What the token may do.",
    "CreateApiTokenInput.partyId": "The party the token acts for: required for MUNICIPALITY, PROVIDER, VERIFIER and INVESTOR tokens (a party of that role), optional for the others.",
    "CreateApiTokenInput.expiresAt": "When the token stops working (with an offset); leave out for no expiry.",
    "CreateApiTokenPayload.apiToken": "The token's record (without the secret); null when userErrors is not empty.",
    "Mutation.revokeApiToken": "Revoke a token at once (ADMIN): every later request with it is UNAUTHENTICATED.",
    "RevokeApiTokenInput.tokenId": "The ApiToken to revoke.",
    "RevokeApiTokenPayload.apiToken": "The token, now with `revokedAt`; null when userErrors is not empty.",

    # --- audit trail ----------------------------------------------------------------------
    "AuditEvent": "One mutation as the audit trail recorded it: who did what, when, with which input, and what came of it.",
    "AuditEvent.occurredAt": "When the mutation ran.",
    "AuditEvent.actor": "Who made the request: the token's name with its role and party, e.g. \"Anna (FUND_MANAGER)\".",
    "AuditEvent.operation": "The mutation, e.g. \"approvePayout\".",
    "AuditEvent.resultType": "The type of object the mutation made or changed, e.g. \"Payout\"; null if none.",
    "AuditEvent.resultId": "The global ID of that object; null if none.",
    "Query.auditEvents": "Every mutation ever made, oldest first: who did what and when (ADMIN, FUND_MANAGER, AUDITOR).",
}
