import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    """created_at is set by the writer (reviews.events), no longer by auto_now_add: the
    column is the same, so only the model state changes (SQLite would otherwise copy the
    whole table to alter nothing)."""

    dependencies = [
        ("reviews", "0008_review_task_payload_digest"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="queueevent",
                    name="created_at",
                    field=models.DateTimeField(default=django.utils.timezone.now, editable=False),
                ),
            ],
        ),
    ]
