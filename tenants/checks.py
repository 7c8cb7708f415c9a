"""`manage.py check` fails if a model in contracts or reviews escapes the tenancy rule:
it must inherit TenantOwned, and its indexes and unique constraints must start with
`tenant` so every lookup is scoped and every uniqueness is per tenant."""

from django.apps import apps
from django.core import checks
from django.db import models

TENANT_SCOPED_APPS = ("contracts", "reviews")


@checks.register(checks.Tags.models)
def tenant_owned_models_check(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    from tenants.models import TenantOwned

    errors: list[checks.CheckMessage] = []
    for label in TENANT_SCOPED_APPS:
        for model in apps.get_app_config(label).get_models():
            if not issubclass(model, TenantOwned):
                errors.append(
                    checks.Error(f"{model._meta.label} must inherit tenants.models.TenantOwned", obj=model, id="tenants.E001")
                )
                continue
            for field in model._meta.local_fields:
                if field.unique and not field.primary_key:
                    errors.append(
                        checks.Error(
                            f"{model._meta.label}.{field.name} is globally unique; use a UniqueConstraint starting with tenant",
                            obj=model,
                            id="tenants.E004",
                        )
                    )
            for index in model._meta.indexes:
                if not index.fields or index.fields[0].lstrip("-") != "tenant":
                    errors.append(
                        checks.Error(f"{model._meta.label} index {index.name} must start with tenant", obj=model, id="tenants.E002")
                    )
            for constraint in model._meta.constraints:
                if isinstance(constraint, models.UniqueConstraint) and constraint.fields and constraint.fields[0] != "tenant":
                    errors.append(
                        checks.Error(
                            f"{model._meta.label} unique constraint {constraint.name} must start with tenant",
                            obj=model,
                            id="tenants.E003",
                        )
                    )
    return errors
