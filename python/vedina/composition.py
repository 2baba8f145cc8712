"""The composition root: every service of a process is built here, once.

:func:`open_services` opens the storage resources chosen by the settings
(:mod:`vedina.storage.resources`), builds the repositories, caches and
services on top of them, and hands the job handlers the services they need.
The server's workers, ``vedina worker`` and the one-off commands all start
from here, so each is wired the same way.

>>> services = await open_services(settings)
>>> await services.catalog.get_movie(movie_id=1)
>>> await services.close()

Adding a resource means: its table (``storage/schema.py``) and migration, its
repository (``storage/``), its service (``services/``), one line here, its API
module (``api/``) and one line in ``vedina.app.RESOURCE_ROUTERS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from vedina.config import Settings, webhook_secret_map
from vedina.jobs import billing_mail, mail, media_probe, media_transcode, payment_events, webhook_received
from vedina.jobs.monitoring import JobGauges, declare_job_series, playback_sessions_task
from vedina.jobs.scheduler import PeriodicTask, Scheduler, sweep_task
from vedina.security.csrf import CsrfTokens
from vedina.security.devices import DeviceTokens
from vedina.security.jwt_keys import TokenKeys, build_token_keys
from vedina.security.keys import derive_key
from vedina.security.secretbox import SecretBox
from vedina.services.accounts import AccountService
from vedina.services.api_keys import ApiKeyService, UsageRecorder
from vedina.services.auth_state import AuthState
from vedina.services.blog import BlogService
from vedina.services.catalog import CatalogService
from vedina.services.catalog_editor import CatalogEditor
from vedina.services.comment_limits import CommentRateLimit
from vedina.services.comment_moderation import ModerationService
from vedina.services.comments import CommentService
from vedina.services.entitlements import Entitlements
from vedina.services.idempotency import IdempotencyService
from vedina.services.login_guard import LoginGuard
from vedina.services.media import MediaService
from vedina.services.payments import PaymentService
from vedina.services.plans import PlanService
from vedina.services.playback import PlaybackService, build_playback
from vedina.services.principals import Authenticator
from vedina.services.profiles import ProfileService
from vedina.services.progress import ProgressWriter
from vedina.services.sessions import SessionService
from vedina.services.sitemap import SitemapService
from vedina.services.subscriptions import SubscriptionService
from vedina.services.uploads import UploadService
from vedina.services.viewing import ViewingService
from vedina.services.webhooks import WebhookService
from vedina.storage.api_keys import ApiKeyRepository
from vedina.storage.blog import BlogRepository
from vedina.storage.broker import JobHandler
from vedina.storage.catalog_queries import CatalogQueries
from vedina.storage.comments import CommentRepository
from vedina.storage.idempotency_keys import IdempotencyKeyRepository
from vedina.storage.keyvalue import SqlStore
from vedina.storage.mailer import mail_transport
from vedina.storage.media_assets import MediaAssetRepository
from vedina.storage.message_ledger import MessageLedger
from vedina.storage.movies import GenreRepository, MovieRepository, PersonRepository
from vedina.storage.near_cache import NearCache
from vedina.storage.payments import PaymentRepository
from vedina.storage.plans import PlanRepository
from vedina.storage.profiles import ProfileRepository
from vedina.storage.resources import Resources, open_resources
from vedina.storage.sessions import SessionRepository
from vedina.storage.shared_cache import SharedCache
from vedina.storage.stripe_provider import build_payment_provider
from vedina.storage.subscriptions import SubscriptionRepository
from vedina.storage.uploads import UploadRepository
from vedina.storage.users import UserRepository
from vedina.storage.viewing import ViewingRepository
from vedina.storage.webhooks import WebhookEventRepository

# Seconds a near-cache entry may live without any invalidation (a safety net:
# invalidation is what normally ends it).
PRINCIPAL_TTL = 60  # no longer than the shared store keeps a user's state (auth_state.USER_STATE_TTL)
PROFILE_TTL = 300
CATALOG_TTL = 300
MEDIA_TTL = 300
VIEWING_TTL = 30  # progress and continue watching (a movie leaving its window is seen within this)
PLANS_TTL = 300
COMMENTS_TTL = 300  # thread pages (every comment write invalidates them sooner)
ENTITLEMENT_TTL = 300  # an entitlement also carries its own end, so expiry needs no invalidation
BLOG_TTL = 3600  # posts, feeds and the sitemap (every write invalidates them)


@dataclass
class Services:
    settings: Settings
    resources: Resources
    users: UserRepository
    movies: MovieRepository
    genres: GenreRepository
    people: PersonRepository
    media_assets: MediaAssetRepository
    webhook_events: WebhookEventRepository
    auth_state: AuthState
    token_keys: TokenKeys
    sessions: SessionService
    accounts: AccountService
    api_keys: ApiKeyService
    authenticator: Authenticator
    csrf: CsrfTokens
    catalog: CatalogService
    catalog_editor: CatalogEditor
    profiles: ProfileService
    viewing: ViewingService
    media: MediaService
    webhooks: WebhookService
    message_ledger: MessageLedger
    uploads: UploadService
    plans: PlanService
    payments: PaymentService
    subscriptions: SubscriptionService
    idempotency: IdempotencyService
    blog: BlogService
    sitemap: SitemapService
    comments: CommentService
    moderation: ModerationService
    playback: PlaybackService = field(init=False)  # needs catalog and viewing: built right after
    scheduler: Scheduler | None = field(default=None, init=False)  # set by start() where it runs
    job_gauges: JobGauges | None = field(default=None, init=False)

    def job_handlers(self) -> dict[str, JobHandler]:
        """Topic -> handler, for the in-process broker and ``vedina worker``."""
        return {
            media_probe.TOPIC: media_probe.handler(
                assets=self.media_assets, catalog=self.catalog, media_root=self.settings.media_dir,
                engine=self.resources.engine, transcode_on_ingest=self.settings.transcode_on_ingest,
            ),
            media_transcode.TOPIC: media_transcode.handler(
                assets=self.media_assets, catalog=self.catalog, media_root=self.settings.media_dir,
                engine=self.resources.engine, preset=self.settings.transcode_preset,
            ),
            mail.TOPIC: mail.handler(
                settings=self.settings, users=self.users, engine=self.resources.engine,
                transport=mail_transport(self.settings),
            ),
            webhook_received.TOPIC: webhook_received.handler(
                events=self.webhook_events,
                processors=payment_events.processors(provider=self.payments.provider.name, payments=self.payments),
            ),
            billing_mail.RECEIPT_TOPIC: billing_mail.receipt_handler(
                settings=self.settings, users=self.users, payments=PaymentRepository(self.resources.engine),
                plans=PlanRepository(self.resources.engine), transport=mail_transport(self.settings),
            ),
            billing_mail.NOTICE_TOPIC: billing_mail.notice_handler(
                settings=self.settings, users=self.users, subscriptions=SubscriptionRepository(self.resources.engine),
                plans=PlanRepository(self.resources.engine), transport=mail_transport(self.settings),
            ),
        }

    def periodic_tasks(self) -> list[PeriodicTask]:
        """Name -> periodic work, run once per tick across all processes (vedina.jobs.scheduler)."""
        tasks = [
            sweep_task("message_ledger.sweep", 3600, self.message_ledger.sweep),
            sweep_task("uploads.sweep", 60, self.uploads.sweep),
            sweep_task("idempotency_keys.sweep", 3600, self.idempotency.sweep),
            sweep_task("blog.publish_due", 30, self.blog.publish_due),
            sweep_task("billing.renewals", 60, self.subscriptions.renew_due),
            sweep_task("billing.expiries", 300, self.subscriptions.expire_due),
            sweep_task("billing.reconcile", 60, self.payments.reconcile),
            sweep_task("billing.refunds", 300, self.payments.retry_refunds),
            playback_sessions_task(self.playback.count_live_sessions),
        ]
        if isinstance(self.resources.shared, SqlStore):  # Redis expires keys itself; the table would only grow
            tasks.append(sweep_task("kv_entries.sweep", 60, self.resources.shared.sweep))
        return tasks

    def start(self, *, scheduler: bool | None = None) -> None:
        """Background work of a serving process: invalidations, outbox relay, API-key usage, job
        gauges and (``scheduler``; default: where jobs run in-process, no AMQP_URL) the periodic tasks, which
        ``vedina worker`` runs in the real profile. Only the scheduler holding the lease runs them."""
        self.resources.invalidations.start()
        if self.resources.db_replicas is not None:
            self.resources.db_replicas.start()  # replica health checks (ADR 0017)
        self.resources.start_relay()
        self.api_keys.usage.start()
        self.viewing.start()
        self.job_gauges = JobGauges(self.resources.relay, self.resources.broker)
        self.job_gauges.start()
        if scheduler if scheduler is not None else not self.settings.amqp_nodes:
            self.scheduler = Scheduler(self.resources.engine, self.periodic_tasks())
            self.scheduler.start()

    async def close(self) -> None:
        if self.scheduler is not None:
            await self.scheduler.close()  # lets a running task finish, gives the lease up
        if self.job_gauges is not None:
            await self.job_gauges.close()
        await self.api_keys.usage.close()
        await self.payments.provider.close()
        await self.viewing.close()  # writes the watch progress this worker still holds
        await self.resources.close()


def build_services(settings: Settings, resources: Resources, *, usage_interval: float = 10.0) -> Services:
    engine, invalidations = resources.engine, resources.invalidations
    reader = resources.reader  # the public catalog reads: a replica when DB_REPLICA_HOSTS is set (ADR 0017)

    def near(name: str, ttl: float) -> NearCache:
        return NearCache(invalidations, name=name, max_entries=settings.near_cache_entries, ttl=ttl)

    users, movies, genres = UserRepository(engine), MovieRepository(engine, reader=reader), GenreRepository(
        engine, reader=reader)
    auth_state = AuthState(resources.shared, users, SessionRepository(engine), invalidations)
    token_keys = build_token_keys(settings)
    sessions = SessionService(
        engine=engine, users=users, sessions=SessionRepository(engine), auth_state=auth_state, token_keys=token_keys,
        devices=DeviceTokens(derive_key(settings.session_secret, "device")), login_guard=LoginGuard(settings),
        require_verified_email=settings.require_verified_email,
    )
    key_rows = ApiKeyRepository(engine)
    api_keys = ApiKeyService(
        repository=key_rows, secret_box=SecretBox.from_settings(settings), store=resources.shared,
        region=settings.sigv4_region, usage=UsageRecorder(key_rows, interval=usage_interval),
    )
    shared_cache = SharedCache(resources.redis, ttl=settings.catalog_cache_ttl_s) if resources.redis is not None else None
    catalog = CatalogService(
        movies=movies, queries=CatalogQueries(engine, reader=reader), genres=genres, invalidations=invalidations,
        near=near("catalog", CATALOG_TTL), shared=shared_cache,
    )
    plan_rows, subscription_rows, payment_rows = PlanRepository(engine), SubscriptionRepository(engine), PaymentRepository(engine)
    payments = PaymentService(engine=engine, payments=payment_rows, subscriptions=subscription_rows,
                              provider=build_payment_provider(settings), invalidations=invalidations,
                              answers=near("payments", ENTITLEMENT_TTL))
    subscriptions = SubscriptionService(
        engine=engine, subscriptions=subscription_rows, plans=plan_rows, payments=payments, payment_rows=payment_rows,
        invalidations=invalidations, past_due_grace=timedelta(days=settings.past_due_grace_days),
        retry_every=timedelta(hours=settings.billing_retry_hours),
        incomplete_expire=timedelta(hours=settings.incomplete_expire_hours),
        answers=near("subscriptions", ENTITLEMENT_TTL),
    )
    entitlements = Entitlements(
        subscriptions=subscription_rows, plans=plan_rows, cache=near("entitlements", ENTITLEMENT_TTL),
        unsubscribed_tier=settings.playback_default_plan, unsubscribed_screens=settings.max_concurrent_streams,
        past_due_grace=timedelta(days=settings.past_due_grace_days),
    )
    services = Services(
        settings=settings,
        resources=resources,
        users=users,
        movies=movies,
        genres=genres,
        people=PersonRepository(engine, reader=reader),
        media_assets=MediaAssetRepository(engine),
        webhook_events=WebhookEventRepository(engine),
        auth_state=auth_state,
        token_keys=token_keys,
        sessions=sessions,
        accounts=AccountService(
            engine=engine, users=users, sessions=sessions, auth_state=auth_state, profiles=near("profiles", PROFILE_TTL),
            on_closed=subscriptions.account_closed,
        ),
        api_keys=api_keys,
        authenticator=Authenticator(
            token_keys=token_keys, auth_state=auth_state, api_keys=api_keys, principals=near("principals", PRINCIPAL_TTL)
        ),
        csrf=CsrfTokens(derive_key(settings.session_secret, "csrf")),
        catalog=catalog,
        catalog_editor=CatalogEditor(engine=engine, catalog=catalog),
        profiles=ProfileService(engine=engine, profiles=ProfileRepository(engine), cache=near("viewer_profiles", PROFILE_TTL),
                                invalidations=invalidations, ratings_changed=catalog.movies_changed),
        viewing=ViewingService(
            engine=engine, viewing=ViewingRepository(engine), catalog=catalog, answers=near("viewing", VIEWING_TTL),
            invalidations=invalidations,
            progress=ProgressWriter(engine=engine, store=resources.shared, flush_seconds=settings.progress_flush_seconds),
        ),
        media=MediaService(movies, locations=near("media", MEDIA_TTL), media_root=settings.media_dir),
        webhooks=WebhookService(WebhookEventRepository(engine), webhook_secret_map(settings)),
        message_ledger=MessageLedger(engine),
        uploads=UploadService(
            engine=engine, uploads=UploadRepository(engine), api_keys=key_rows, catalog=catalog,
            media_root=settings.media_dir, max_bytes=settings.upload_max_bytes,
            expire_after=timedelta(hours=settings.upload_expire_hours),
        ),
        plans=PlanService(engine=engine, plans=plan_rows, offer=near("plans", PLANS_TTL), invalidations=invalidations),
        payments=payments,
        subscriptions=subscriptions,
        idempotency=IdempotencyService(keys=IdempotencyKeyRepository(engine)),
        blog=BlogService(engine=engine, posts=BlogRepository(engine, reader=reader), invalidations=invalidations,
                         near=near("blog", BLOG_TTL), base_url=settings.public_base_url),
        sitemap=SitemapService(posts=BlogRepository(engine), near=near("sitemap", BLOG_TTL),
                               base_url=settings.public_base_url, page_urls=settings.sitemap_page_urls),
        comments=CommentService(engine=engine, comments=CommentRepository(engine, reader=reader), catalog=catalog,
                                invalidations=invalidations, pages=near("comments", COMMENTS_TTL),
                                limit=CommentRateLimit(settings)),
        moderation=ModerationService(engine=engine, comments=CommentRepository(engine), invalidations=invalidations),
    )
    services.playback = build_playback(settings, resources, catalog=catalog, viewing=services.viewing,
                                       plans=entitlements)
    resources.broker.attach_handlers(handlers := services.job_handlers(), ledger=services.message_ledger)
    declare_job_series(handlers)  # zero-valued series, so a first retry or dead letter shows in increase()
    return services


async def open_services(settings: Settings, **options) -> Services:
    return build_services(settings, await open_resources(settings), **options)


async def set_role_by_email(settings: Settings, *, email: str, role: str):
    """``vedina set-role EMAIL ROLE``: the operator's way to make the first admin."""
    services = await open_services(settings)
    try:
        return await services.accounts.set_role_by_email(email=email, role=role)
    finally:
        await services.close()
