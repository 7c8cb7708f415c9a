from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from django.contrib.auth.models import AbstractBaseUser
from rest_framework.test import APIClient

from tenants.models import Role, Tenant
from tests.factories import TenantFactory, member_create


@dataclass
class Member:
    user: AbstractBaseUser
    token: str
    client: APIClient


def _client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


@dataclass
class TenantWorld:
    tenant: Tenant
    admin: Member
    reviewer: Member
    reviewer2: Member
    senior: Member
    viewer: Member
    agent: Member

    @property
    def slug(self) -> str:
        return self.tenant.slug

    def url(self, path: str) -> str:
        return f"/api/v1/tenants/{self.tenant.slug}/{path}"


def _world(slug: str) -> TenantWorld:
    tenant = TenantFactory(slug=slug, name=slug.title())
    members = {}
    for name, role, finance in [
        ("admin", Role.ADMIN, False),
        ("reviewer", Role.REVIEWER, False),
        ("reviewer2", Role.REVIEWER, True),
        ("senior", Role.SENIOR_REVIEWER, False),
        ("viewer", Role.VIEWER, False),
        ("agent", Role.AGENT, False),
    ]:
        user, key = member_create(tenant, role, username=f"{slug}-{name}", finance_approver=finance)
        members[name] = Member(user=user, token=key, client=_client(key))
    return TenantWorld(tenant=tenant, **members)


@pytest.fixture
def acme(db) -> TenantWorld:
    """The tenant under test: an admin, two reviewers (reviewer2 also approves finance),
    a senior reviewer, a viewer, an agent."""
    return _world("acme")


@pytest.fixture
def globex(db) -> TenantWorld:
    """A second tenant, present in every test that checks isolation: it must see nothing of acme."""
    return _world("globex")


@pytest.fixture
def anon() -> APIClient:
    return APIClient()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """Where the browser tests left their screenshots, so CI's log says where to look."""
    from tests.browser import SCREENSHOTS, TAKEN

    if TAKEN:
        terminalreporter.write_line(f"browser screenshots ({len(TAKEN)} this run): {SCREENSHOTS}")


def pytest_configure(config) -> None:
    from django.conf import settings

    # WhiteNoise warns at start-up about a STATIC_ROOT that does not exist yet.
    Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)


@pytest.fixture(scope="session", autouse=True)
def _static_files_unhashed():
    """In-process tests render admin pages without a `collectstatic` first, so they use
    the plain storage; the hashed, compressed one is tested against a real server
    process after a real collectstatic (tests/test_static_files.py)."""
    from django.test import override_settings

    plain = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    with override_settings(STORAGES=plain):
        yield


@pytest.fixture(scope="session", autouse=True)
def _checkpointer_connections_closed(django_db_setup, django_db_blocker):
    """The graph keeps one checkpointer connection per thread, and requests read through
    a pool; close this thread's and the pool before the test database is dropped."""
    yield
    from contracts.graph.runner import contract_graph_close, read_savers_close

    contract_graph_close()
    read_savers_close()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Each world hashes six passwords; PBKDF2 at full strength costs ~0.3 s apiece and
    nothing here tests password hashing."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
