"""Every Prometheus metric the service exports, declared once (docs/metrics.md is generated from this module).

RPC metrics follow go-grpc-prometheus names and labels. Labels are bounded: method names, status codes,
operations and reasons fixed in code, offer ids bounded by the catalog; never a customer id, card or name.
Gauges declare how several processes of one host combine (prometheus_client multiprocess mode, "live" modes so
a dead process's gauges drop out): a server and its writer child, or several servers sharing a port, show up in
one scrape of any of them.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Sub-10 ms service: fine buckets at the bottom, a tail up to the deadlines terminals use.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
# Store calls are sub-millisecond when healthy.
STORE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

# -- RPCs (go-grpc-prometheus) --------------------------------------------------------------------------------
RPC_STARTED = Counter(
    "grpc_server_started_total", "RPCs started on the server.", ["grpc_type", "grpc_service", "grpc_method"]
)
RPC_HANDLED = Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, by status code.",
    ["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
)
RPC_LATENCY = Histogram(
    "grpc_server_handling_seconds",
    "Time from receiving an RPC to sending its status.",
    ["grpc_type", "grpc_service", "grpc_method"],
    buckets=LATENCY_BUCKETS,
)
RPC_IN_FLIGHT = Gauge(
    "pos_offers_rpc_in_flight",
    "RPCs being handled now.",
    ["grpc_service", "grpc_method"],
    multiprocess_mode="livesum",
)
RPC_DROPPED = Counter(
    "pos_offers_rpc_dropped_total",
    "Calls the service refused unhandled because it was saturated: reason concurrency_limit (RESOURCE_EXHAUSTED "
    "beyond POS_OFFERS_MAX_CONCURRENT_RPCS; also in grpc_server_handled_total and the access log). Calls the gRPC "
    "core dropped before the service saw them are pos_offers_rpc_transport_started_total - "
    "pos_offers_rpc_received_total.",
    ["reason"],
)
RPC_TRANSPORT_STARTED = Counter(
    "pos_offers_rpc_transport_started_total",
    "Calls the gRPC transport started (channelz calls_started, copied once a second), whether or not they reached "
    "the service.",
)
RPC_RECEIVED = Counter(
    "pos_offers_rpc_received_total",
    "Calls gRPC handed to the service's code (copied once a second with the one above): started - received is what "
    "the gRPC core dropped (beyond its queue, or a deadline passed in it; the caller saw CANCELLED or "
    "DEADLINE_EXCEEDED), plus calls still in its queue.",
)

# -- access control ---------------------------------------------------------------------------------------------
AUTH_REFUSED = Counter(
    "pos_offers_auth_refused_total",
    "Calls refused before their handler ran: reason missing, malformed, invalid, revoked or expired key "
    "(UNAUTHENTICATED), or permission (PERMISSION_DENIED).",
    ["grpc_service", "grpc_method", "reason"],
)
VELOCITY_ALERTS = Counter(
    "pos_offers_velocity_alerts_total",
    "Members whose activity first reached a velocity threshold in its window (kind commits, stores or returns); "
    "each is also an audit event (action velocity.<kind>, target the member's salted hash).",
    ["kind"],
)
AUDIT_WRITE_FAILURES = Counter(
    "pos_offers_audit_write_failures_total",
    "Admin calls answered UNAVAILABLE because their audit event could not be written to SQL.",
)
AUTH_ENABLED = Gauge(
    "pos_offers_auth_enabled",
    "1 when every call must carry an API key; 0 only with POS_OFFERS_AUTH=off (loopback only).",
    multiprocess_mode="livemax",  # the writer child never serves calls: its 0 must not hide the server's 1
)
RATE_LIMITED = Counter(
    "pos_offers_rate_limited_total",
    "Calls refused RESOURCE_EXHAUSTED by a rate limit, before their handler ran, by the caller's role and the "
    "bucket that refused (key: the API key's; customer: the customer the request names). Never a key or a "
    "customer id.",
    ["role", "bucket"],
)
RATE_LIMIT_UNCHECKED = Counter(
    "pos_offers_rate_limit_unchecked_total",
    "Calls whose rate limits could not be checked (Redis refused or unreachable), by the caller's role: pos and "
    "app calls went ahead (fail-open), admin calls were refused UNAVAILABLE.",
    ["role"],
)
API_KEYS_LOADED = Gauge(
    "pos_offers_api_keys_loaded",
    "API keys (revoked included) in this server's key ring.",
    multiprocess_mode="livemax",
)

# -- backing stores ---------------------------------------------------------------------------------------------
REDIS_SECONDS = Histogram(
    "pos_offers_redis_seconds", "Time of one Redis call (a pipeline or a script).", ["operation"], buckets=STORE_BUCKETS
)
REDIS_ERRORS = Counter("pos_offers_redis_errors_total", "Redis calls that failed.", ["operation"])
SQL_SECONDS = Histogram(
    "pos_offers_sql_seconds", "Time of one SQL unit of work.", ["operation"], buckets=LATENCY_BUCKETS
)
SQL_ERRORS = Counter("pos_offers_sql_errors_total", "SQL units of work that failed.", ["operation"])
COMPONENT_UP = Gauge(
    "pos_offers_component_up",
    "1 when the component answers its health probe (redis, sql, catalog), else 0.",
    ["component"],
    multiprocess_mode="livemin",
)

# -- write-behind -----------------------------------------------------------------------------------------------
OUTBOX_BACKLOG = Gauge(
    "pos_offers_outbox_backlog", "Write-behind records not yet written to SQL.", multiprocess_mode="livemax"
)
OUTBOX_OLDEST_AGE = Gauge(
    "pos_offers_outbox_oldest_age_seconds", "Age of the oldest record not yet in SQL.", multiprocess_mode="livemax"
)
WRITER_RECORDS = Counter(
    "pos_offers_writer_records_total",
    "Outbox records handled by writers: applied, duplicate (already in SQL) or dead_letter (unreadable).",
    ["result"],
)
WRITER_FAILURES = Counter("pos_offers_writer_failures_total", "Writer batches SQL refused (retried).")
WRITER_BATCH_SECONDS = Histogram(
    "pos_offers_writer_batch_seconds", "Time to write one batch to SQL.", buckets=LATENCY_BUCKETS
)
WRITER_LAST_SUCCESS = Gauge(
    "pos_offers_writer_last_success_timestamp_seconds",
    "When a writer last wrote a batch or found the outbox empty.",
    multiprocess_mode="livemax",
)

# -- catalog ----------------------------------------------------------------------------------------------------
# "livemax": writer children declare these gauges too but never set them; a "min" would read their zeros.
CATALOG_VERSION = Gauge(
    "pos_offers_catalog_version", "Version of the catalog snapshot in use.", multiprocess_mode="livemax"
)
CATALOG_OFFERS = Gauge(
    "pos_offers_catalog_offers", "Offers in the catalog snapshot in use.", multiprocess_mode="livemax"
)
CATALOG_LOADED_AT = Gauge(
    "pos_offers_catalog_loaded_timestamp_seconds",
    "When the snapshot in use was loaded (its age: time() - this).",
    multiprocess_mode="livemax",
)
OFFER_BUDGET_LIMIT = Gauge(
    "pos_offers_offer_budget_limit",
    "An offer's total redemption limit (offers with one only).",
    ["offer_id"],
    multiprocess_mode="livemax",
)
OFFER_BUDGET_USED = Gauge(
    "pos_offers_offer_budget_used",
    "Redemptions taken from an offer's total budget, across customers.",
    ["offer_id"],
    multiprocess_mode="livemax",
)

# -- the business -----------------------------------------------------------------------------------------------
OFFERS_LISTED = Counter("pos_offers_offers_listed_total", "Offers returned by ListActiveOffers.")
OFFERS_RECOGNISED = Counter(
    "pos_offers_offers_recognised_total", "Offers applied in committed purchases.", ["offer_id"]
)
NEAR_MISSES = Counter("pos_offers_near_misses_total", "Near misses shown by EvaluateBasket.", ["offer_id"])
POINTS_EARNED = Counter("pos_offers_points_earned_total", "Points credited by committed purchases.")
POINTS_REDEEMED = Counter("pos_offers_points_redeemed_total", "Points paid with in committed purchases.")
POINTS_REVERSED = Counter("pos_offers_points_reversed_total", "Points taken back by returns and voids.")
PURCHASES_COMMITTED = Counter("pos_offers_purchases_committed_total", "Purchases committed (first time).")
PURCHASES_REPLAYED = Counter("pos_offers_purchases_replayed_total", "Commits answered from a stored receipt.")
REDEMPTIONS_REFUSED = Counter(
    "pos_offers_redemptions_refused_total", "Commits or evaluations refused by a points rule.", ["reason"]
)
COMMIT_CONFLICTS = Counter(
    "pos_offers_commit_conflicts_total", "Optimistic commit attempts retried because the customer changed."
)
REHYDRATIONS = Counter("pos_offers_rehydrations_total", "Customers rebuilt in Redis from the SQL profile.")
