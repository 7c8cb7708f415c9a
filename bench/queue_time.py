"""Time on the queue: what the timers, webhooks and retention cost.

Creates its own PostgreSQL database (`bench_queue_time`, dropped and recreated, migrated
with `manage.py migrate`), then runs the product's own jobs in this process (Django set
up against that database, the immediate task backend) and prints:

  timers     the reminder, escalation and expiry jobs over --tasks pending tasks spread
             over --tenants tenants, with --due of them due: the candidate scan (with and
             without the `tenant_id IN (...)` form the jobs use) and a whole run, per job
  webhooks   commit -> receiver latency of deliveries through a real scheduler loop to a
             local http.server, with and without a second endpoint that never answers;
             the send time per request; the retry gaps after 500s
  retention  checkpoint rows per thread (by table) for the three shapes of contract, and
             the cost of pruning them

    .venv/bin/python bench/queue_time.py                   # 1,000,000 tasks (~2 min)
    .venv/bin/python bench/queue_time.py --tasks 100000    # a sanity run
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(_HERE)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, REPO_DIR)

import argparse  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402

from bench._common import BENCH_SECRET_KEY, HIGH_RISK_TEXT, PYTHON, REPO, database_drop, database_recreate, pg_url  # noqa: E402

LOW_RISK_TEXT = (
    "NON-DISCLOSURE AGREEMENT. This agreement is governed by the laws of Ireland. "
    "Each party keeps the other's confidential information secret for two years."
)
BOTH_TEXT = HIGH_RISK_TEXT + " Customer shall also pay a one-off fee of USD 500,000."


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def setup(args) -> None:
    url = pg_url(args.pg, args.db)
    database_recreate(args.pg, args.db)
    env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": BENCH_SECRET_KEY, "DJANGO_SETTINGS_MODULE": "config.settings"}
    subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], cwd=REPO, env=env, check=True, timeout=300)
    os.environ.update(DATABASE_URL=url, SECRET_KEY=BENCH_SECRET_KEY, DJANGO_SETTINGS_MODULE="config.settings",
                      TASKS_BACKEND="immediate", LOG_LEVEL="WARNING", REDIS_URL="", WEBHOOK_ALLOW_PRIVATE_URLS="true")
    import django

    django.setup()


# --- Timers ---------------------------------------------------------------------------


def timers(args) -> None:
    from django.db import connection
    from django.utils import timezone

    from tenants.models import Tenant
    from reviews.timers import _due, review_escalations_run, review_expiries_run, review_reminders_send

    # One clock for the seed and the jobs: the seed takes a while at a million rows, and
    # tasks must not fall due while it runs.
    now = timezone.now()
    with connection.cursor() as cur:
        cur.execute("""
            INSERT INTO tenants_tenant (id, slug, name, risk_threshold, finance_limit, critical_risk, signoff_role,
                review_any_clause_finding, review_when_unsure, claim_lease_seconds, review_due_hours,
                checkpoint_retention_days, event_seq, created_at)
            SELECT gen_random_uuid(), 'bench-' || i, 'Bench ' || i, 0.7, 100000, 0.9, 'senior_reviewer', true, true,
                   900, 24, 30, 0, now()
            FROM generate_series(1, %s) AS i""", [args.tenants])
        cur.execute("""
            INSERT INTO contracts_contract (id, tenant_id, title, text, thread_id, status, findings, payments, amendments,
                amended_text, decision_history, analysis, created_at, updated_at, last_error, run_lease_owner, run_attempts)
            SELECT gen_random_uuid(), t.id, 'MSA', 'text', t.id || ':contract:bench', 'waiting_for_review', '[]', '[]', '[]',
                   '', '[]', '{}', now(), now(), '', '', 0
            FROM tenants_tenant t""")
        # Every task pending, its timers spread over the next day; `--due` of them due now.
        cur.execute("""
            INSERT INTO reviews_reviewtask (id, tenant_id, contract_id, thread_id, interrupt_id, kind, payload, risk_score,
                status, priority, due_at, remind_at, escalate_at, expire_at, policy, created_at, updated_at)
            SELECT gen_random_uuid(), c.tenant_id, c.id, c.thread_id, md5(i::text), 'legal', '{"risk_score": 0.8}', 0.8,
                   'pending', 40, now() + interval '1 day', w, w, w,
                   '{"escalation_team": "senior", "escalation_keeps_grants": true, "expiry_action": "nothing",
                     "expiry_reason": "bench"}',
                   now(), now()
            FROM (SELECT i, CASE WHEN i <= %s THEN %s - interval '1 minute'
                                 ELSE %s + interval '1 minute' + (random() * interval '1 day') END AS w,
                         (i %% %s) AS slot FROM generate_series(1, %s) AS i) g
            JOIN (SELECT id, tenant_id, thread_id, row_number() OVER () - 1 AS slot FROM contracts_contract) c
              ON c.slot = g.slot""", [args.due, now, now, args.tenants, args.tasks])
        cur.execute("ANALYZE")
    print(f"timers: {args.tasks:,} pending tasks over {args.tenants} tenants, {args.due} due")
    tenant_ids = list(Tenant.objects.values_list("pk", flat=True))
    from django.db.models import Q
    from reviews.models import ReviewTask

    def scan(with_tenants: bool) -> float:
        condition = Q(status="pending", remind_at__isnull=False, reminded_at__isnull=True, remind_at__lte=now)
        query = ReviewTask.objects.filter(condition)
        if with_tenants:
            query = query.filter(tenant_id__in=tenant_ids)
        started = time.perf_counter()
        list(query.order_by("remind_at").values_list("tenant_id", "pk")[:500])
        return time.perf_counter() - started

    for label, with_tenants in (("tenant_id IN (...)", True), ("no tenant condition", False)):
        runs = [scan(with_tenants) for _ in range(15)]
        print(f"  candidate scan, {label:20}: p50 {_ms(statistics.median(runs))}, max {_ms(max(runs))}")
    started = time.perf_counter()
    list(Tenant.objects.values_list("pk", flat=True))
    print(f"  reading the tenant ids: {_ms(time.perf_counter() - started)}")
    for job in (review_reminders_send, review_escalations_run, review_expiries_run):
        started = time.perf_counter()
        fired = job(now=now)
        busy = time.perf_counter() - started
        started = time.perf_counter()
        again = job(now=now)
        idle = time.perf_counter() - started
        print(f"  {job.__name__:24} fired {fired:4} in {_ms(busy)} ({_ms(busy / max(fired, 1))} per task); "
              f"next run, nothing due: {_ms(idle)} ({again} fired)")
    assert len(_due("remind_at", "reminded_at", now=now, batch_size=10)) == 0


# --- Webhooks -------------------------------------------------------------------------


class _Sink:
    def __init__(self, *, hang: bool = False, fail_first: int = 0) -> None:
        self.arrivals: list[tuple[float, bytes]] = []
        self.hang, self.fail_first = hang, fail_first
        self.release = threading.Event()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sink.arrivals.append((time.monotonic(), body))
                if sink.hang:
                    sink.release.wait()
                status = 500 if len(sink.arrivals) <= sink.fail_first else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def webhooks(args) -> None:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from contracts.scheduler import JOBS, Scheduler
    from reviews import events
    from reviews.models import ReviewTask, WebhookDelivery, WebhookEndpoint
    from reviews.webhooks import webhook_endpoint_create
    from tenants.models import Tenant

    settings.WEBHOOK_TIMEOUT_SECONDS = 30
    tenant = Tenant.objects.create(slug="hooks", name="Hooks")
    actor = get_user_model().objects.create(username="bench-hooks-admin")
    from contracts.models import Contract
    contract = Contract.objects.create(tenant=tenant, title="MSA", text="t", thread_id=f"{tenant.id}:contract:hooks")
    task = ReviewTask.objects.create(tenant=tenant, contract=contract, thread_id=contract.thread_id, interrupt_id="x" * 32,
                                     kind="legal", payload={}, risk_score=0.5)
    scheduler = Scheduler(name="bench", jobs=[job for job in JOBS if job.name == "webhooks"])
    thread = scheduler.start()

    def measure(label: str, count: int, *, slow: bool) -> None:
        fast = _Sink()
        stuck = _Sink(hang=True) if slow else None
        endpoint = webhook_endpoint_create(tenant=tenant, url=fast.url, event_types=["review.claimed"], actor=actor, via="api")
        if stuck:
            webhook_endpoint_create(tenant=tenant, url=stuck.url, event_types=["review.claimed"], actor=actor, via="api")
        sent: list[float] = []
        for _ in range(count):
            with transaction.atomic():
                events.event_emit(tenant_id=tenant.id, type=events.REVIEW_CLAIMED, task=task)
            sent.append(time.monotonic())
            time.sleep(0.137)  # events at no particular phase of the scheduler's tick
        deadline = time.monotonic() + 120
        while len(fast.arrivals) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        latencies = [arrived - committed for committed, (arrived, _) in zip(sent, fast.arrivals)]
        durations = [d.attempt_log[0]["duration_ms"] for d in WebhookDelivery.objects.filter(endpoint=endpoint)]
        print(f"  {label:38} {len(latencies)}/{count} delivered; commit -> receiver p50 {_ms(statistics.median(latencies))}, "
              f"p99 {_ms(_pct(latencies, 0.99))}, max {_ms(max(latencies))}; one request p50 {statistics.median(durations):.1f} ms")
        fast.close()
        if stuck:
            stuck.close()
        WebhookEndpoint.objects.filter(tenant=tenant).delete()

    print(f"webhooks: a scheduler loop with the webhooks job every {settings.SCHEDULER_WEBHOOKS_SECONDS} s")
    try:
        measure("one endpoint", args.events, slow=False)
        measure("beside an endpoint that never answers", args.events, slow=True)

        settings.WEBHOOK_RETRY_BASE_SECONDS = 2
        failing = _Sink(fail_first=4)
        webhook_endpoint_create(tenant=tenant, url=failing.url, event_types=["review.claimed"], actor=actor, via="api")
        with transaction.atomic():
            events.event_emit(tenant_id=tenant.id, type=events.REVIEW_CLAIMED, task=task)
        deadline = time.monotonic() + 120
        while len(failing.arrivals) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        gaps = [b[0] - a[0] for a, b in zip(failing.arrivals, failing.arrivals[1:])]
        print(f"  retries after 4 x 500 (base 2 s): gaps {', '.join(f'{g:.1f} s' for g in gaps)} "
              f"(backoff 2, 4, 8, 16 s x 0.8-1.0, plus up to one tick)")
        failing.close()
    finally:
        scheduler.stop()
        thread.join(timeout=30)


# --- Retention ------------------------------------------------------------------------


def retention(args) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from contracts.graph import runner
    from contracts.models import Contract
    from contracts.retention import checkpoints_prune
    from contracts.services import contract_submit
    from reviews.models import ReviewTask
    from reviews.services import review_task_resume
    from tenants.models import Role, Tenant
    from tenants.services import membership_set
    from django.contrib.auth import get_user_model

    tenant = Tenant.objects.create(slug="keep", name="Keep")
    users = [get_user_model().objects.create(username=f"bench-keep-{r}") for r in ("admin", "fin")]
    membership_set(tenant=tenant, user=users[0], role=Role.ADMIN)
    membership_set(tenant=tenant, user=users[1], role=Role.REVIEWER, finance_approver=True)
    shapes = {"auto-approved": LOW_RISK_TEXT, "one review": HIGH_RISK_TEXT, "legal + finance": BOTH_TEXT}
    made: dict[str, list[Contract]] = {name: [] for name in shapes}
    for name, text in shapes.items():
        for i in range(args.threads):
            contract = contract_submit(tenant=tenant, submitted_by=users[0], title=f"{name} {i}", text=text)
            for task in ReviewTask.objects.filter(contract=contract, status="pending"):
                review_task_resume(tenant=tenant, task_id=task.pk, user=users[1], data={"decision": "approve"})
            made[name].append(contract)
    print(f"retention: {args.threads} threads of each shape")
    for name, contracts in made.items():
        counts = runner.checkpoint_rows([contracts[0].thread_id])
        print(f"  {name:16} {sum(counts.values()):3} rows per thread: {counts}")
    Contract.objects.filter(tenant=tenant).update(completed_at=timezone.now() - timedelta(days=40))
    dry = checkpoints_prune(tenant=tenant, dry_run=True, max_threads=None)
    started = time.perf_counter()
    report = checkpoints_prune(tenant=tenant, max_threads=None)
    took = time.perf_counter() - started
    print(f"  dry run: {dry.threads} threads, {dry.rows} rows; prune: {report.threads} threads, {report.rows} rows "
          f"({report.rows_by_table}) in {took:.2f} s, {_ms(took / max(report.threads, 1))} per thread")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--db", default="bench_queue_time")
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=1_000)
    parser.add_argument("--due", type=int, default=200)
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--threads", type=int, default=50)
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args()
    setup(args)
    try:
        timers(args)
        webhooks(args)
        retention(args)
    finally:
        from django.db import connections

        from contracts.graph.runner import contract_graph_close

        contract_graph_close()
        connections.close_all()
        if not args.keep_db:
            database_drop(args.pg, args.db)


if __name__ == "__main__":
    main()
