"""The provider chain the settings describe, as a ``ProviderRouter``.

Configured providers are tried in order, each behind its own circuit breaker;
with none configured, the local model comes first when it is installed. The
extractive provider is always the last resort.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx

from core.breaker import CircuitBreaker
from core.breaker_shared import SharedBreakers
from core.config import ProviderSettings, Settings
from core.providers.base import Provider
from core.providers.choice import preferred_local_model, this_machine
from core.providers.extractive import ExtractiveProvider
from core.providers.llama_cpp import LlamaCppProvider, local_model_available
from core.providers.openai import OpenAIProvider
from core.providers.router import ProviderRouter
from core.types import BreakerTransition

log = logging.getLogger(__name__)


def build_router(
    settings: Settings,
    http: Callable[[], httpx.AsyncClient],
    on_transition: Callable[[BreakerTransition], object],
    shared: SharedBreakers | None = None,
) -> ProviderRouter:
    """The router for ``settings.providers``; ``http()`` gives the shared HTTP client.

    With ``shared``, the breakers of HTTP providers whose breaker settings say
    ``shared`` follow the state all instances publish (identity: name and base
    URL). A local model is each desktop's own: its breaker is never shared.
    """
    entries: list[tuple[Provider, CircuitBreaker]] = []
    fallback: Provider | None = None

    for p in settings.providers:
        provider: Provider
        if p.kind == "openai":
            provider = OpenAIProvider(p, http())
        elif p.kind == "extractive":
            fallback = ExtractiveProvider(p.name)
            continue
        elif p.kind == "llama_cpp":
            provider = LlamaCppProvider(p, settings.models_dir, n_threads=p.threads)
        else:
            log.warning("provider %s of kind %s is not available here; skipped", p.name, p.kind)
            continue
        breaker_settings = p.breaker or settings.breaker
        breaker = CircuitBreaker(p.name, breaker_settings)
        breaker.add_listener(on_transition)
        if shared is not None and p.kind == "openai" and breaker_settings.shared:
            lease_s = p.timeout_s + 5.0  # one call's deadline, and a margin
            shared.share(breaker, f"{p.name}|{p.base_url}", lease_s=lease_s)
        entries.append((provider, breaker))
    if not settings.providers:
        local = default_local_provider(settings)
        if local is not None:
            breaker = CircuitBreaker(local.name, settings.breaker)
            breaker.add_listener(on_transition)
            entries.append((local, breaker))
    return ProviderRouter(entries, fallback or ExtractiveProvider(), shared=shared)


def default_local_provider(settings: Settings) -> LlamaCppProvider | None:
    """The local model when it is installed (and not switched off), else None."""
    choice = settings.local_model
    if choice == "off":
        return None
    preferred: str | None = choice
    if choice == "auto":
        machine = this_machine()
        preferred = preferred_local_model(machine)
        if preferred is None:
            log.warning(
                "no local model: %.1f GB of memory available is too little to load one "
                "(answers come from the documents' own sentences; set local_model to force one)",
                (machine.available_bytes or 0) / (1 << 30),
            )
            return None
    name = local_model_available(settings.models_dir, preferred)
    if name is None:
        return None
    # A CPU model needs time: prefill of ~1,000 context tokens takes seconds.
    # Answers are capped at 320 tokens: measured on the Python docs questions,
    # the 0.5B model spends most of a 15-55 s answer decoding long examples
    # (~25 tokens/s on two cores) that the question did not ask for.
    local = ProviderSettings(
        name="local",
        kind="llama_cpp",
        model=name,
        timeout_s=180.0,
        first_token_timeout_s=90.0,
        max_tokens=320,
    )
    log.info("local model %s is the first provider", name)
    return LlamaCppProvider(local, settings.models_dir)
