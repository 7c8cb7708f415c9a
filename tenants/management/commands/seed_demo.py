"""Create the demo tenants, users and a few contracts waiting for review (idempotent),
and print how to reach them.

Demo tokens are derived from SECRET_KEY and the username, so re-running prints the
same tokens and writes nothing new. Only for demos: real tokens are random. The demo
contracts are submitted through the same service an agent's API call uses; the task
worker runs their graphs (at once with the immediate task backend), so the queue has
tasks on first login: one legal review, one legal and finance review in parallel, and
one critical contract whose legal approval needs a second, independent sign-off."""

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

FINANCE_APPROVERS = {"reviewer2"}

DEMO_PASSWORD = "demo-password-123"
DEMO_TENANTS = [("acme", "Acme Corp"), ("globex", "Globex Corporation")]
# (title, text): each scored by the rule analyser into the review path in its comment.
DEMO_CONTRACTS = [
    # Legal review: uncapped liability, broad indemnity, termination at will (~0.82).
    ("Cloud hosting MSA", (
        "MASTER SERVICES AGREEMENT. This agreement is governed by the laws of England and Wales.\n"
        "1. Liability. The Supplier shall have unlimited liability for any breach of this agreement.\n"
        "2. Indemnity. The Customer shall indemnify the Supplier against any and all claims arising from the services.\n"
        "3. Termination. The Supplier may terminate this agreement at any time without cause.\n"
        "4. Fees. The Customer shall pay EUR 4,000 per month.\n"
    )),
    # Legal and finance review in parallel: the same risks and a payment above the limit.
    ("Data centre build-out", (
        "CONSTRUCTION AND SERVICES AGREEMENT. This agreement is governed by the laws of Ireland.\n"
        "1. Liability. The Contractor's liability shall not be limited in any way.\n"
        "2. Indemnity. The Client shall indemnify and hold harmless the Contractor against any and all claims.\n"
        "3. Termination. The Contractor may terminate this agreement for convenience at any time.\n"
        "4. Price. The Client shall pay USD 2,400,000 on signature.\n"
    )),
    # Critical risk (every rule fires): legal review, then a four-eyes sign-off.
    ("Exclusive supply deal", (
        "EXCLUSIVE SUPPLY AGREEMENT.\n"
        "1. Liability. The Supplier shall have unlimited liability.\n"
        "2. Indemnity. The Buyer shall indemnify the Supplier against any and all claims, however arising.\n"
        "3. Termination. The Supplier may terminate this agreement at any time for any reason.\n"
        "4. Delivery. Late delivery incurs a penalty of USD 5,000 per day.\n"
        "5. Term. This agreement renews automatically each year.\n"
    )),
]

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
                finance = suffix in FINANCE_APPROVERS
                if not Membership.objects.filter(tenant=tenant, user=user, role=role, finance_approver=finance).exists():
                    membership_set(tenant=tenant, user=user, role=role, finance_approver=finance)
                key = demo_token_key(username)
                if not ApiToken.objects.filter(key_hash=ApiToken.hash_key(key)).exists():
                    api_token_create(user=user, name="demo", key=key)
                users.append({"username": username, "role": role.value, "finance_approver": finance, "token": key})
            contracts = self._demo_contracts(tenant, submitted_by=User.objects.get(username=f"{slug}-agent"))
            report["tenants"].append({"slug": slug, "name": tenant.name, "users": users, "contracts": contracts})
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2))
        else:
            for tenant in report["tenants"]:
                self.stdout.write(f"{tenant['slug']}:")
                for user in tenant["users"]:
                    finance = " (approves finance)" if user["finance_approver"] else ""
                    self.stdout.write(f"  {user['username']:<20} {user['role']:<16} token {user['token']}{finance}")
                for contract in tenant["contracts"]:
                    self.stdout.write(f"  contract {contract['title']!r} {contract['id']}")
            self.stdout.write(f"Every demo user's password: {DEMO_PASSWORD}")

    def _demo_contracts(self, tenant: Tenant, *, submitted_by) -> list[dict]:
        """Submit each demo contract once (by title): a re-run submits nothing."""
        from contracts.models import Contract
        from contracts.services import contract_submit

        existing = dict(Contract.objects.filter(tenant=tenant, title__in=[t for t, _ in DEMO_CONTRACTS])
                        .values_list("title", "pk"))
        contracts = []
        for title, text in DEMO_CONTRACTS:
            contract_id = existing.get(title)
            if contract_id is None:
                contract_id = contract_submit(tenant=tenant, submitted_by=submitted_by, title=title, text=text).pk
            contracts.append({"title": title, "id": str(contract_id)})
        return contracts
