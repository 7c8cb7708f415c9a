from django.apps import AppConfig


class ContractsConfig(AppConfig):
    name = "contracts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from contracts import worker  # noqa: F401  (connects the enqueue -> NOTIFY signal)
