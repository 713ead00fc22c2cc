"""registers, staff, register sessions, overrides and the audit log

The audit log is append-only in the database itself: a trigger refuses every UPDATE, and every
DELETE but the retention purge's, which says so with `SET LOCAL omnitill.audit_purge = 'on'`.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

NOW = sa.text("now()")


def _created() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False)


def upgrade() -> None:
    op.create_table(
        "registers",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("merchant_id", sa.Text(), sa.ForeignKey("merchants.id"), nullable=False),
        sa.Column("location_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("credential_hash", sa.LargeBinary(), nullable=True),
        _created(),
        sa.Column("paired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("request_id", sa.Text(), nullable=True),
    )
    op.create_index("registers_credential", "registers", ["credential_hash"], unique=True)
    op.create_index("registers_request", "registers", ["merchant_id", "request_id"], unique=True)
    op.create_index("registers_location", "registers", ["merchant_id", "location_id"])

    op.create_table(
        "register_pairing_codes",
        sa.Column("code_hash", sa.LargeBinary(), primary_key=True),
        sa.Column("merchant_id", sa.Text(), sa.ForeignKey("merchants.id"), nullable=False),
        sa.Column("register_id", sa.Text(), sa.ForeignKey("registers.id"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        _created(),
        sa.Column("request_id", sa.Text(), nullable=True),
    )
    op.create_index(
        "pairing_codes_request",
        "register_pairing_codes",
        ["merchant_id", "request_id"],
        unique=True,
    )

    op.create_table(
        "staff_roles",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("merchant_id", sa.Text(), sa.ForeignKey("merchants.id"), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("permissions", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("discount_limit_bps", sa.Integer(), nullable=False),
        _created(),
        sa.Column("request_id", sa.Text(), nullable=True),
    )
    op.create_index("staff_roles_name", "staff_roles", ["merchant_id", "name"], unique=True)
    op.create_index(
        "staff_roles_request", "staff_roles", ["merchant_id", "request_id"], unique=True
    )

    op.create_table(
        "staff_members",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("merchant_id", sa.Text(), sa.ForeignKey("merchants.id"), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("location_ids", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("pin_hash", sa.LargeBinary(), nullable=False),
        sa.Column("pin_salt", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("failed_pin_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        _created(),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("request_id", sa.Text(), nullable=True),
    )
    op.create_index(
        "staff_members_request", "staff_members", ["merchant_id", "request_id"], unique=True
    )

    op.create_table(
        "register_sessions",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("merchant_id", sa.Text(), sa.ForeignKey("merchants.id"), nullable=False),
        sa.Column("register_id", sa.Text(), sa.ForeignKey("registers.id"), nullable=False),
        sa.Column("staff_id", sa.Text(), sa.ForeignKey("staff_members.id"), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "register_sessions_open",
        "register_sessions",
        ["register_id"],
        unique=True,
        postgresql_where=sa.text("ended_at IS NULL"),
    )

    op.create_table(
        "overrides",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("merchant_id", sa.Text(), sa.ForeignKey("merchants.id"), nullable=False),
        sa.Column("register_id", sa.Text(), sa.ForeignKey("registers.id"), nullable=False),
        sa.Column("session_id", sa.Text(), sa.ForeignKey("register_sessions.id"), nullable=False),
        sa.Column("permission", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.Text(), nullable=False),
        sa.Column("approved_by", sa.Text(), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used_by_request", sa.Text(), nullable=True),
    )
    op.create_index("overrides_session", "overrides", ["session_id", "permission"])

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("merchant_id", sa.Text(), sa.ForeignKey("merchants.id"), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("staff_id", sa.Text(), nullable=True),
        sa.Column("approved_by", sa.Text(), nullable=True),
        sa.Column("register_id", sa.Text(), nullable=True),
        sa.Column("credential_id", sa.Text(), nullable=True),
        sa.Column("resource_type", sa.Text(), nullable=True),
        sa.Column("resource_id", sa.Text(), nullable=True),
        sa.Column("details", postgresql.JSONB(), nullable=False),
        sa.Column("request_id", sa.Text(), nullable=True),
    )
    op.create_index("audit_log_merchant", "audit_log", ["merchant_id", "id"])
    op.create_index(
        "audit_log_once", "audit_log", ["merchant_id", "request_id", "action"], unique=True
    )
    op.execute(
        """
        CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF TG_OP = 'DELETE'
             AND coalesce(current_setting('omnitill.audit_purge', true), '') = 'on' THEN
            RETURN OLD;
          END IF;
          RAISE EXCEPTION 'the audit log is append-only (% refused)', TG_OP;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
    )

    op.create_table(
        "merchant_settings",
        sa.Column("merchant_id", sa.Text(), sa.ForeignKey("merchants.id"), primary_key=True),
        sa.Column("audit_retention_days", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("merchant_settings")
    op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
    op.execute("DROP FUNCTION audit_log_append_only()")
    op.drop_table("audit_log")
    op.drop_table("overrides")
    op.drop_table("register_sessions")
    op.drop_table("staff_members")
    op.drop_table("staff_roles")
    op.drop_table("register_pairing_codes")
    op.drop_table("registers")
