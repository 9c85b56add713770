"""Security helpers: prompt-injection scoring and input/output sanitising.

``injection`` scores questions and document chunks for prompt injection;
``sanitize`` cleans questions and renders answers as
Markdown that can load nothing.
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
