"""Security helpers: prompt-injection scoring, input/output sanitising, secrets, paths.

``injection`` scores questions and document chunks for prompt injection;
``sanitize`` cleans questions and renders answers as Markdown that can load
nothing; ``secrets`` keeps API keys in the OS keyring; ``paths`` is the one rule
for paths a person hands Archivist; ``ratelimit`` limits asks per session.
"""

from core.security.injection import InjectionDetector, InjectionReport, Span, scan
from core.security.sanitize import clean_question, render_safe_markdown, strip_zero_width

__all__ = [
    "InjectionDetector",
    "InjectionReport",
    "Span",
    "clean_question",
    "render_safe_markdown",
    "scan",
    "strip_zero_width",
]
