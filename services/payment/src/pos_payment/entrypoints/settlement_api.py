"""pos.payment.v1.SettlementService: translates protobuf <-> the settlement report."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from pos.payment.v1 import settlement_pb2 as S
from pos.payment.v1 import settlement_pb2_grpc
from pos_kit.servicer import Servicer, query
from pos_payment.adapters.messages import money
from pos_payment.adapters.repository import PaymentUow
from pos_payment.adapters.settlement import SqlSettlementLedger
from pos_payment.domain.settlement import SettlementReport, Totals
from pos_payment.service.settlement import settlement_report


def _totals(t: Totals, currency: str) -> S.TenderTotals:
    return S.TenderTotals(
        name=t.name,
        captured=money(t.captured, currency),
        captured_count=t.captured_count,
        refunded=money(t.refunded, currency),
        refunded_count=t.refunded_count,
        net=money(t.net, currency),
    )


def report_to_proto(report: SettlementReport) -> S.SettlementReport:
    day = report.day
    c = day.currency
    msg = S.SettlementReport(
        location_id=day.location_id,
        date=day.date.isoformat(),
        time_zone=day.time_zone,
        tenders=[_totals(t, c) for t in report.tenders],
        card_brands=[_totals(t, c) for t in report.card_brands],
        gift_cards_sold=money(report.gift_cards_sold, c),
        gift_cards_sold_count=report.gift_cards_sold_count,
        gift_cards_sold_cash=money(report.gift_cards_sold_cash, c),
        store_credit_issued=money(report.store_credit_issued, c),
        store_credit_issued_count=report.store_credit_issued_count,
        gift_card_sales_undone=money(report.gift_card_sales_undone, c),
        gift_card_sales_undone_count=report.gift_card_sales_undone_count,
        promotional_issued=money(report.promotional_issued, c),
        promotional_issued_count=report.promotional_issued_count,
        gift_cards_redeemed=money(report.gift_cards_redeemed, c),
        tips=money(report.tips, c),
        net=money(report.net, c),
    )
    msg.starts_at.FromDatetime(day.starts_at)
    msg.ends_at.FromDatetime(day.ends_at)
    msg.computed_at.FromDatetime(report.computed_at)
    return msg


class SettlementApi(Servicer[PaymentUow], settlement_pb2_grpc.SettlementServiceServicer):
    @query
    async def GetSettlementReport(
        self, request: S.GetSettlementReportRequest, uow: PaymentUow
    ) -> S.GetSettlementReportResponse:
        report = await settlement_report(
            SqlSettlementLedger(uow.conn, uow.merchant_id),
            request.location_id,
            request.date,
            request.time_zone,
            request.currency,
        )
        return S.GetSettlementReportResponse(report=report_to_proto(report))


def registrar(uow: Callable[[], PaymentUow]) -> Callable[[grpc.aio.Server], None]:
    def register(server: grpc.aio.Server) -> None:
        settlement_pb2_grpc.add_SettlementServiceServicer_to_server(SettlementApi(uow), server)

    return register


SERVICE_NAME = S.DESCRIPTOR.services_by_name["SettlementService"].full_name
