"""the stored-answer secret check reads the answer's own fields, not any bytes of it

Revision ID: 0022
Revises: 0021

The check refused any stored answer holding `"client_secret":"`, `"key":"pos_test_` or
`"secret_redacted":false` anywhere in its bytes. So a merchant's own metadata (an order's
`{"client_secret": "…"}`) kept every answer showing it from being stored, and so did every
checkout, tender and confirm that sold no gift card: their answers say `secret_redacted: false`
with no code in them. Their retries ran again instead of replaying. The secrets `redact`
blanks are fields of the answer itself (the top level of a JSON object), so that is where the
check looks now: an API key or a client secret, or an answer not redacted whose shown-once
field holds something. An answer that is not a JSON object is still searched byte by byte, as
before. Self-contained on purpose, as 0005 is.
"""

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

# Run through op.execute, whose text() would read `:false` as a parameter: escaped.
BYTES = (
    'position(\'"key":"pos_test_\'::bytea in body) > 0'
    ' OR position(\'"key":"pos_live_\'::bytea in body) > 0'
    ' OR position(\'"client_secret":"\'::bytea in body) > 0'
    " OR position('\"secret_redacted\"\\:false'::bytea in body) > 0"
)
BEFORE = (
    'position(\'"key":"pos_test_\'::bytea in body) = 0'
    ' AND position(\'"key":"pos_live_\'::bytea in body) = 0'
    ' AND position(\'"client_secret":"\'::bytea in body) = 0'
    " AND position('\"secret_redacted\":false'::bytea in body) = 0"
)
# The fields routes show a secret in once (their `x-shown-once`): a test checks every field a
# route declares is here.
SHOWN_ONCE = (
    "api_key", "client_secret", "code", "codes", "credential", "gift_cards", "key", "secret",
    "store_credit",
)  # fmt: skip
FUNCTION = f"""
CREATE FUNCTION stored_answer_shows_a_secret(body bytea) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    answer json;
    field text;
    value json;
BEGIN
    IF body IS NULL THEN
        RETURN false;
    END IF;
    BEGIN
        answer := convert_from(body, 'UTF8')::json;
        IF json_typeof(answer) = 'object' THEN
            IF coalesce(answer ->> 'key', '') LIKE 'pos\\_test\\_%'
                OR coalesce(answer ->> 'key', '') LIKE 'pos\\_live\\_%'
                OR coalesce(answer ->> 'client_secret', '') <> '' THEN
                RETURN true;
            END IF;
            -- An answer not redacted that shows a secret: one of its shown-once fields holds
            -- something. Not redacted and holding none (a sale that sold no gift card) is kept.
            IF coalesce((answer -> 'secret_redacted')::text, '') = 'false' THEN
                FOREACH field IN ARRAY ARRAY['{"', '".join(SHOWN_ONCE)}'] LOOP
                    value := answer -> field;
                    IF value IS NOT NULL AND json_typeof(value) <> 'null'
                        AND NOT (json_typeof(value) = 'array' AND json_array_length(value) = 0)
                        AND NOT (json_typeof(value) = 'string' AND value #>> '{{}}' = '') THEN
                        RETURN true;
                    END IF;
                END LOOP;
            END IF;
            RETURN false;
        END IF;
    EXCEPTION WHEN others THEN
        -- Not UTF-8 or not JSON: no fields to read, the bytes are searched below.
        NULL;
    END;
    RETURN {BYTES};
END
$$
"""


def upgrade() -> None:
    op.execute(FUNCTION)
    op.drop_constraint("idempotency_keys_no_secrets", "idempotency_keys", type_="check")
    op.create_check_constraint(
        "idempotency_keys_no_secrets", "idempotency_keys", "NOT stored_answer_shows_a_secret(body)"
    )


def downgrade() -> None:
    # An answer kept since that shows the old check's bytes (a merchant's metadata) is no
    # longer kept: its retry runs again, as it did before this revision.
    op.execute("DELETE FROM idempotency_keys WHERE " + BYTES)  # noqa: S608 (constants only)
    op.drop_constraint("idempotency_keys_no_secrets", "idempotency_keys", type_="check")
    op.create_check_constraint("idempotency_keys_no_secrets", "idempotency_keys", BEFORE)
    op.execute("DROP FUNCTION stored_answer_shows_a_secret(bytea)")
