from django.conf import settings
from django.db import migrations

CHANNEL = "hitl_access_changed"  # reviews.events.ACCESS_CHANGED_CHANNEL, as it was when written
FUNCTION = "hitl_access_changed"

# (trigger, model, the columns a subscriber's right to follow a queue rests on)
TRIGGERS = [
    ("hitl_access_token", "tenants.ApiToken", ["revoked_at", "user_id"]),
    ("hitl_access_membership", "tenants.Membership", ["role", "tenant_id", "user_id"]),
    ("hitl_access_user", settings.AUTH_USER_MODEL, ["is_active"]),
]


def _triggers(apps, schema_editor, create: bool) -> None:
    """PostgreSQL only: the NOTIFY is what lets a server's queue relay (reviews.relay)
    trust a subscriber check until an access change commits. Triggers, not code in the
    services: a change made in the admin, the shell or plain SQL notifies as well.
    Statement-level: one notification per statement however many rows it touches."""
    if schema_editor.connection.vendor != "postgresql":
        return
    qn = schema_editor.quote_name
    if create:
        schema_editor.execute(
            f"CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$"
            f" BEGIN PERFORM pg_notify('{CHANNEL}', ''); RETURN NULL; END $$"
        )
    for name, label, columns in TRIGGERS:
        table = qn(apps.get_model(label)._meta.db_table)
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {name}_truncate ON {table}")
        if create:
            schema_editor.execute(
                f"CREATE TRIGGER {name} AFTER UPDATE OF {', '.join(qn(c) for c in columns)} OR DELETE ON {table}"
                f" FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()"
            )
            schema_editor.execute(
                f"CREATE TRIGGER {name}_truncate AFTER TRUNCATE ON {table} FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()"
            )
    if not create:
        schema_editor.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}()")


class Migration(migrations.Migration):
    dependencies = [
        ("reviews", "0009_queue_event_created_at_set_by_writer"),
        ("tenants", "0006_audit_langgraph_interfaces"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(
            lambda apps, schema_editor: _triggers(apps, schema_editor, create=True),
            lambda apps, schema_editor: _triggers(apps, schema_editor, create=False),
        ),
    ]
