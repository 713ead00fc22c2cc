"""gift card activities of a payment tender reference the payment, not the processor key

A gift card tender's redemption, the rest given back by a void and a payment's refund to the
card were written with `reference` the payment service's processor idempotency key
(`<merchant id>/<request id>...`): ids of requests no merchant sees, shown in the card's
activities and events. New ones name the payment (`TenderProcessor`'s `payment_id`); this
names the payment on those written before, found by the key each tender call kept
(`gift_card_tender_calls`) and the payment, operation (a void) or refund asked under it.
Activities of the card's own routes (a load, a redemption, a refund to the card: the
merchant's own reference) have no tender call under their reference and are not touched.

Revision ID: 0020
Revises: 0019
"""

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


# Keys compared byte for byte (`refunds.request_key` is COLLATE "C", the others not).
UPGRADE = """
WITH asked (merchant_id, key, payment_id) AS (
    SELECT merchant_id, request_key COLLATE "C", id FROM payments WHERE request_key <> ''
    UNION ALL
    SELECT merchant_id, request_key COLLATE "C", payment_id FROM payment_operations
    UNION ALL
    SELECT merchant_id, request_key COLLATE "C", payment_id FROM refunds
)
UPDATE gift_card_activities AS a
SET reference = asked.payment_id
FROM gift_card_tender_calls AS c
JOIN asked ON asked.merchant_id = c.merchant_id AND asked.key = c.key COLLATE "C"
WHERE a.merchant_id = c.merchant_id
  AND a.gift_card_id = c.gift_card_id
  AND a.reference COLLATE "C" = c.key COLLATE "C"
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    # The keys are not put back: a reference is what the activity is shown with, and the
    # payment's id is a true one for any version of the service.
    pass
