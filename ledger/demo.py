"""A realistic demo fund, loaded through the same use cases as the API, so every view has data.

A national outcomes fund with 50 MSEK; three municipalities; a company, a non-profit and a
municipality's in-house unit as providers; three contracts (school results on a rate card,
care days avoided against a baseline, reconvictions against a comparison group); about 500
participants; evidence submitted, verified and rejected; two paid periods with payments; one
clawback; one sanction. The school contract pays half-yearly with a run-off after service ends
and three payers (the fund, Umeå and Region Västerbotten up to a cap); the care contract is
scheduled half-yearly too; the Gävle contract (free periods, as before schedules) is terminated.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import select

from ledger import calculations, contracts, funds, parties, sanctions, settlement, tokens
from ledger.corrections import change_requests
from ledger import evidence as ev
from ledger import money as m
from ledger.access import SYSTEM, Actor
from ledger.contracts import MetricSpec, ShareSpec, TermsSpec
from ledger.db import Database
from ledger.models import OutcomesFund

DEMO_FUND = "Statens utfallsfond — demo"
START, END = date(2025, 1, 1), date(2027, 12, 31)
H1, H2 = (date(2025, 1, 1), date(2025, 6, 30)), (date(2025, 7, 1), date(2025, 12, 31))


@dataclass(frozen=True)
class DemoToken:
    role: str
    name: str
    party: str | None
    token: str


def sek(amount: str) -> m.Money:
    return m.money(amount, "SEK")


def _personnummer(rng: random.Random) -> str:
    """A made-up personnummer with a valid check digit (for the demo only)."""
    from ledger.parties import luhn_ok
    born = date(1960, 1, 1) + timedelta(days=rng.randrange(0, 40 * 365))
    body = born.strftime("%y%m%d") + f"{rng.randrange(0, 1000):03d}"
    digit = next(d for d in range(10) if luhn_ok(body + str(d)))
    return f"{born.year}{body[2:6]}-{body[6:]}{digit}"


def load(db: Database, *, today: date, secret: bytes, seed: int = 2026) -> list[DemoToken]:
    """Load the demo (once) and return fresh tokens for every role."""
    with db.reading() as s:
        loaded = s.execute(select(OutcomesFund.id).where(OutcomesFund.name == DEMO_FUND)).first() is not None
    if not loaded:
        _load(db, today=today, secret=secret, rng=random.Random(seed))
    return _tokens(db)


def _load(db: Database, *, today: date, secret: bytes, rng: random.Random) -> None:
    fm, fm2 = Actor("Frida Fondförvaltare", "FUND_MANAGER"), Actor("Gustav Granskare", "FUND_MANAGER")
    with db.uow() as uow:
        def party(name, role, org=None, ownership=None):
            return parties.create_party(uow, actor=SYSTEM, name=name, role=role, org_number=org, ownership=ownership)
        fund_party = party("Statens utfallsfond", "FUND", "202100-6255")
        munis = [party(n, "MUNICIPALITY", o) for n, o in
                 [("Umeå kommun", "212000-2627"), ("Malmö stad", "212000-1124"), ("Gävle kommun", "212000-2411")]]
        provs = [party("Skolframgång AB", "PROVIDER", "556036-0793", "PRIVATE"),
                 party("Stiftelsen Vägen Hem", "PROVIDER", None, "NONPROFIT"),
                 party("Gävle kommun, egen regi (Frivården Gävle)", "PROVIDER", None, "PUBLIC_IN_HOUSE")]
        verifier = party("Oberoende Utvärdering i Norden AB", "VERIFIER")
        investor = party("Sociala Utfallsinvesteringar i Sverige AB", "INVESTOR")
        region = party("Region Västerbotten", "MUNICIPALITY")
        fund = funds.create_fund(uow, actor=fm, name=DEMO_FUND, manager_id=fund_party.id, currency="SEK")
        funds.deposit_capital(uow, actor=fm, fund_id=fund.id, amount=sek("50000000.00"), effective_date=START,
                              reference="Regleringsbrev 2025, anslag 1:4")

        def share(muni, fund_pct):
            return (ShareSpec(fund_party.id, Decimal(fund_pct)), ShareSpec(muni.id, Decimal(100) - Decimal(fund_pct)))

        school = contracts.create_contract(
            uow, actor=fm, title="Fullständiga betyg i Umeå", fund_id=fund.id, municipality_id=munis[0].id,
            provider_id=provs[0].id, verifier_id=verifier.id, investor_id=None, policy_area="Skola",
            start_date=START, end_date=END, terms=TermsSpec(
                max_value=sek("12000000.00"), participant_cap=sek("50000.00"),
                payer_shares=(ShareSpec(fund_party.id, Decimal(40)), ShareSpec(munis[0].id, Decimal(40)),
                              # room left after the paid half-years, so a late claim can still be paid
                              ShareSpec(region.id, Decimal(20), sek("2500000.00"))),
                metrics=(MetricSpec("SCHOOL_PASS", "Godkänt i alla ämnen", "RATE_CARD", "HIGHER_IS_BETTER",
                                    sek("40000.00"), once_only=True, area_supplements=(("RURAL", Decimal(15)),)),
                         MetricSpec("ATTENDANCE", "Närvaro över 90 % en termin", "RATE_CARD", "HIGHER_IS_BETTER",
                                    sek("12500.00"), cap_per_participant=sek("25000.00"),
                                    area_supplements=(("RURAL", Decimal(15)),)))),
            payment_frequency="HALF_YEARLY", service_end_date=date(2027, 6, 30))
        care = contracts.create_contract(
            uow, actor=fm, title="Färre vårddygn i Malmö", fund_id=fund.id, municipality_id=munis[1].id,
            provider_id=provs[1].id, verifier_id=verifier.id, investor_id=investor.id, policy_area="Missbruk och beroende",
            start_date=START, end_date=END, terms=TermsSpec(
                max_value=sek("15000000.00"), participant_cap=None, payer_shares=share(munis[1], 40),
                metrics=(MetricSpec("CARE_DAYS", "Undvikna vårddygn", "BASELINE_IMPROVEMENT", "LOWER_IS_BETTER",
                                    sek("1850.00"), baseline=Decimal(3650), cap_per_period=sek("2000000.00"),
                                    baseline_source="Malmö stad, vårddygn 2022–2024",
                                    baseline_method="Medelvärde per halvår för målgruppen"),)),
            payment_frequency="HALF_YEARLY")
        recon = contracts.create_contract(
            uow, actor=fm, title="Minskat återfall i brott i Gävle", fund_id=fund.id, municipality_id=munis[2].id,
            provider_id=provs[2].id, verifier_id=verifier.id, investor_id=None, policy_area="Kriminalvård",
            start_date=START, end_date=END, terms=TermsSpec(
                max_value=sek("10000000.00"), participant_cap=None, payer_shares=share(munis[2], 50),
                metrics=(MetricSpec("RECONVICTIONS", "Undvikna återfall", "COMPARISON_THRESHOLD", "LOWER_IS_BETTER",
                                    sek("3000.00"), threshold=Decimal("0.10"), baseline=Decimal("1.60"),
                                    baseline_source="Brå, jämförelsegrupp 2023"),)))
        for c in (school, care, recon):
            contracts.activate_contract(uow, actor=fm, contract_id=c.id)
        uow.commit()

    verify_actor = Actor("Vera Verifierare", "VERIFIER", verifier.id)
    # the cohorts: identity numbers are hashed on the way in
    cohorts = {}
    for c, prov, n in ((school, provs[0], 300), (care, provs[1], 100), (recon, provs[2], 100)):
        actor = Actor(f"Handläggare {prov.name}", "PROVIDER", prov.id)
        with db.uow() as uow:
            people, seen = [], set()
            while len(people) < n:
                pnr = _personnummer(rng)
                if pnr in seen:
                    continue
                seen.add(pnr)
                people.append(ev.enroll_participant(
                    uow, actor=actor, secret=secret, contract_id=c.id, personal_identity_number=pnr,
                    external_ref=f"{c.id}-{len(people) + 1:04d}", area="RURAL" if rng.random() < 0.3 else "URBAN",
                    enrolled_on=START + timedelta(days=rng.randrange(0, 60)), today=today))
            uow.commit()
        cohorts[c.id] = (actor, people)

    # school evidence over two half-years: most verified, some rejected
    actor, people = cohorts[school.id]
    paid_first = []
    with db.uow() as uow:
        for (lo, hi), share_pass in ((H1, 0.25), (H2, 0.35)):
            for p in people:
                claims = []
                if rng.random() < 0.5:
                    claims.append(ev.Claim(p.id, "ATTENDANCE", achieved_on=lo + timedelta(days=rng.randrange(60, 170))))
                if rng.random() < share_pass:
                    claims.append(ev.Claim(p.id, "SCHOOL_PASS", achieved_on=lo + timedelta(days=rng.randrange(100, 175)),
                                           documents=(ev.Document(f"{rng.getrandbits(256):064x}", "slutbetyg.pdf",
                                                                  "application/pdf"),)))
                for claim in claims:
                    try:
                        e = ev.submit_evidence(uow, actor=actor, contract_id=school.id, claim=claim,
                                               today=min(today, hi + timedelta(days=30)))
                    except ev.DomainError:
                        continue  # a second SCHOOL_PASS is refused as DUPLICATE_CLAIM, as in real life
                    if rng.random() < 0.08:
                        ev.reject_evidence(uow, actor=verify_actor, evidence_id=e.id,
                                           reason="Underlaget styrker inte utfallet")
                    elif rng.random() < 0.95:
                        ev.verify_evidence(uow, actor=verify_actor, evidence_id=e.id, note="Kontrollerat mot skolans register")
                        if lo == H1[0]:
                            paid_first.append(e)
        for (lo, hi), observed in ((H1, "3100"), (H2, "2400")):
            ev.record_measurement(uow, actor=verify_actor, contract_id=care.id, metric_code="CARE_DAYS",
                                  period_start=lo, period_end=hi, observed_value=Decimal(observed),
                                  comparison_value=None, cohort_size=None, today=min(today, hi + timedelta(days=30)))
        for (lo, hi), observed in ((H1, "1.46"), (H2, "1.40")):
            ev.record_measurement(uow, actor=verify_actor, contract_id=recon.id, metric_code="RECONVICTIONS",
                                  period_start=lo, period_end=hi, observed_value=Decimal(observed),
                                  comparison_value=Decimal("1.60"), cohort_size=100, today=today)
        uow.commit()

    # first half-year: calculated by Frida, approved by Gustav, paid
    def pay_period(period):
        for c in (school, care, recon):
            with db.uow() as uow:
                p = calculations.calculate_payout(uow, actor=fm, contract_id=c.id, period_start=period[0],
                                                  period_end=period[1])
                uow.commit()
            with db.uow() as uow:
                calculations.approve_payout(uow, actor=fm2, payout_id=p.id)
                uow.commit()

    def settle(paid_on):
        with db.reading() as s:
            owed = settlement.obligations(s)
        for o in owed:
            payer = Actor("Ekonomienheten", "FUND_MANAGER")
            with db.uow() as uow:
                settlement.record_payment(uow, actor=payer, debtor_id=o.debtor_id, creditor_id=o.creditor_id,
                                          contract_id=o.contract_id, amount=m.from_minor(o.outstanding_minor, o.currency),
                                          paid_on=paid_on, reference=f"Utbetalning {paid_on:%Y-%m}")
                uow.commit()

    pay_period(H1)
    settle(date(2025, 8, 15))
    # an audit finds one paid attendance claim false: the next payout claws it back
    false_claim = next(e for e in paid_first if e.metric_code == "ATTENDANCE")
    with db.uow() as uow:
        ev.invalidate_evidence(uow, actor=verify_actor, evidence_id=false_claim.id,
                               reason="Närvarolistan visade sig vara efterkonstruerad")
        sanctions.issue_sanction(uow, actor=fm, contract_id=school.id, level="WARNING",
                                 reason="Brister i närvarorapporteringen vt 2025")
        uow.commit()
    pay_period(H2)
    settle(date(2026, 2, 15))
    # Gävle ends its contract from 30 June 2026: what was achieved before stays payable. The fund
    # has dual control, so Frida asks for the termination and Gustav approves it.
    with db.uow() as uow:
        request = change_requests.submit(uow, actor=fm, kind="TERMINATE_CONTRACT", contract_id=recon.id,
                                         effective_date=min(today, date(2026, 6, 30)),
                                         reason="Verksamheten tas över av Kriminalvården", today=today)
        change_requests.approve_change_request(uow, actor=fm2, change_request_id=request.id)
        uow.commit()
    _impact_bond(db, fm, care, investor)


def _impact_bond(db: Database, fm: Actor, contract, investor) -> None:
    """Malmö's care-days contract is an impact bond: a senior and a subordinate tranche pre-finance
    the non-profit provider and are repaid out of its outcome payments, one distribution a half-year."""
    from ledger import investments as inv
    with db.uow() as uow:
        for tranche, principal, cap in (("SENIOR", "4000000.00", "0.20"), ("SUBORDINATE", "1000000.00", "0.50")):
            x = inv.create_investment(uow, actor=fm, contract_id=contract.id, investor_id=investor.id, tranche=tranche,
                                      principal=sek(principal), return_cap=Decimal(cap))
            inv.record_drawdown(uow, actor=fm, investment_id=x.id, amount=sek(principal), paid_on=START,
                                reference=f"Avrop {tranche.lower()} tranch")
        uow.commit()
    for up_to, paid_on in ((date(2025, 8, 31), date(2025, 9, 30)), (date(2026, 2, 28), None)):
        with db.uow() as uow:
            d = inv.distribute_receipts(uow, actor=fm, contract_id=contract.id, up_to=up_to)
            owed = sum(x.amount_minor for x in d.lines if x.kind != "RESIDUAL")
            if paid_on is not None:  # the provider pays the investor what the first one made due
                settlement.record_payment(uow, actor=fm, debtor_id=contract.provider_id, creditor_id=investor.id,
                                          contract_id=contract.id, amount=m.from_minor(owed, "SEK"), paid_on=paid_on,
                                          reference="Återbetalning investerare")
            uow.commit()


def _tokens(db: Database) -> list[DemoToken]:
    from ledger.models import Party
    with db.reading() as s:
        by_role = {}
        for p in s.execute(select(Party).order_by(Party.id)).scalars():
            by_role.setdefault(p.role, (p.id, p.name))
    wanted = [("ADMIN", "Ada Admin", None), ("FUND_MANAGER", "Frida Fondförvaltare", None),
              ("FUND_MANAGER", "Gustav Granskare", None), ("MUNICIPALITY", "Maja på Umeå kommun", "MUNICIPALITY"),
              ("PROVIDER", "Pia på Skolframgång", "PROVIDER"), ("VERIFIER", "Vera Verifierare", "VERIFIER"),
              ("AUDITOR", "Anders Revisor", None), ("INVESTOR", "Ivar på Sociala Utfallsinvesteringar", "INVESTOR")]
    out = []
    with db.uow() as uow:
        for role, name, party_role in wanted:
            party = by_role.get(party_role) if party_role else None
            issued = tokens.create_token(uow, actor=SYSTEM, name=name, role=role, party_id=party[0] if party else None)
            out.append(DemoToken(role, name, party[1] if party else None, issued.token))
        uow.commit()
    return out
