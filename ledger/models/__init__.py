"""ORM tables, one module per aggregate. Importing this package registers all of them."""
from ledger.models.base import Base, DecimalText, UTCDateTime, utcnow
from ledger.models.parties import ApiToken, Party
from ledger.models.journal import GENESIS_HASH, Account, Entry, LedgerHead, Transaction
from ledger.models.merkle import MerkleNode
from ledger.models.effective_balances import EffectiveBalanceBucket
from ledger.models.audit import AuditEvent, IdempotencyKey
from ledger.models.funds import OutcomesFund
from ledger.models.contracts import AreaSupplement, ContractTerms, LateClaimGrant, Metric, OutcomeContract, PayerShare, Sanction
from ledger.models.evidence import DocumentUpload, Evidence, EvidenceDocument, Measurement, Participant
from ledger.models.payouts import Payment, PayoutCalculation, PayoutItem, PayoutItemBlock, PayoutLine, PayoutRecordedInputs, PayoutShare
from ledger.models.publishing import IndigoFieldStatus
from ledger.models.investments import (
    DistributionLine, DistributionReceipt, Drawdown, Investment, InvestmentClosing, WaterfallDistribution,
)
from ledger.models.corrections import ChangeRequest, Dispute

__all__ = [
    "Base", "UTCDateTime", "utcnow", "Party", "ApiToken", "Account", "Entry", "LedgerHead",
    "Transaction", "GENESIS_HASH", "MerkleNode", "EffectiveBalanceBucket", "AuditEvent", "IdempotencyKey", "OutcomesFund",
    "OutcomeContract",
    "ContractTerms", "LateClaimGrant", "PayerShare", "Metric", "AreaSupplement", "Sanction", "Participant", "Evidence",
    "DocumentUpload", "EvidenceDocument", "Measurement", "PayoutCalculation", "PayoutLine", "PayoutItem", "PayoutItemBlock", "PayoutRecordedInputs", "PayoutShare", "Payment",
    "IndigoFieldStatus",
    "Investment", "Drawdown", "WaterfallDistribution", "DistributionLine", "DistributionReceipt", "InvestmentClosing",
    "ChangeRequest", "Dispute",
]
