import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    """Every personal grant now names its membership (filled by the previous migration)."""

    dependencies = [
        ("contracts", "0004_drive_recovery"),
    ]

    operations = [
        migrations.AlterField(
            model_name="contractuserpermission",
            name="membership",
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="+", to="tenants.membership"),
        ),
    ]
