"""Create the demo tenants and users (idempotent) and print how to reach them.

Demo tokens are derived from SECRET_KEY and the username, so re-running prints the
same tokens and writes nothing new. Only for demos: real tokens are random."""

from __future__ import annotations

import hashlib
import hmac
import json

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from tenants.models import ApiToken, Membership, Role, Tenant
from tenants.services import api_token_create, membership_set

DEMO_PASSWORD = "demo-password-123"
DEMO_TENANTS = [("acme", "Acme Corp"), ("globex", "Globex Corporation")]
DEMO_ROLES = [
    ("admin", Role.ADMIN),
    ("reviewer1", Role.REVIEWER),
    ("reviewer2", Role.REVIEWER),
    ("senior", Role.SENIOR_REVIEWER),
    ("viewer", Role.VIEWER),
    ("agent", Role.AGENT),
]


def demo_token_key(username: str) -> str:
    digest = hmac.new(settings.SECRET_KEY.encode(), f"demo-token:{username}".encode(), hashlib.sha256).hexdigest()
    return f"demo{digest[:36]}"


class Command(BaseCommand):
    help = "Create demo tenants acme and globex with an admin, two reviewers, a senior reviewer, a viewer and an agent."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="Print tenants, users, roles and API tokens as JSON.")

    @transaction.atomic
    def handle(self, *args, **options):
        User = get_user_model()
        report = {"tenants": []}
        for slug, name in DEMO_TENANTS:
            tenant, _ = Tenant.objects.get_or_create(slug=slug, defaults={"name": name})
            users = []
            for suffix, role in DEMO_ROLES:
                username = f"{slug}-{suffix}"
                user, created = User.objects.get_or_create(username=username, defaults={"email": f"{username}@example.com"})
                if created:
                    user.set_password(DEMO_PASSWORD)
                    user.is_staff = role != Role.AGENT  # reviewers and admins use the Django admin
                    user.save()
                finance = suffix == "reviewer2"
                if not Membership.objects.filter(tenant=tenant, user=user, role=role, finance_approver=finance).exists():
                    membership_set(tenant=tenant, user=user, role=role, finance_approver=finance)
                key = demo_token_key(username)
                if not ApiToken.objects.filter(key_hash=ApiToken.hash_key(key)).exists():
                    api_token_create(user=user, name="demo", key=key)
                users.append({"username": username, "role": role.value, "token": key})
            report["tenants"].append({"slug": slug, "name": tenant.name, "users": users})
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2))
        else:
            for tenant in report["tenants"]:
                self.stdout.write(f"{tenant['slug']}:")
                for user in tenant["users"]:
                    self.stdout.write(f"  {user['username']:<20} {user['role']:<16} token {user['token']}")
            self.stdout.write(f"Every demo user's password: {DEMO_PASSWORD}")
