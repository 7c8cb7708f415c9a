import hashlib
import json

from django.db import migrations, models


def _digest(value) -> str:
    # Frozen copy of contracts.graph.runner.interrupt_digest as of this migration.
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def backfill(apps, schema_editor) -> None:
    """Existing tasks get the digest of the payload they show (the interrupt value, as
    stored when the task was made), so the resume check treats them like new ones."""
    ReviewTask = apps.get_model("reviews", "ReviewTask")
    batch = []
    for task in ReviewTask.objects.filter(payload_digest="").only("pk", "payload").iterator(chunk_size=2000):
        task.payload_digest = _digest(task.payload)
        batch.append(task)
        if len(batch) == 2000:
            ReviewTask.objects.bulk_update(batch, ["payload_digest"])
            batch = []
    if batch:
        ReviewTask.objects.bulk_update(batch, ["payload_digest"])


class Migration(migrations.Migration):

    dependencies = [
        ('reviews', '0007_review_time_policies_comments_webhooks'),
    ]

    operations = [
        migrations.AddField(
            model_name='reviewtask',
            name='payload_digest',
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
