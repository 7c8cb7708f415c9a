from django.db import migrations

CHANNEL = "hitl_tasks_enqueued"  # contracts.worker.CHANNEL, as it was when written
FUNCTION = "hitl_tasks_enqueued"
TRIGGER = "hitl_tasks_enqueued"


def _trigger(apps, schema_editor, create: bool) -> None:
    """PostgreSQL only: a new task row wakes the idle workers (contracts.worker), from the
    enqueuing transaction itself, so the NOTIFY goes out at its commit. A trigger rather
    than a statement after each enqueue: no round trip of its own, and a row written by
    any path wakes them. Statement-level: one notification however many rows."""
    if schema_editor.connection.vendor != "postgresql":
        return
    table = schema_editor.quote_name(apps.get_model("django_tasks_database", "DBTaskResult")._meta.db_table)
    schema_editor.execute(f"DROP TRIGGER IF EXISTS {TRIGGER} ON {table}")
    if create:
        schema_editor.execute(
            f"CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$"
            f" BEGIN PERFORM pg_notify('{CHANNEL}', ''); RETURN NULL; END $$"
        )
        schema_editor.execute(
            f"CREATE TRIGGER {TRIGGER} AFTER INSERT ON {table} FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()"
        )
    else:
        schema_editor.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}()")


class Migration(migrations.Migration):
    dependencies = [
        ("contracts", "0008_thread_before_input_and_runs"),
        ("django_tasks_database", "0021_conditional_partial_index_ordering"),
    ]

    operations = [
        migrations.RunPython(
            lambda apps, schema_editor: _trigger(apps, schema_editor, create=True),
            lambda apps, schema_editor: _trigger(apps, schema_editor, create=False),
        ),
    ]
