"""Settings: one frozen object built from `POS_OFFERS_*` environment variables. The only reader of os.environ."""

from __future__ import annotations

import ipaddress
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from domain.limits import RateLimits
from domain.model import PointsPolicy
from usecases.rules import FraudGuards, Rules


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {raw!r}")


def is_loopback(listen: str) -> bool:
    """Whether a host:port listen address only accepts connections from this machine."""
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name, or empty (all interfaces)


def check_tls_files(cert: str, key: str, client_ca: str = "") -> None:
    """Whether the PEM files exist and parse, and the key is the certificate's; else a ValueError that says which
    file and why (the server refuses to start, or a reload keeps the certificate it has)."""
    for setting, path in (("TLS_CERT", cert), ("TLS_KEY", key), ("TLS_CLIENT_CA", client_ca)):
        if path and not Path(path).is_file():
            raise ValueError(f"POS_OFFERS_{setting}: no such file: {path}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key, password=lambda: b"")  # an encrypted key fails: gRPC cannot use one
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(
            f"POS_OFFERS_TLS_CERT/POS_OFFERS_TLS_KEY: {cert} and {key} are not a PEM certificate chain and its "
            f"unencrypted private key ({exc})"
        ) from None
    if client_ca:
        try:
            context.load_verify_locations(cafile=client_ca)
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(f"POS_OFFERS_TLS_CLIENT_CA: {client_ca} holds no PEM CA certificate ({exc})") from None


@dataclass(frozen=True, slots=True)
class Settings:
    listen: str = "127.0.0.1:50051"
    """gRPC listen address (host:port; port 0 picks a free one)."""
    metrics_listen: str = "127.0.0.1:9464"
    """Prometheus text exposition address; empty disables it."""
    metrics_dir: str = ""
    """Multiprocess metrics directory shared by the processes of one host; `python -m server` defaults it to
    DATA_DIR/prometheus. Empty: this process's metrics only (tests)."""
    redis_url: str = ""
    """Redis URL; empty starts an embedded Redis under data_dir and stops it on exit."""
    database_url: str = ""
    """SQLAlchemy URL of the profile database; empty means SQLite at data_dir/pos_offers.db."""
    database_schema: str = ""
    """PostgreSQL only: the schema the profile lives in (created by the migrations); empty = the default."""
    data_dir: Path = Path("var")
    """Where the embedded Redis and SQLite keep their files."""
    demo_data: bool = False
    """Load a demo store, member and offer at start (make run sets it)."""
    redis_max_connections: int = 256
    """Connections to Redis per process; calls beyond them wait for one (see redis_pool_timeout_ms)."""
    redis_pool_timeout_ms: int = 500
    """How long a call waits for a free Redis connection before it fails UNAVAILABLE (well inside the clients'
    deadlines, so they see UNAVAILABLE and retry rather than run out of time)."""
    redis_prefix: str = "po"
    """Prefix of every Redis key, so several deployments or test runs can share one Redis."""
    partitions: int = 16
    """Customer partitions (Redis hash tags, one outbox stream each). Fixed for the life of the data."""
    earn_points_per_unit: int = 1
    """Base points per whole currency unit of each line's total (rounded down)."""
    redeem_points_per_unit: int = 100
    """Points that pay one whole currency unit."""
    max_basket_lines: int = 500
    """Baskets with more lines are refused (INVALID_ARGUMENT)."""
    max_line_quantity: int = 10_000
    """Largest quantity on one line."""
    max_unit_price_minor: int = 100_000_000_00
    """Largest unit price in minor units."""
    points_pending_days: int = 0
    """Points earned become spendable this many days after the service accepted the sale (the returns window);
    0 = at once."""
    points_expire_after_days: int = 0
    """Points expire after this many days without a purchase (the expiry job takes them); 0 = never."""
    points_expiring_soon_days: int = 30
    """GetProfile reports the balance as expiring when inactivity would expire it within this many days."""
    idempotency_retention_days: int = 30
    """How long a transaction id's receipt is kept in Redis for replays (SQL keeps it forever)."""
    occurred_at_grace_hours: int = 72
    """An offline till's sale is evaluated at its occurred_at when no older than this; else at now."""
    occurred_at_max_age_days: int = 730
    """A sale dated more than this many days ago is refused (INVALID_ARGUMENT): no till is offline that long."""
    clock_skew_seconds: int = 300
    """How far in the future an occurred_at may be before it is refused."""
    catalog_refresh_ms: int = 500
    """How often a server checks the catalog version in Redis."""
    writer_enabled: bool = True
    """Run a write-behind writer alongside the server (0 when writers are deployed on their own)."""
    writer_process: bool = True
    """That writer is a child process with its own interpreter, so SQL work never stalls the till path;
    0 runs it on the server's event loop (tests)."""
    writer_nice: int = 10
    """The writer child's scheduling niceness, added to the server's (0: the same priority): the write-behind can
    lag by a few batches, the till path cannot; on a busy host the kernel then runs the server first."""
    writer_batch: int = 200
    """Outbox entries read per partition per writer pass."""
    writer_idle_ms: int = 100
    """Writer sleep when the outbox is empty."""
    writer_claim_idle_ms: int = 30_000
    """Pending outbox entries idle this long are claimed from a dead writer."""
    commit_max_attempts: int = 8
    """Optimistic retries of a commit that raced another write to the same customer."""
    max_message_bytes: int = 4 * 1024 * 1024
    """Largest request or response message; a bigger request is refused by gRPC (RESOURCE_EXHAUSTED)."""
    max_concurrent_streams: int = 100
    """Calls one connection may have open at once; more wait for one to end."""
    max_connection_idle_ms: int = 300_000
    """A connection without calls for this long is closed (the client reconnects when it next calls)."""
    max_connection_age_ms: int = 300_000
    """A connection is asked to close after this long, and its calls get max_connection_age_grace_ms to finish:
    a call whose request never arrives cannot hold server memory for longer."""
    max_connection_age_grace_ms: int = 60_000
    """How long calls on a connection past its age may still run."""
    max_concurrent_rpcs: int = 1000
    """Calls (health checks aside) this server handles at once, those still waiting for their request message
    included; more are refused at once with RESOURCE_EXHAUSTED and counted in pos_offers_rpc_dropped_total. 0 = no
    bound (each waiting call then holds memory until its connection's age ends it)."""
    max_call_ms: int = 30_000
    """Any call still running after this long ends DEADLINE_EXCEEDED, whatever deadline the caller set (or none):
    well above the till path's milliseconds and an admin call's seconds, below the connection age grace."""
    tls_cert: str = ""
    """PEM file of the server's certificate chain: with tls_key, gRPC is served over TLS only. Reloaded on
    SIGHUP (connections made after it get the new certificate)."""
    tls_key: str = ""
    """PEM file of the private key of tls_cert (unencrypted; keep it mode 0600)."""
    tls_client_ca: str = ""
    """PEM file of the CA(s) that sign terminals' certificates: every connection must then present one (mutual
    TLS). A certificate's SAN URIs `urn:pos-offers:store:<id>` narrow a pos key's stores further."""
    allow_plaintext: bool = False
    """Serve plaintext gRPC on a non-loopback address (behind a proxy or mesh that terminates TLS). Without TLS
    settings and without this, only a loopback listen address starts."""
    auth: bool = True
    """Every call but health checks needs an API key. `off` only for local experiments: refused unless `listen`
    is a loopback address, and logged loudly."""
    api_key_refresh_ms: int = 500
    """How often a server checks the shared API key version (a new or revoked key counts within this, plus the
    reload)."""
    offer_uses_per_customer_per_day: int = 1
    """Uses per member per day (UTC) of an offer whose reward is fixed per basket (bonus points, amount off), so
    splitting a basket never earns it more often than the whole basket; 0 = no limit. Multipliers and percentages
    follow the lines and are never limited by it."""
    velocity_commits: int = 20
    """A member's commits within POS_OFFERS_VELOCITY_COMMITS_WINDOW_S that raise a velocity alert; 0 = off."""
    velocity_commits_window_s: int = 600
    """The window of velocity_commits."""
    velocity_stores: int = 4
    """Different stores a member buys at within POS_OFFERS_VELOCITY_STORES_WINDOW_S that raise an alert; 0 = off."""
    velocity_stores_window_s: int = 3_600
    """The window of velocity_stores."""
    velocity_returns: int = 10
    """A member's returns and voids within POS_OFFERS_VELOCITY_RETURNS_WINDOW_S that raise an alert; 0 = off."""
    velocity_returns_window_s: int = 86_400
    """The window of velocity_returns."""
    audit_flush_ms: int = 5_000
    """How often a server sends each finished minute of refused calls (and velocity alerts) to the audit outbox in
    Redis, from which the writer puts them in the audit table."""
    rate_limit_per_key: int = 100
    """Calls per second of an API key whose own rate_limit_per_second is 0, across every server (a till makes a
    few a second at most, a store's tills sharing one key stay well under; give the app backend's key its own)."""
    rate_limit_key_burst_s: int = 2
    """A key's bucket holds this many seconds of its rate: the calls it may make at once after a quiet spell."""
    rate_limit_per_customer: int = 5
    """Calls per second about one customer (the request's customer_id or basket.customer_id), whichever keys make
    them; 0 = no per-customer limit."""
    rate_limit_customer_burst_s: int = 4
    """A customer's bucket holds this many seconds of her rate (5 x 4 = 20 calls at once)."""
    demo_credentials: bool = True
    """With demo data: create one key per role and write them to DATA_DIR/demo-credentials.json (mode 0600)."""
    reflection: bool = True
    """Serve gRPC server reflection (grpcurl)."""
    shutdown_grace_s: float = 5.0
    """Seconds in-flight RPCs get to finish on SIGTERM."""
    log_level: str = "INFO"
    """Python logging level name."""
    otlp_endpoint: str = ""
    """OpenTelemetry collector (OTLP/gRPC), e.g. http://127.0.0.1:4317; empty keeps tracing off."""
    access_log: bool = True
    """One JSON line per RPC (request id, method, status, duration, store, terminal)."""
    log_customer_ids: str = "hash"
    """How customer ids appear in logs: "hash" (salted SHA-256, 16 hex) or "omit". Never in plain text."""
    log_hash_salt: str = ""
    """Secret salt for hashed customer ids, so a hash cannot be looked up from a list of ids."""
    app_profile_fields: str = (
        "customer_id,tier,points_balance,points_available,points_pending,pending_points,points_expiring,"
        "points_expire_at,points_debt"
    )
    """CustomerProfile fields GetProfile returns to app keys (comma-separated; the rest are cleared): what the app
    shows a member about her points. Checked at start against the contract; home_location and propensity never."""
    pos_profile_fields: str = (
        "customer_id,display_name,tier,points_balance,points_available,points_pending,pending_points,"
        "points_expiring,points_expire_at,points_debt"
    )
    """CustomerProfile fields GetProfile returns to pos keys: the balance and tier, and the name the cashier greets
    her by. Admin keys see every field."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"POS_OFFERS_{f.name.upper()}")
            if raw is None:
                continue
            default = f.default
            try:
                if isinstance(default, bool):
                    values[f.name] = _bool(raw)
                elif isinstance(default, int):
                    values[f.name] = int(raw)
                elif isinstance(default, float):
                    values[f.name] = float(raw)
                elif isinstance(default, Path):
                    values[f.name] = Path(raw)
                else:
                    values[f.name] = raw
            except ValueError as exc:
                raise ValueError(f"POS_OFFERS_{f.name.upper()}: {exc}") from exc
        settings = cls(**values)
        settings.validate()
        return settings

    def to_env(self) -> dict[str, str]:
        """These settings as POS_OFFERS_* variables, for a child process (the writer) to read back."""
        env: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            env[f"POS_OFFERS_{f.name.upper()}"] = ("1" if value else "0") if isinstance(value, bool) else str(value)
        return env

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def validate(self) -> None:
        limits = (self.max_message_bytes, self.max_concurrent_streams, self.max_connection_idle_ms)
        if min(*limits, self.max_connection_age_ms, self.max_connection_age_grace_ms) < 1:
            raise ValueError("message, stream and connection limits must be positive")
        if not 1 <= self.max_call_ms <= self.max_connection_age_grace_ms:
            raise ValueError(
                "POS_OFFERS_MAX_CALL_MS must be positive and at most POS_OFFERS_MAX_CONNECTION_AGE_GRACE_MS"
            )
        if self.occurred_at_max_age_days * 24 <= self.occurred_at_grace_hours:
            raise ValueError(
                "POS_OFFERS_OCCURRED_AT_MAX_AGE_DAYS must be longer than POS_OFFERS_OCCURRED_AT_GRACE_HOURS"
            )
        if self.redis_max_connections < 1 or self.redis_pool_timeout_ms < 1:
            raise ValueError("POS_OFFERS_REDIS_MAX_CONNECTIONS and POS_OFFERS_REDIS_POOL_TIMEOUT_MS must be positive")
        if not self.auth and not is_loopback(self.listen):
            raise ValueError(f"POS_OFFERS_AUTH=off is refused unless POS_OFFERS_LISTEN is loopback (is {self.listen})")
        if self.max_concurrent_rpcs < 0:
            raise ValueError("POS_OFFERS_MAX_CONCURRENT_RPCS must be 0 (no bound) or positive")
        self._validate_transport()
        self._validate_access()
        if not 0 <= self.writer_nice <= 19:
            raise ValueError("POS_OFFERS_WRITER_NICE must be between 0 and 19")
        if self.partitions < 1:
            raise ValueError("POS_OFFERS_PARTITIONS must be at least 1")
        if self.log_customer_ids not in {"hash", "omit"}:
            raise ValueError("POS_OFFERS_LOG_CUSTOMER_IDS must be hash or omit")
        if self.earn_points_per_unit < 0 or self.redeem_points_per_unit < 1:
            raise ValueError("points settings must be positive")
        if self.points_pending_days < 0 or self.points_expire_after_days < 0:
            raise ValueError("points pending and expiry periods must not be negative")
        if 0 < self.points_expire_after_days <= self.points_pending_days:
            # Otherwise an idle member's points would expire before she could ever spend them.
            raise ValueError("POS_OFFERS_POINTS_EXPIRE_AFTER_DAYS must be longer than POS_OFFERS_POINTS_PENDING_DAYS")

    def _validate_access(self) -> None:
        """Keys, profile fields by role, audit, fraud guards and rate limits."""
        if not 100 <= self.api_key_refresh_ms <= 1_000:
            raise ValueError("POS_OFFERS_API_KEY_REFRESH_MS must be between 100 and 1000 (keys propagate within 2 s)")
        for name in ("app_profile_fields", "pos_profile_fields"):
            if not all(part.strip() for part in getattr(self, name).split(",")):
                raise ValueError(f"POS_OFFERS_{name.upper()} must be comma-separated CustomerProfile field names")
        guards = (self.offer_uses_per_customer_per_day, self.velocity_commits, self.velocity_stores)
        windows = (self.velocity_commits_window_s, self.velocity_stores_window_s, self.velocity_returns_window_s)
        if min(*guards, self.velocity_returns) < 0 or min(windows) < 1:
            raise ValueError("fraud guard thresholds must not be negative, and their windows must be positive")
        if not 100 <= self.audit_flush_ms <= 60_000:
            raise ValueError("POS_OFFERS_AUDIT_FLUSH_MS must be between 100 and 60000")
        if not 1 <= self.rate_limit_per_key <= 1_000_000 or not 0 <= self.rate_limit_per_customer <= 1_000_000:
            raise ValueError(
                "POS_OFFERS_RATE_LIMIT_PER_KEY must be 1..1000000 and POS_OFFERS_RATE_LIMIT_PER_CUSTOMER 0..1000000"
            )
        if not 1 <= self.rate_limit_key_burst_s <= 3_600 or not 1 <= self.rate_limit_customer_burst_s <= 3_600:
            raise ValueError("POS_OFFERS_RATE_LIMIT_KEY_BURST_S and ..._CUSTOMER_BURST_S must be 1..3600 seconds")

    def _validate_transport(self) -> None:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("POS_OFFERS_TLS_CERT and POS_OFFERS_TLS_KEY go together: set both or neither")
        if self.tls_client_ca and not self.tls_cert:
            raise ValueError("POS_OFFERS_TLS_CLIENT_CA needs POS_OFFERS_TLS_CERT and POS_OFFERS_TLS_KEY (mutual TLS)")
        if not self.tls_cert and not self.allow_plaintext and not is_loopback(self.listen):
            raise ValueError(
                f"plaintext gRPC is refused on non-loopback POS_OFFERS_LISTEN={self.listen}: set POS_OFFERS_TLS_CERT "
                "and POS_OFFERS_TLS_KEY, listen on loopback, or set POS_OFFERS_ALLOW_PLAINTEXT=1 behind a TLS proxy"
            )
        if self.tls_cert:
            check_tls_files(self.tls_cert, self.tls_key, self.tls_client_ca)

    def rules(self) -> Rules:
        """The rules the use cases apply, from these settings."""
        return Rules(
            points=PointsPolicy(self.earn_points_per_unit, self.redeem_points_per_unit),
            max_basket_lines=self.max_basket_lines,
            max_line_quantity=self.max_line_quantity,
            max_unit_price_minor=self.max_unit_price_minor,
            points_pending_days=self.points_pending_days,
            points_expire_after_days=self.points_expire_after_days,
            points_expiring_soon_days=self.points_expiring_soon_days,
            receipt_retention=timedelta(days=self.idempotency_retention_days),
            occurred_at_grace=timedelta(hours=self.occurred_at_grace_hours),
            occurred_at_max_age=timedelta(days=self.occurred_at_max_age_days),
            clock_skew=timedelta(seconds=self.clock_skew_seconds),
            write_attempts=self.commit_max_attempts,
            guards=FraudGuards(
                offer_uses_per_day=self.offer_uses_per_customer_per_day,
                velocity_commits=self.velocity_commits,
                velocity_commits_window_s=self.velocity_commits_window_s,
                velocity_stores=self.velocity_stores,
                velocity_stores_window_s=self.velocity_stores_window_s,
                velocity_returns=self.velocity_returns,
                velocity_returns_window_s=self.velocity_returns_window_s,
            ),
        )

    def rate_limits(self) -> RateLimits:
        """The per-key and per-customer rate limits, from these settings."""
        return RateLimits(
            per_key=self.rate_limit_per_key,
            key_burst_seconds=self.rate_limit_key_burst_s,
            per_customer=self.rate_limit_per_customer,
            customer_burst_seconds=self.rate_limit_customer_burst_s,
        )

    @property
    def sql_url(self) -> str:
        if self.database_url:
            url = self.database_url
            # Plain postgresql:// means the psycopg 3 driver we ship, not psycopg2.
            if url.startswith("postgresql://") or url.startswith("postgres://"):
                url = "postgresql+psycopg://" + url.split("://", 1)[1]
            return url
        return f"sqlite:///{(self.data_dir / 'pos_offers.db').resolve()}"
