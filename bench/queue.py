"""Review-queue latency at scale: the queue API over 1,000,000 review tasks.

Seeds its own PostgreSQL database (`bench_queue`, dropped and recreated; migrated with
`manage.py migrate`): 1,000 tenants with their team groups and members, and a contract
per 1-2 review tasks with realistic status, kind, risk, claim and date mixes, plus the
routing grants (every task granted to its team's group, as reviews.services routes it)
and a few per-user and per-thread grants. Tasks are skewed across tenants the way a
SaaS is: one large tenant (`--big-share`, default 10% of all tasks), where the measured
reviewer works, and a long tail.

Then it starts `uvicorn config.asgi:application` on that database and times, over HTTP
(one client, requests one after another), the reviewer's queue pages:

  first page          ?status=pending
  filtered            ?status=pending&risk_min=0.7&risk_max=0.95&kind=legal
  filtered+actionable the same with &actionable=true (the EXISTS permission filter)
  deep cursor         ?status=pending, after following next_cursor --deep-pages times
  sparse actionable   ?status=pending&kind=finance&actionable=true for a reviewer who
                      is not a finance approver: few rows match, the worst case of the
                      permission filter

and prints, for each, the SQL the API ran (captured in-process through the same view
with Django's test Client) with its EXPLAIN (ANALYZE, BUFFERS), so index use is visible.

    .venv/bin/python bench/queue.py                   # 1,000,000 tasks
    .venv/bin/python bench/queue.py --tasks 50000     # a sanity run
    .venv/bin/python bench/queue.py --keep-db ; .venv/bin/python bench/queue.py --reuse
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(_HERE)
# `python bench/queue.py` puts bench/ first on sys.path, where this very file would
# shadow the standard library's `queue` module (imported by threading pools, httpx).
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, REPO_DIR)

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from datetime import datetime, timedelta, timezone  # noqa: E402
from itertools import accumulate, combinations  # noqa: E402
from pathlib import Path  # noqa: E402

import httpx  # noqa: E402
import psycopg  # noqa: E402

from bench._common import (  # noqa: E402
    PYTHON,
    REPO,
    database_drop,
    database_recreate,
    free_port,
    git_commit,
    http_wait_ready,
    interrupt_on_sigterm,
    machine,
    percentile,
    pg_url,
    product_env,
    rss_mib,
)

BIG_SLUG = "bench-big"
SEED_VERSION = 1  # bump when the seeded data changes shape, so --reuse reseeds

# --- Small helpers (those the bench scripts share are in bench/_common.py) ----------


def admin_execute(base: str, sql: str, params: list | None = None):
    with psycopg.connect(pg_url(base, "postgres"), autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else None


# --- What a contract looks like -----------------------------------------------------
# Texts built from clauses that fire the analyser's rules, run through the product's own
# analyser, so scores, findings and payments are exactly what the graph would produce
# (and risk scores take the few dozen discrete values real ones do: many ties).

CLAUSES = {
    "uncapped_liability": "Supplier shall have unlimited liability for any breach.",
    "broad_indemnification": "Customer shall indemnify Supplier against any and all claims arising from the services.",
    "unilateral_termination": "Supplier may terminate this agreement at any time without cause.",
    "penalty_clause": "Late delivery incurs a penalty of USD 1,000 per day.",
    "auto_renewal": "This agreement renews automatically each year.",
}
GOVERNING_LAW = "This agreement is governed by the laws of England."
SMALL_PAYMENT = "Customer shall pay EUR 20,000 per year."
LARGE_PAYMENT = "Customer shall pay USD 250,000 within 30 days of delivery."
FILLER = "The parties shall cooperate in good faith on the services described in Schedule 1. "
PREVIEW_CHARS = 200


def contract_variants(contract_chars: int) -> dict[str, list[dict]]:
    """Every combination of risky clauses, with a small or a large payment, analysed and
    sorted into the review paths the graph would take."""
    from contracts.graph.analyzer import analyze_text
    from contracts.graph.decisions import DECISION_SCHEMAS, OPTIONS

    legal_schema, approval_schema = DECISION_SCHEMAS["legal"], DECISION_SCHEMAS["finance"]
    paths: dict[str, list[dict]] = {"legal": [], "finance": [], "legal_finance": [], "critical": []}
    names = list(CLAUSES) + ["missing_governing_law"]
    for size in range(len(names) + 1):
        for fired in combinations(names, size):
            for large in (False, True):
                parts = ["SERVICES AGREEMENT."] + [CLAUSES[n] for n in fired if n in CLAUSES]
                if "missing_governing_law" not in fired:
                    parts.append(GOVERNING_LAW)
                parts.append(LARGE_PAYMENT if large else SMALL_PAYMENT)
                text = " ".join(parts) + " "
                text += FILLER * max(0, (contract_chars - len(text)) // len(FILLER))
                analysis = analyze_text(text)
                score = analysis.risk_score
                big = [p for p in analysis.payments if p["amount"] >= 100_000]
                variant = {"text": text, "score": score, "findings": analysis.findings, "payments": analysis.payments}
                preview = text[:PREVIEW_CHARS]
                recommendation = ("CRITICAL RISK - legal review and independent sign-off required" if score >= 0.9
                                  else "HIGH RISK - Legal review required")
                variant["legal_payload"] = json.dumps({
                    "kind": "legal", "contract_preview": preview, "risk_score": score, "findings": analysis.findings,
                    "recommendation": recommendation, "options": OPTIONS["legal"]})
                variant["finance_payload"] = json.dumps({
                    "kind": "finance", "contract_preview": preview, "risk_score": score, "payments": big,
                    "max_payment": analysis.max_payment, "finance_limit": 100000.0,
                    "recommendation": "Payment commitment at or above the finance limit - finance approval required",
                    "options": OPTIONS["finance"]})
                variant["signoff_payload"] = {
                    "kind": "signoff", "contract_preview": preview, "risk_score": score, "findings": analysis.findings,
                    "recommendation": "Critical risk approved by legal - a second, different reviewer must sign off",
                    "options": OPTIONS["signoff"]}
                variant["findings_json"] = json.dumps(analysis.findings)
                variant["payments_json"] = json.dumps(analysis.payments)
                if score >= 0.9 and not large:
                    paths["critical"].append(variant)
                elif score > 0.7:
                    paths["legal_finance" if large else "legal"].append(variant)
                elif large:
                    paths["finance"].append(variant)
    assert all(paths.values()), {k: len(v) for k, v in paths.items()}
    return paths, json.dumps(legal_schema), json.dumps(approval_schema)


# Share of contracts taking each review path (legal only, finance only, both in
# parallel, critical: legal then a second sign-off). About 1.3 tasks per contract.
PATH_WEIGHTS = [("legal", 0.50), ("finance", 0.20), ("legal_finance", 0.15), ("critical", 0.15)]
# Contract states: still waiting for a reviewer, closed by a cancel, decided.
STATE_WEIGHTS = [("open", 0.20), ("cancelled", 0.05), ("done", 0.75)]

TENANT_TEAMS = ("reviewers", "senior", "finance")
# Per tenant: (username suffix, role, finance approver, teams) as tenants.services sets them.
TENANT_PEOPLE = [
    ("admin", "admin", False, ()),
    ("reviewer", "reviewer", False, ("reviewers",)),
    ("senior", "senior_reviewer", False, ("reviewers", "senior")),
    ("finance", "reviewer", True, ("reviewers", "finance")),
    ("agent", "agent", False, ()),
]


def bench_token_key(seed: int) -> str:
    # Deterministic, so --reuse finds the token it seeded before (only its hash is stored).
    return "benchq" + hashlib.sha256(f"bench-queue-token:{seed}".encode()).hexdigest()[:34]


# --- Seeding ------------------------------------------------------------------------


def seed_people(*, tenants: int, seed: int) -> dict:
    """Tenants, team groups, members and the measured reviewer's token, through the ORM
    (bulk for the tail; the product's own services for the measured tenant)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import transaction

    from tenants.models import Membership, Tenant, TenantGroup
    from tenants.services import api_token_create, membership_set

    User = get_user_model()
    info: dict = {"tenants": []}
    with transaction.atomic():
        big = Tenant.objects.create(slug=BIG_SLUG, name="Bench Big")
        people = {}
        for suffix, role, finance, _ in TENANT_PEOPLE:
            user = User.objects.create_user(f"{BIG_SLUG}-{suffix}")
            membership_set(tenant=big, user=user, role=role, finance_approver=finance)
            people[suffix] = user.pk
        reviewer = User.objects.get(pk=people["reviewer"])
        api_token_create(user=reviewer, name="bench", key=bench_token_key(seed))
        groups = {tg.team: tg.group_id for tg in TenantGroup.objects.filter(tenant=big)}
        info["tenants"].append({"id": str(big.pk), "slug": big.slug, "people": people, "groups": groups})

        rest = Tenant.objects.bulk_create(
            [Tenant(slug=f"bench-t{i:04d}", name=f"Bench tenant {i}") for i in range(1, tenants)], batch_size=1000)
        group_rows = Group.objects.bulk_create(
            [Group(name=f"{t.pk}:{team}") for t in rest for team in TENANT_TEAMS], batch_size=2000)
        group_ids = {}
        tenant_groups = []
        for group in group_rows:
            tenant_id, team = group.name.rsplit(":", 1)
            group_ids[(tenant_id, team)] = group.pk
            tenant_groups.append(TenantGroup(tenant_id=tenant_id, team=team, group_id=group.pk))
        TenantGroup.objects.bulk_create(tenant_groups, batch_size=2000)
        users = User.objects.bulk_create(
            [User(username=f"{t.slug}-{suffix}", password="!") for t in rest for suffix, *_ in TENANT_PEOPLE],
            batch_size=2000)
        memberships, user_groups = [], []
        Through = User.groups.through
        it = iter(users)
        for t in rest:
            people = {}
            for suffix, role, finance, teams in TENANT_PEOPLE:
                user = next(it)
                people[suffix] = user.pk
                memberships.append(Membership(tenant=t, user=user, role=role, finance_approver=finance))
                user_groups += [Through(user_id=user.pk, group_id=group_ids[(str(t.pk), team)]) for team in teams]
            info["tenants"].append({"id": str(t.pk), "slug": t.slug, "people": people,
                                    "groups": {team: group_ids[(str(t.pk), team)] for team in TENANT_TEAMS}})
        Membership.objects.bulk_create(memberships, batch_size=2000)
        Through.objects.bulk_create(user_groups, batch_size=5000)
    return info


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _decision(user_id: int, username: str, at: datetime, task_id: uuid.UUID, verdict: str) -> str:
    amendments = ["Cap liability at twelve months of fees."] if verdict == "amend" else []
    return json.dumps({"decision": verdict, "amendments": amendments, "comment": "", "decided_by": user_id,
                       "decided_by_username": username, "decided_at": at.isoformat(), "task_id": str(task_id)})


# As reviews.policies.task_priority gives it to a task neither due soon nor escalated.
PRIORITY_RISK_WEIGHT = 50


def _digest(payload_json: str) -> str:
    """contracts.graph.runner.interrupt_digest of the payload: what the task shows."""
    canonical = json.dumps(json.loads(payload_json), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


CONTRACT_COLUMNS = ["id", "tenant_id", "title", "text", "thread_id", "status", "risk_score", "findings", "payments",
                    "amendments", "amended_text", "decision_history", "submitted_by_id", "created_at", "updated_at",
                    "completed_at", "last_error", "run_lease_owner", "run_lease_until", "run_attempts", "analysis",
                    "thread_metadata"]
TASK_COLUMNS = ["id", "tenant_id", "contract_id", "thread_id", "interrupt_id", "kind", "payload", "response_schema",
                "risk_score", "status", "claimed_by_id", "claim_expires_at", "due_at", "decision", "decided_by_id",
                "decided_at", "applied_at", "created_at", "updated_at", "payload_digest", "priority", "policy"]


def columns_check(conn: psycopg.Connection, table: str, filled: list[str]) -> None:
    """Fail clearly if the product's schema gained a required column the seeder does
    not fill (or lost one it does), instead of half-seeding."""
    rows = conn.execute(
        "SELECT column_name, is_nullable, column_default FROM information_schema.columns WHERE table_name = %s",
        [table]).fetchall()
    existing = {r[0] for r in rows}
    missing = [r[0] for r in rows if r[1] == "NO" and r[2] is None and r[0] not in filled]
    unknown = [c for c in filled if c not in existing]
    if missing or unknown:
        raise RuntimeError(f"{table}: schema changed; not filled: {missing}, no longer there: {unknown}")


def seed_tasks(*, dsn: str, info: dict, n_tasks: int, big_share: float, weeks: int, contract_chars: int,
               seed: int) -> dict:
    """Contracts and review tasks by COPY, generated contract by contract so every
    task is consistent with its contract (thread id, risk, status, decisions)."""
    rng = random.Random(seed)
    paths, legal_schema, approval_schema = contract_variants(contract_chars)
    path_names, path_cw = zip(*PATH_WEIGHTS)
    path_cw = list(accumulate(path_cw))
    state_names, state_cw = zip(*STATE_WEIGHTS)
    state_cw = list(accumulate(state_cw))
    tenants = info["tenants"]
    # The long tail: tenant i of the rest weighs 1 / i^0.8 (a few mid-size, many small).
    tail_cw = list(accumulate(1 / (i ** 0.8) for i in range(1, len(tenants))))
    usernames = {}
    now = datetime.now(timezone.utc).replace(microsecond=0)
    span = weeks * 7 * 86400
    counts = {"contracts": 0, "tasks": 0}

    def pick_tenant() -> dict:
        if len(tenants) == 1 or rng.random() < big_share:
            return tenants[0]
        return tenants[1 + rng.choices(range(len(tenants) - 1), cum_weights=tail_cw)[0]]

    with psycopg.connect(dsn) as conn:
        columns_check(conn, "contracts_contract", CONTRACT_COLUMNS)
        columns_check(conn, "reviews_reviewtask", TASK_COLUMNS)
        for tenant in tenants:
            for suffix in ("reviewer", "senior", "finance"):
                usernames[tenant["people"][suffix]] = f"{tenant['slug']}-{suffix}"
        # Seeding only: no foreign-key triggers per row (every reference is generated
        # consistent), and no waiting on WAL flushes.
        conn.execute("SET session_replication_role = replica")
        conn.execute("SET synchronous_commit = off")
        # Two COPY streams at once need two connections: contracts on one, tasks on
        # the other, both written as each contract is generated.
        task_conn = psycopg.connect(dsn)
        try:
            task_conn.execute("SET session_replication_role = replica")
            task_conn.execute("SET synchronous_commit = off")
            with conn.cursor().copy(f"COPY contracts_contract ({', '.join(CONTRACT_COLUMNS)}) FROM STDIN") as ccopy, \
                    task_conn.cursor().copy(f"COPY reviews_reviewtask ({', '.join(TASK_COLUMNS)}) FROM STDIN") as tcopy:
                while counts["tasks"] < n_tasks:
                    tenant = pick_tenant()
                    people = tenant["people"]
                    path = path_names[rng.choices(range(len(path_names)), cum_weights=path_cw)[0]]
                    state = state_names[rng.choices(range(len(state_names)), cum_weights=state_cw)[0]]
                    variant = rng.choice(paths[path])
                    contract_id = _uuid(rng)
                    thread_id = f"{tenant['id']}:contract:{contract_id}"
                    # Open contracts are the recent backlog; closed ones spread over the weeks.
                    back = rng.uniform(0, 14 * 86400) if state == "open" else rng.uniform(0, span)
                    created = now - timedelta(seconds=back)
                    tasks = []  # (kind, status, created, decided_at, verdict, decider)

                    def decided(after: datetime) -> datetime:
                        return min(now, after + timedelta(seconds=rng.expovariate(1 / (6 * 3600))))

                    first_kinds = {"legal": ["legal"], "finance": ["finance"], "legal_finance": ["legal", "finance"],
                                   "critical": ["legal"]}[path]
                    t_created = created + timedelta(seconds=rng.uniform(0.05, 2))
                    verdicts = []
                    for kind in first_kinds:
                        if state == "open" and not (path == "critical" and rng.random() < 0.5):
                            tasks.append((kind, "pending", t_created, None, None, None))
                        elif state == "cancelled":
                            tasks.append((kind, "cancelled", t_created, None, None, None))
                        else:
                            r = rng.random()
                            verdict = ("approve" if r < 0.80 else "reject" if r < 0.95 or kind != "legal" else "amend")
                            if path == "critical" and state == "open":
                                verdict = "approve"
                            decider = people["finance"] if kind == "finance" else people["reviewer"]
                            tasks.append((kind, "resolved", t_created, decided(t_created), verdict, decider))
                            verdicts.append(verdict)
                    if path == "critical" and tasks[0][1] == "resolved" and tasks[0][4] == "approve":
                        s_created = tasks[0][3] + timedelta(seconds=rng.uniform(0.05, 2))
                        if state == "open":
                            tasks.append(("signoff", "pending", s_created, None, None, None))
                        else:
                            r = rng.random()
                            verdict = "approve" if r < 0.9 else "reject"
                            tasks.append(("signoff", "resolved", s_created, decided(s_created), verdict, people["senior"]))
                            verdicts.append(verdict)
                    if state == "open":
                        status = "waiting_for_review"
                    elif state == "cancelled":
                        status = "cancelled"
                    elif "reject" in verdicts:
                        status = "rejected"
                    elif "amend" in verdicts:
                        status = "amended"
                    else:
                        status = "approved"
                    last = max((t[3] or t[2]) for t in tasks)
                    completed = last if state != "open" else None
                    history = [{"kind": k, "decision": v, "decided_by": d, "decided_at": at.isoformat()}
                               for k, s, _, at, v, d in tasks if s == "resolved"]
                    ccopy.write_row((
                        contract_id, tenant["id"], f"Services agreement {counts['contracts']}", variant["text"], thread_id,
                        status, variant["score"], variant["findings_json"], variant["payments_json"],
                        "[]", "", json.dumps(history), people["agent"], created, last, completed, "", "", None,
                        0, "{}", "{}",
                    ))
                    counts["contracts"] += 1
                    for kind, task_status, t_at, decided_at, verdict, decider in tasks:
                        task_id = _uuid(rng)
                        if kind == "signoff":
                            payload = dict(variant["signoff_payload"], first_signer={
                                "user_id": people["reviewer"], "username": usernames[people["reviewer"]]})
                            payload = json.dumps(payload)
                        else:
                            payload = variant[f"{kind}_payload"]
                        claimed_by = claim_expires = None
                        if task_status == "pending" and rng.random() < 0.10:
                            # A few live claims, a few expired ones.
                            claimed_by = people["reviewer"] if kind != "finance" else people["finance"]
                            claim_expires = now + timedelta(minutes=rng.uniform(-30, 15))
                        elif task_status == "resolved":
                            claimed_by = decider
                        tcopy.write_row((
                            task_id, tenant["id"], contract_id, thread_id, uuid.UUID(int=rng.getrandbits(128)).hex, kind,
                            payload, legal_schema if kind == "legal" else approval_schema, variant["score"], task_status,
                            claimed_by, claim_expires, t_at + timedelta(hours=24),
                            _decision(decider, usernames[decider], decided_at, task_id, verdict)
                            if task_status == "resolved" else None,
                            decider, decided_at, decided_at, t_at, decided_at or t_at,
                            _digest(payload), round(PRIORITY_RISK_WEIGHT * variant["score"]), "{}",
                        ))
                        counts["tasks"] += 1
            task_conn.commit()
            conn.commit()
        finally:
            task_conn.close()
    return counts


def seed_grants(*, dsn: str, big_tenant_id: str, seed: int) -> dict:
    """The routing grants, derived in the server from the tasks already there (the same
    rule as tenants.routing: legal -> reviewers, finance -> finance, sign-off -> senior;
    nothing to send over the wire), and a few direct grants."""
    with psycopg.connect(dsn) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("SET synchronous_commit = off")
        task_perm = conn.execute(
            "SELECT p.id FROM auth_permission p JOIN django_content_type ct ON ct.id = p.content_type_id"
            " WHERE ct.app_label = 'reviews' AND ct.model = 'reviewtask' AND p.codename = 'resume_reviewtask'").fetchone()[0]
        thread_perm = conn.execute(
            "SELECT p.id FROM auth_permission p JOIN django_content_type ct ON ct.id = p.content_type_id"
            " WHERE ct.app_label = 'contracts' AND ct.model = 'contract' AND p.codename = 'resume_thread'").fetchone()[0]
        team_of_kind = "CASE t.kind WHEN 'legal' THEN 'reviewers' WHEN 'finance' THEN 'finance' ELSE 'senior' END"
        routed = conn.execute(
            "INSERT INTO reviews_reviewtaskgrouppermission (tenant_id, content_object_id, group_id, permission_id)"
            f" SELECT t.tenant_id, t.id, tg.group_id, %s FROM reviews_reviewtask t"
            f" JOIN tenants_tenantgroup tg ON tg.tenant_id = t.tenant_id AND tg.team = {team_of_kind}",
            [task_perm]).rowcount
        conn.execute("SELECT setseed(%s)", [(seed % 1000) / 1000])
        # A few per-user grants: 0.2% of tasks to the tenant's (non-finance) reviewer...
        user_grants = conn.execute(
            "INSERT INTO reviews_reviewtaskuserpermission (tenant_id, content_object_id, user_id, permission_id, membership_id)"
            " SELECT t.tenant_id, t.id, m.user_id, %s, m.id FROM reviews_reviewtask t"
            " JOIN tenants_membership m ON m.tenant_id = t.tenant_id AND m.role = 'reviewer' AND NOT m.finance_approver"
            " WHERE random() < 0.002", [task_perm]).rowcount
        # ...and 2% of the big tenant's finance tasks to the measured reviewer, who is not
        # a finance approver: the "sparse actionable" query finds exactly these.
        user_grants += conn.execute(
            "INSERT INTO reviews_reviewtaskuserpermission (tenant_id, content_object_id, user_id, permission_id, membership_id)"
            " SELECT t.tenant_id, t.id, m.user_id, %s, m.id FROM reviews_reviewtask t"
            " JOIN tenants_membership m ON m.tenant_id = t.tenant_id AND m.role = 'reviewer' AND NOT m.finance_approver"
            " WHERE t.tenant_id = %s AND t.kind = 'finance' AND random() < 0.02"
            " ON CONFLICT DO NOTHING", [task_perm, big_tenant_id]).rowcount
        # A few thread-wide grants (every task of one contract) to a tenant's senior.
        thread_grants = conn.execute(
            "INSERT INTO contracts_contractuserpermission (tenant_id, content_object_id, user_id, permission_id, membership_id)"
            " SELECT c.tenant_id, c.id, m.user_id, %s, m.id FROM contracts_contract c"
            " JOIN tenants_membership m ON m.tenant_id = c.tenant_id AND m.role = 'senior_reviewer'"
            " WHERE random() < 0.001", [thread_perm]).rowcount
        conn.commit()
    return {"routed": routed, "user": user_grants, "thread": thread_grants}


# --- Measuring ----------------------------------------------------------------------

QUERIES = [
    ("first page", {"status": "pending"}),
    ("filtered", {"status": "pending", "risk_min": "0.7", "risk_max": "0.95", "kind": "legal"}),
    ("filtered+actionable", {"status": "pending", "risk_min": "0.7", "risk_max": "0.95", "kind": "legal",
                             "actionable": "true"}),
    ("deep cursor", {"status": "pending"}),
    ("sparse actionable", {"status": "pending", "kind": "finance", "actionable": "true"}),
]


def explain_queries(*, key: str, cursors: dict[str, str]) -> None:
    """Run each request in-process through the same view (Django's test Client),
    capture its SQL, and EXPLAIN (ANALYZE, BUFFERS) the queue query."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from config.postgresql.prepared import statement_sql

    client = Client(headers={"Authorization": f"Token {key}"})
    url = f"/api/v1/tenants/{BIG_SLUG}/reviews/"
    for name, params in QUERIES:
        params = dict(params, **({"cursor": cursors[name]} if name in cursors else {}))
        with CaptureQueriesContext(connection) as captured:
            response = client.get(url, params)
        assert response.status_code == 200, (name, response.status_code, response.content[:300])
        queue_sql = [q["sql"] for q in captured.captured_queries
                     if 'FROM "reviews_reviewtask"' in q["sql"] and " LIMIT " in q["sql"]]
        total_ms = sum(float(q["time"]) for q in captured.captured_queries) * 1000
        print(f"\n=== {name}: {len(captured.captured_queries)} SQL statements in the request"
              f" ({total_ms:.1f} ms in the database, in-process)")
        for q in captured.captured_queries:
            sql = q["sql"]
            if sql.startswith("EXECUTE "):  # a prepared statement (config.postgresql.prepared): what it runs
                sql = f"{sql.split('(')[0]}: {statement_sql(sql)}"
            print(f"    {float(q['time']) * 1000:7.2f} ms  {sql[:110]}")
        if not queue_sql:
            print("    (no queue query captured)")
            continue
        print(f"--- SQL:\n{queue_sql[0]}")
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + queue_sql[0])
            print("--- EXPLAIN (ANALYZE, BUFFERS):")
            for (line,) in cursor.fetchall():
                print("    " + line)
    sys.stdout.flush()


class ConnectionGuard:
    """Watches the PostgreSQL server while the load runs: how many connections the
    bench database holds, and, since the server is shared, stops the run before all
    databases together reach max_connections."""

    def __init__(self, base: str, dbname: str, share: float) -> None:
        self.conn = psycopg.connect(pg_url(base, "postgres"), autocommit=True)
        self.dbname, self.share = dbname, share
        self.limit = int(self.conn.execute("SHOW max_connections").fetchone()[0])
        self.max_mine = 0

    def check(self) -> None:
        total, mine = self.conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE datname = %s) FROM pg_stat_activity"
            " WHERE backend_type = 'client backend'", [self.dbname]).fetchone()
        self.max_mine = max(self.max_mine, mine)
        if total >= self.share * self.limit:
            raise RuntimeError(f"PostgreSQL has {total} of max_connections={self.limit} connections open ({mine} to"
                               f" {self.dbname}): stopped to protect the shared server")

    def close(self) -> None:
        self.conn.close()


def http_measure(*, base_url: str, key: str, samples: int, deep_pages: int, page_size: int | None,
                 guard: ConnectionGuard) -> dict[str, str]:
    url = f"/api/v1/tenants/{BIG_SLUG}/reviews/"
    cursors: dict[str, str] = {}
    extra = {"page_size": str(page_size)} if page_size else {}
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Token {key}"}, timeout=60.0) as http:
        # The deep cursor: follow next_cursor page after page, as a client scrolling would.
        cursor = previous = None
        params = dict(QUERIES[3][1], **extra)
        for page in range(deep_pages):
            r = http.get(url, params=dict(params, **({"cursor": cursor} if cursor else {})))
            r.raise_for_status()
            previous, cursor = cursor, r.json()["next_cursor"]
            if cursor is None:
                # A small seed: measure the queue's last page (the cursor that led to it).
                print(f"  deep cursor: the queue ends at page {page + 1}; measuring that last page instead")
                cursor = previous
                break
        if cursor:
            cursors["deep cursor"] = cursor
        print(f"  HTTP, one client, {samples} samples each after 5 warm-up requests:")
        print(f"    {'query':<22}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'rows':>6}{'bytes':>8}")
        for name, query in QUERIES:
            params = dict(query, **extra, **({"cursor": cursors[name]} if name in cursors else {}))
            times = []
            for i in range(5 + samples):
                if i % 5 == 0:
                    guard.check()
                t = time.perf_counter()
                r = http.get(url, params=params)
                elapsed = time.perf_counter() - t
                if r.status_code != 200:
                    raise RuntimeError(f"{name}: HTTP {r.status_code} {r.text[:300]}")
                if i >= 5:
                    times.append(elapsed)
            rows = len(r.json()["results"])
            print(f"    {name:<22}{percentile(times, 50) * 1000:9.1f}{percentile(times, 99) * 1000:9.1f}"
                  f"{sum(times) / len(times) * 1000:9.1f}{rows:6d}{len(r.content):8d}")
        print(f"  at most {guard.max_mine} connections open to the bench database during the requests"
              " (one client, one request at a time)")
        sys.stdout.flush()
    return cursors


def server_check_alive(proc: subprocess.Popen, log: Path) -> None:
    if proc.poll() is not None:
        raise RuntimeError(f"uvicorn exited with {proc.returncode}; see {log}")


def server_stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass


# --- Main ---------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1_000_000, help="review tasks to seed (default 1,000,000)")
    parser.add_argument("--tenants", type=int, default=1000, help="tenants (default 1000)")
    parser.add_argument("--big-share", type=float, default=0.10,
                        help="share of tasks in the measured tenant (default 0.10)")
    parser.add_argument("--weeks", type=int, default=8, help="created_at spread of closed tasks, weeks (default 8)")
    parser.add_argument("--contract-chars", type=int, default=2000, help="contract text length (default 2000)")
    parser.add_argument("--samples", type=int, default=100, help="timed requests per query (default 100)")
    parser.add_argument("--deep-pages", type=int, default=50, help="next_cursor hops before the deep page (default 50)")
    parser.add_argument("--page-size", type=int, default=None, help="page_size for every query (default: the API's)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server URL, no database")
    parser.add_argument("--db", default="bench_queue", help="database, dropped and recreated (default bench_queue)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15",
                        help="REDIS_URL for the server (default db 15, away from the test suites' db 0)")
    parser.add_argument("--keep-db", action="store_true", help="keep the database (for --reuse)")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse the database a --keep-db run seeded with the same options; implies --keep-db")
    parser.add_argument("--no-explain", action="store_true", help="skip the EXPLAIN output")
    parser.add_argument("--max-connections-share", type=float, default=0.8,
                        help="stop when the PostgreSQL server (all databases) has this share of max_connections"
                             " open, so a shared server stays usable (default 0.8)")
    args = parser.parse_args()
    if args.tasks < 1 or args.tenants < 1 or not 0 < args.big_share <= 1:
        parser.error("--tasks and --tenants must be positive, --big-share in (0, 1]")

    interrupt_on_sigterm()
    dsn = pg_url(args.pg, args.db)
    fingerprint = (f"bench/queue.py v{SEED_VERSION} tasks={args.tasks} tenants={args.tenants} big={args.big_share}"
                   f" weeks={args.weeks} chars={args.contract_chars} seed={args.seed}")
    print(f"bench/queue.py  commit {git_commit()}  {machine()}  {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(f"  {fingerprint}")
    sys.stdout.flush()

    # Django runs in this process too (seeding people, capturing SQL): point it at the
    # bench database before it reads its settings. No REDIS_URL here: a local cache.
    os.environ.update(product_env(database_url=dsn, redis_url=None))
    os.environ.pop("REDIS_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"

    reuse = False
    if args.reuse:
        rows = admin_execute(args.pg, "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                             [args.db])
        reuse = bool(rows) and rows[0][0] == fingerprint
        print(f"  --reuse: {'reusing' if reuse else 'no matching seeded database; seeding'} {args.db}")
    keep = args.keep_db or args.reuse

    server = None
    ok = False
    log_path = Path(tempfile.mkdtemp(prefix="bench_queue_")) / "uvicorn.log"
    try:
        if not reuse:
            database_recreate(args.pg, args.db)
        # A reused database too: it gets the migrations (indexes) added since it was seeded.
        t0 = time.perf_counter()
        migrate = subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v0"], cwd=REPO, env=dict(os.environ),
                                 capture_output=True, text=True, timeout=600)
        if migrate.returncode != 0:
            raise RuntimeError(f"migrate failed:\n{migrate.stderr[-4000:]}")
        print(f"  migrated in {time.perf_counter() - t0:.1f} s")

        import django

        django.setup()

        if not reuse:
            t = time.perf_counter()
            info = seed_people(tenants=args.tenants, seed=args.seed)
            print(f"  {args.tenants} tenants, {len(TENANT_PEOPLE)} members each, team groups: {time.perf_counter() - t:.1f} s")
            sys.stdout.flush()
            t = time.perf_counter()
            counts = seed_tasks(dsn=dsn, info=info, n_tasks=args.tasks, big_share=args.big_share, weeks=args.weeks,
                                contract_chars=args.contract_chars, seed=args.seed)
            print(f"  COPY {counts['tasks']} tasks, {counts['contracts']} contracts: {time.perf_counter() - t:.1f} s")
            sys.stdout.flush()
            t = time.perf_counter()
            grants = seed_grants(dsn=dsn, big_tenant_id=info["tenants"][0]["id"], seed=args.seed)
            print(f"  grants: {grants['routed']} routed to team groups, {grants['user']} per-user,"
                  f" {grants['thread']} per-thread: {time.perf_counter() - t:.1f} s")
            t = time.perf_counter()
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("VACUUM (ANALYZE)")
            print(f"  VACUUM (ANALYZE): {time.perf_counter() - t:.1f} s")
            admin_execute(args.pg, f'COMMENT ON DATABASE "{args.db}" IS ' + "'" + fingerprint.replace("'", "''") + "'")

        with psycopg.connect(dsn, autocommit=True) as conn:
            mix = conn.execute(
                "SELECT status, kind, count(*) FROM reviews_reviewtask GROUP BY 1, 2 ORDER BY 1, 2").fetchall()
            big = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE t.status = 'pending') FROM reviews_reviewtask t"
                " JOIN tenants_tenant tn ON tn.id = t.tenant_id WHERE tn.slug = %s", [BIG_SLUG]).fetchone()
            sizes = conn.execute(
                "SELECT relname, pg_size_pretty(pg_total_relation_size(c.oid)) FROM pg_class c"
                " WHERE relname IN ('reviews_reviewtask', 'contracts_contract', 'reviews_reviewtaskgrouppermission')"
                " ORDER BY 1").fetchall()
            settings_rows = conn.execute(
                "SELECT name, setting, unit FROM pg_settings WHERE name IN"
                " ('shared_buffers', 'work_mem', 'effective_cache_size', 'random_page_cost', 'jit')").fetchall()
        total = sum(r[2] for r in mix)
        print(f"  {total} tasks: " + ", ".join(f"{s}/{k} {c / total:.1%}" for s, k, c in mix))
        print(f"  {BIG_SLUG}: {big[0]} tasks, {big[1]} pending; sizes (with indexes): "
              + ", ".join(f"{n} {s}" for n, s in sizes))
        print("  PostgreSQL: " + ", ".join(f"{n}={s}{u or ''}" for n, s, u in settings_rows))

        key = bench_token_key(args.seed)
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        with open(log_path, "ab") as log:
            server = subprocess.Popen(
                [PYTHON, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(port),
                 "--workers", "1", "--no-access-log", "--log-level", "warning"],
                cwd=REPO, env=product_env(database_url=dsn, redis_url=args.redis), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        http_wait_ready(f"{base_url}/healthz", timeout=60, check_alive=lambda: server_check_alive(server, log_path))
        print(f"  uvicorn pid {server.pid} on {base_url}")
        sys.stdout.flush()
        guard = ConnectionGuard(args.pg, args.db, args.max_connections_share)
        try:
            cursors = http_measure(base_url=base_url, key=key, samples=args.samples, deep_pages=args.deep_pages,
                                   page_size=args.page_size, guard=guard)
        finally:
            guard.close()
        print(f"  uvicorn RSS at the end: {rss_mib(server.pid):.0f} MiB")
        if not args.no_explain:
            explain_queries(key=key, cursors=cursors)
        ok = True
    except (RuntimeError, TimeoutError, subprocess.SubprocessError, psycopg.Error) as exc:
        print(f"  FAILED: {type(exc).__name__}: {exc}")
    finally:
        if server is not None:
            server_stop(server)
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # Django may not be set up yet; nothing to close then
            pass
        if ok and not keep:
            database_drop(args.pg, args.db)
        elif not ok:
            print(f"  kept {args.db} and {log_path} for inspection")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
