"""Tenant worlds built once per test module, for modules of many small tests that each
run in a rolled-back transaction (the default `db` fixture): building two tenants and
running the graph for their contracts costs far more than the calls under test.

The rows are committed, so they are removed again when the module ends (and any
leftover of an interrupted run is removed before building), letting later modules
build their own `acme` and `globex` through the function-scoped fixtures."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import override_settings

from tenants.models import Membership, Tenant, TenantGroup
from tests.conftest import TenantWorld
from tests.conftest import _world as tenant_world

# Nothing built here tests password hashing; PBKDF2 at full strength costs ~0.3 s a user.
FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _delete(slugs: tuple[str, ...]) -> None:
    tenant_ids = list(Tenant.objects.filter(slug__in=slugs).values_list("pk", flat=True))
    group_ids = list(TenantGroup.objects.filter(tenant_id__in=tenant_ids).values_list("group_id", flat=True))
    user_ids = list(Membership.objects.filter(tenant_id__in=tenant_ids).values_list("user_id", flat=True))
    Tenant.objects.filter(pk__in=tenant_ids).delete()  # cascades to everything tenant-owned
    Group.objects.filter(pk__in=group_ids).delete()
    get_user_model().objects.filter(pk__in=user_ids).delete()


@contextmanager
def committed_worlds(django_db_blocker, build: Callable[[TenantWorld, TenantWorld], Any],
                     slugs: tuple[str, str] = ("acme", "globex")) -> Iterator[Any]:
    """Build the two worlds and whatever `build(first, second)` adds; yield its result."""
    with django_db_blocker.unblock(), override_settings(PASSWORD_HASHERS=FAST_HASHERS):
        _delete(slugs)
        built = build(tenant_world(slugs[0]), tenant_world(slugs[1]))
    try:
        yield built
    finally:
        with django_db_blocker.unblock():
            _delete(slugs)
