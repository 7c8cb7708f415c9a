"""The triggers that tell queue relays a right to follow a queue may have ended
(migration reviews 0010): which changes notify, whatever makes them."""

from __future__ import annotations

import psycopg
import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from config.postgresql.params import psycopg_params
from reviews.events import ACCESS_CHANGED_CHANNEL
from tenants.models import ApiToken, Membership, Role, Tenant
from tests.support import postgresql_only

pytestmark = [pytest.mark.django_db(transaction=True), postgresql_only]


def _notified(change) -> int:
    """How many access notifications a listener receives for `change`, committed."""
    with psycopg.connect(**psycopg_params(), autocommit=True) as listener:
        listener.execute(f"LISTEN {ACCESS_CHANGED_CHANNEL}")
        change()
        return len(list(listener.notifies(timeout=0.5)))


def test_each_change_that_can_end_a_right_notifies(acme):
    viewer = acme.viewer.user
    changes = [
        lambda: ApiToken.objects.filter(user=viewer).update(revoked_at=timezone.now()),
        lambda: Membership.objects.filter(user=viewer, tenant=acme.tenant).update(role=Role.AGENT),
        lambda: get_user_model().objects.filter(pk=viewer.pk).update(is_active=False),
        lambda: ApiToken.objects.filter(user=acme.reviewer.user).delete(),
        lambda: Membership.objects.filter(user=acme.reviewer2.user).delete(),
        lambda: get_user_model().objects.filter(pk=acme.senior.user.pk).delete(),
    ]
    assert [_notified(change) for change in changes] == [1] * len(changes)


def test_changes_that_cannot_end_a_right_do_not_notify(acme):
    viewer = acme.viewer.user
    changes = [
        lambda: ApiToken.objects.filter(user=viewer).update(name="renamed"),
        lambda: Membership.objects.filter(user=viewer).update(finance_approver=True),
        lambda: get_user_model().objects.filter(pk=viewer.pk).update(last_login=timezone.now()),
        lambda: Tenant.objects.filter(pk=acme.tenant.pk).update(event_seq=acme.tenant.event_seq + 1),
    ]
    assert [_notified(change) for change in changes] == [0] * len(changes)


def test_a_change_rolled_back_does_not_notify(acme):
    from django.db import transaction

    def rolled_back():
        with pytest.raises(RuntimeError), transaction.atomic():
            ApiToken.objects.filter(user=acme.viewer.user).update(revoked_at=timezone.now())
            raise RuntimeError

    assert _notified(rolled_back) == 0
