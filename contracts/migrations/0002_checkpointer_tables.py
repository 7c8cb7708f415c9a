"""Create LangGraph's checkpointer tables. PostgresSaver.setup() uses CREATE INDEX
CONCURRENTLY, which cannot run inside a transaction: hence atomic = False. The setup is
idempotent (it records its own migration versions)."""

from django.db import migrations


def checkpointer_tables_create(apps, schema_editor):
    from contracts.graph.runner import checkpointer_setup

    checkpointer_setup()


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("contracts", "0001_initial")]

    operations = [migrations.RunPython(checkpointer_tables_create, migrations.RunPython.noop, elidable=False)]
