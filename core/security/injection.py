"""A scoring prompt-injection detector for questions and retrieved document chunks.

Each rule is a regular expression with a category and a weight in [0, 1]. A
category scores the weight of its strongest match; the text scores
``1 - Π(1 - category score)``, so independent signals add up without passing 1.
Three adjustments keep look-alikes down:

* a match inside quotation marks or after reported-speech words ("like", "such
  as", "to", "tells the model to") counts less: it is being *mentioned*;
* text that discusses attacks (prompt injection, jailbreak, attackers, OWASP...)
  counts less throughout: security documentation is not an attack;
* text that addresses the assistant ("AI assistant:", "if you are an AI", "note
  to the model") counts more once any rule matched: that is how indirect
  injections in documents speak.

Invisible characters (zero-width, bidi overrides, Unicode tag characters) are a
category of their own and are removed before the other rules run, so
``ig\u200bnore previous instructions`` is still seen. Spans index into the
original text.

``score >= flag_at`` flags (the answer shows a warning, the audit log records it);
``score >= block_at`` blocks (a question is refused; a chunk is left out of the
context). Usage::

    report = InjectionDetector().scan(chunk.text, source="document")
    if report.level == "block": ...
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from core.types import Chunk

Source = Literal["question", "document"]
Level = Literal["allow", "flag", "block"]

CATEGORIES: Final = (
    "instruction_override",
    "persona_switch",
    "prompt_extraction",
    "exfiltration",
    "invisible_text",
    "tool_injection",
    "delimiter_spoofing",
)


@dataclass(frozen=True, slots=True)
class Span:
    """``text[start:end]`` of the scanned text matched ``rule`` of ``category``."""

    start: int
    end: int
    category: str
    rule: str
    weight: float  # after the quoting/discussion adjustments


@dataclass(frozen=True, slots=True)
class InjectionReport:
    score: float
    categories: tuple[str, ...]
    spans: tuple[Span, ...]
    level: Level = "allow"

    @property
    def flagged(self) -> bool:
        return self.level != "allow"

    @property
    def blocked(self) -> bool:
        return self.level == "block"


@dataclass(frozen=True, slots=True)
class _Rule:
    name: str
    category: str
    weight: float
    pattern: re.Pattern[str]


def _r(name: str, category: str, weight: float, pattern: str, *, case: bool = False) -> _Rule:
    flags = re.MULTILINE | (0 if case else re.IGNORECASE)
    return _Rule(name, category, weight, re.compile(pattern, flags))


_TARGETS = (
    r"(instructions?|prompts?|rules|directions|directives|guidelines|guidance|context|"
    r"messages?|polic(?:y|ies)|programming|constraints|orders|commands)"
)
_DROP = (
    r"(ignore|disregard|forget|skip|bypass|override|overwrite|set aside|discard|abandon|"
    r"drop|throw out|neglect)"
)
_URL_Q = r"(?:https?:)?//[^\s)\"'<>]*\?[^\s)\"'<>]*="

RULES: Final[tuple[_Rule, ...]] = (
    # ---- instruction override
    _r(
        "ignore-previous",
        "instruction_override",
        0.85,
        rf"\b{_DROP}\b[^.\n]{{0,40}}?"
        r"\b(previous|prior|above|earlier|preceding|all|any|every|initial|original|system|your)"
        rf"\b[^.\n]{{0,25}}?\b{_TARGETS}\b",
    ),
    _r(
        "ignore-rules-above",
        "instruction_override",
        0.8,
        rf"\b{_DROP}\s+(the|your|all|these|those|any|my)\s+(\w+\s+)?{_TARGETS}\s+"
        r"(above|before|so far|until now|you (were|have been) given|you received)\b",
    ),
    _r(
        "ignore-the-above",
        "instruction_override",
        0.75,
        rf"\b{_DROP}\s+(the\s+|everything\s+|all\s+)?(above|preceding|foregoing)\b"
        r"(?!\s+(table|figure|image|chart|example|section|paragraph|list|code|output|noise))",
    ),
    _r(
        "forget-everything",
        "instruction_override",
        0.8,
        r"\bforget\s+(everything|all)\b[^.\n]{0,20}\b(told|said|above|before|know)\b",
    ),
    _r(
        "stop-following",
        "instruction_override",
        0.75,
        r"\b(do not|don't|stop|no longer)\s+(follow|obey)(ing)?\s+(the\s+|your\s+|any\s+)?"
        r"(system|previous|prior|original|earlier)?\s*(instructions|rules|prompt|guidelines)",
    ),
    _r(
        "new-instructions",
        "instruction_override",
        0.6,
        r"\b(new|updated|real|actual)\s+(instructions?|rules?|task|directives?|policy)\s*:",
    ),
    _r(
        "if-you-are-an-ai",
        "instruction_override",
        0.55,
        r"\bif\s+you\s+are\s+an?\s+(ai|llm|language model|assistant|chatbot|bot|agent)\b|"
        r"\b(note|message)\s+(to|for)\s+(the|any)\s+(ai|assistant|model|llm)\b",
    ),
    _r(
        "ignore-previous-multilingual",
        "instruction_override",
        0.8,
        r"\bignor(e[zr]?|a|iere|ieren)\s+(toutes\s+|todas\s+|alle\s+)?(les|las|die)?\s*"
        r"(instructions|instrucciones|anweisungen)\s+(pr\u00e9c\u00e9dentes|anteriores)|"
        r"\bignoriere\s+(alle\s+)?(vorherigen|bisherigen)\s+(anweisungen|instruktionen)",
    ),
    # ---- persona switch
    _r(
        "you-are-now",
        "persona_switch",
        0.45,
        r"\byou\s+are\s+now\b(?!\s+(ready|able|logged|connected|done|set|signed|subscribed|"
        r"registered|in the|on the|at\b|finished|free to|all set|leaving|entering the|viewing))",
    ),
    _r(
        "you-are-now-persona",
        "persona_switch",
        0.8,
        r"\byou\s+are\s+now\s+(in\s+)?(an?\s+|the\s+)?(DAN|evil|unrestricted|unfiltered|"
        r"jailbroken|uncensored|developer mode|god mode|hacker|[A-Z]\w*(GPT|Bot|AI))\b",
    ),
    _r(
        "from-now-on-you",
        "persona_switch",
        0.7,
        r"\b(from now on|henceforth|starting now),?\s+you\s+(are|will be|will act|shall|must be)\b",
    ),
    _r("you-will-now", "persona_switch", 0.65, r"\byou\s+will\s+now\s+(act|behave|be|respond)\b"),
    _r("no-longer", "persona_switch", 0.6, r"\byou\s+are\s+no\s+longer\b"),
    _r(
        "pretend",
        "persona_switch",
        0.5,
        r"\b(pretend|imagine)\s+(that\s+)?(you\s+are|you're|to\s+be)\b",
    ),
    _r(
        "act-as-ai",
        "persona_switch",
        0.55,
        r"\b(act|behave|respond|answer)\s+as\s+(if\s+you\s+were\s+)?(an?\s+)?(\w+\s+){0,2}?"
        r"(ai|assistant|model|bot|chatbot|hacker|jailbroken|unrestricted|unfiltered|evil)\b",
    ),
    _r("roleplay", "persona_switch", 0.6, r"\brole[\s-]?play\s+as\b"),
    _r("persona", "persona_switch", 0.6, r"\b(switch|change|new)\s+(your\s+)?persona\b"),
    _r(
        "no-restrictions",
        "persona_switch",
        0.5,
        r"\b(no|without(\s+any)?)\s+(restrictions|limitations|limits|filters|content\s+polic"
        r"(y|ies)|rules|ethical\s+guidelines|safety\s+(rules|guidelines))\b",
    ),
    _r(
        "jailbreak-mode",
        "persona_switch",
        0.6,
        r"\b(do anything now|DAN mode|god mode|jailbreak mode|jailbroken|evil mode)\b",
    ),
    _r(
        "in-dev-mode",
        "persona_switch",
        0.8,
        r"\b(you are|you're)\s+(now\s+)?in\s+(developer|god|DAN|debug)\s+mode\b|"
        r"\bdeveloper mode has no\b",
    ),
    # ---- system prompt extraction
    _r(
        "reveal-system-prompt",
        "prompt_extraction",
        0.8,
        r"\b(reveal|show|print|repeat|output|display|leak|dump|tell me|give me|share|"
        r"what (are|were|is))\b[^.?\n]{0,30}?\b(your|the)\s+(full\s+|entire\s+|complete\s+)?"
        r"(system|initial|original|hidden|secret|developer|internal|first)\s+"
        r"(prompt|instructions?|message|rules|configuration)",
    ),
    _r(
        "reveal-your-prompt",
        "prompt_extraction",
        0.8,
        r"\b(reveal|print|output|repeat|dump|leak|show me|tell me)\s+(me\s+)?your\s+(\w+\s+){0,2}?"
        r"(prompt|instructions|rules|configuration)\b",
    ),
    _r(
        "repeat-above",
        "prompt_extraction",
        0.75,
        r"\b(repeat|print|output|copy|echo)\b[^.\n]{0,30}\b(text|everything|words|all)\s+"
        r"(above|before)\b",
    ),
    _r("verbatim", "prompt_extraction", 0.3, r"\b(verbatim|word for word|quote it exactly)\b"),
    _r(
        "prompt-you-were-given",
        "prompt_extraction",
        0.65,
        r"\b(prompt|instructions|rules|guidelines)\s+(that\s+)?you\s+(were|have been)\s+"
        r"(given|configured|initiali[sz]ed|programmed|provided|told)\b|"
        r"\b(instructions|prompt)\s+(that\s+)?you\s+(received|got)\b",
    ),
    _r(
        "start-of-conversation",
        "prompt_extraction",
        0.5,
        r"\b(beginning|start|top)\s+of\s+(this|the|our)\s+(conversation|chat|session|context)\b",
    ),
    # ---- exfiltration
    _r("md-image-query", "exfiltration", 0.4, rf"!\[[^\]]{{0,100}}\]\(\s*<?{_URL_Q}[^)]*\)"),
    _r(
        "url-placeholder",
        "exfiltration",
        0.8,
        rf"{_URL_Q}[^\s)\"'<>]*?(\{{[^}}\n]*\}}|\[[^\]\n]*\]|<[^>\n]*>|\$[A-Za-z_]+|%7B)",
    ),
    _r("url-base64", "exfiltration", 0.6, rf"{_URL_Q}[A-Za-z0-9+/_-]{{40,}}={{0,2}}"),
    _r(
        "html-img-query",
        "exfiltration",
        0.45,
        rf"<img\b[^>]*src\s*=\s*[\"']?{_URL_Q}",
    ),
    _r(
        "send-data-to-url",
        "exfiltration",
        0.55,
        r"\b(send|post|upload|transmit|forward|leak|append|add|include|encode)\b[^.\n]{0,60}"
        r"\b(summary|conversation|chat|history|answer|question|data|documents?|api key|password|"
        r"secret|token)\b[^.\n]{0,60}(https?://|\burl\b|\blink\b|\?[a-z]+=)",
    ),
    _r(
        "render-image",
        "exfiltration",
        0.35,
        r"\b(render|display|load)\s+(this|the following|it as an?)\s+(image|picture|pixel)\b",
    ),
    # ---- tool / command injection
    _r("rm-rf-root", "tool_injection", 0.7, r"\brm\s+-rf\s+(/|~|\*|\$HOME)(?=[\s`'\"]|$)"),
    _r("pipe-to-shell", "tool_injection", 0.35, r"\b(curl|wget)\b[^|\n]{0,120}\|\s*(ba|z)?sh\b"),
    _r(
        "secrets-paths",
        "tool_injection",
        0.6,
        r"/etc/(passwd|shadow)\b|~/\.ssh\b|\bid_rsa\b|\.aws/credentials",
    ),
    _r("reverse-shell", "tool_injection", 0.8, r"\bnc['\"]?\s*,?\s*['\"]?-e\b|/dev/tcp/"),
    _r(
        "powershell-enc", "tool_injection", 0.7, r"\bpowershell(\.exe)?\s+-(enc|encodedcommand|e)\b"
    ),
    _r("base64-to-shell", "tool_injection", 0.7, r"base64\s+(-d|--decode)\s*\|\s*(ba)?sh\b"),
    _r("os-system", "tool_injection", 0.35, r"\bos\.system\s*\("),
    _r(
        "tool-call-markup",
        "tool_injection",
        0.6,
        r"</?(tool_call|function_call|tool_use)>|\"(tool|function)\"\s*:\s*\"|"
        r"\"name\"\s*:\s*\"\w+\"\s*,\s*\"arguments\"",
    ),
    _r(
        "call-named-tool",
        "tool_injection",
        0.6,
        r"\b(call|invoke|use|run|execute|trigger)\s+(the\s+|your\s+)?[a-z]+(_[a-z]+)+\s+"
        r"(tool|function)\b",
    ),
    _r(
        "use-your-tool",
        "tool_injection",
        0.6,
        r"\buse\s+your\s+(shell|terminal|browser|code|python|email|file|http)[\s_-]?"
        r"(tool|access|interpreter)?\b",
    ),
    _r(
        "run-this-command",
        "tool_injection",
        0.3,
        r"\b(execute|run)\s+(this|the following)\s+(shell\s+|python\s+|bash\s+)?"
        r"(command|code|script|python)\b",
    ),
    # ---- delimiter spoofing
    _r(
        "chat-role-token",
        "delimiter_spoofing",
        0.8,
        r"<\|im_start\|>\s*(system|user|assistant)\b|<\|(system|user|assistant)\|>",
    ),
    _r(
        "chat-token",
        "delimiter_spoofing",
        0.35,
        r"<\|(im_start|im_end|endoftext|eot_id|start_header_id|end_header_id)\|>",
    ),
    _r("llama-sys", "delimiter_spoofing", 0.6, r"<<SYS>>|<</SYS>>"),
    _r("llama-inst", "delimiter_spoofing", 0.3, r"\[/?INST\]"),
    _r(
        "closing-tag-line",
        "delimiter_spoofing",
        0.7,
        r"^[ \t]*</\s*(context|documents?|retrieved_\w+|passages?|sources?|data|system|"
        r"instructions?|user_input|search_results)\s*>[ \t]*$",
    ),
    _r(
        "closing-tag",
        "delimiter_spoofing",
        0.3,
        r"</\s*(context|documents?|retrieved_\w+|passages?|sources?|system|instructions?|"
        r"user_input|search_results)\s*>",
    ),
    _r("system-tag", "delimiter_spoofing", 0.6, r"<\s*system\s*>"),
    _r("system-link", "delimiter_spoofing", 0.6, r"\[(system|admin|developer|assistant)\]\(#"),
    _r(
        "role-heading-colon",
        "delimiter_spoofing",
        0.7,
        r"^[ \t]*#{1,6}[ \t]*(system|instructions?|assistant|user|human)([ \t]+(prompt|message))?"
        r"[ \t]*:",
    ),
    _r(
        "role-heading",
        "delimiter_spoofing",
        0.35,
        r"^[ \t]*#{1,6}[ \t]*(system|instructions?|assistant)([ \t]+(prompt|message))?[ \t]*$",
    ),
    _r("system-turn", "delimiter_spoofing", 0.55, r"^[ \t]*SYSTEM\s*:\s*\S", case=True),
    _r(
        "fake-turns",
        "delimiter_spoofing",
        0.5,
        r"^[ \t]*(Human|User)\s*:[^\n]*\n[ \t]*(Assistant|AI)\s*:|"
        r"^[ \t]*Assistant\s*:\s*(Sure|OK|Okay|Certainly|Of course)\b",
    ),
    _r(
        "end-of-context",
        "delimiter_spoofing",
        0.6,
        r"(-{3,}|={3,}|\*{3,})\s*end of (the )?(context|documents?|input|data|passages?)",
    ),
    _r(
        "END-OF",
        "delimiter_spoofing",
        0.45,
        r"\bEND OF (THE )?(CONTEXT|DOCUMENTS?|INPUT|DATA|PASSAGES?|PROMPT)\b",
        case=True,
    ),
)

_ADDRESS = re.compile(
    r"\b(ai|assistant|language model|llm|chatbot|ai agent|ai model|agent)\s*[:,]|"
    r"\bif you are an? (ai|language model|llm|assistant|bot)\b|"
    r"\bnote to the (ai|assistant|model|llm)\b|"
    r"\b(the\s+)?(assistant|ai|model),?\s+(you\s+)?(must|should|will|shall)\b",
    re.IGNORECASE,
)
_DISCUSSION = re.compile(
    r"(?<![@.\w])(prompt[\s-]injections?|jailbreaks?|attackers?|attacks?|researchers?|owasp|"
    r"mitigations?|defen[cs]es?|malicious|exfiltrate|red[\s-]team\w*)\b(?![@.]\w)",
    re.IGNORECASE,
)
_REPORTED = re.compile(
    r"\b(to|into|not|like|as|such as|e\.g\.,?|i\.e\.,?|called|named|says?|said|writes?|wrote|"
    r"tells?|telling|asks?|asking|phrases?|prompts?)\s*[\"'“‘`«]?\s*$",
    re.IGNORECASE,
)
# Backticks are code, not quotation: a command in backticks is still a command.
_OPEN_QUOTES = "\"'“‘«"
_CLOSE_QUOTES = "\"'”’»"

# ----------------------------------------------------------------- invisible characters

_ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff\u180e")
_BIDI_OVERRIDE = frozenset("\u202a\u202b\u202c\u202d\u202e")
_BIDI_ISOLATE = frozenset("\u2066\u2067\u2068\u2069")


def _is_tag(ch: str) -> bool:
    return 0xE0000 <= ord(ch) <= 0xE007F


def _joins_script(prev: str, nxt: str) -> bool:
    """ZWJ/ZWNJ legitimately join emoji and letters of Arabic-script and Indic text."""

    def joinable(c: str) -> bool:
        o = ord(c) if c else 0
        return (
            o >= 0x1F000
            or 0x2600 <= o <= 0x27BF
            or o == 0xFE0F
            or 0x0600 <= o <= 0x08FF
            or 0x0900 <= o <= 0x0DFF
            or 0xFB50 <= o <= 0xFEFC
        )

    return joinable(prev) and joinable(nxt)


def strip_invisible(text: str) -> tuple[str, list[int], list[int]]:
    """(visible text, its index -> original index, original indexes of suspicious chars).

    Legit joiners (emoji ZWJ sequences, Persian ZWNJ, subdivision-flag tags) are
    kept and not suspicious; every other invisible character is removed.
    """
    # The one rule lives in core.security.sanitize (it also keeps legit joiners).
    from core.security.sanitize import visible_text

    visible = visible_text(text)
    return visible.text, list(visible.index), list(visible.hidden)


def _in_flag_sequence(text: str, i: int) -> bool:
    j = i
    while j > 0 and _is_tag(text[j - 1]):
        j -= 1
    return j > 0 and text[j - 1] == "\U0001f3f4"


def _invisible_spans(text: str, suspicious: list[int]) -> list[Span]:
    if not suspicious:
        return []
    tags = [i for i in suspicious if _is_tag(text[i])]
    overrides = [i for i in suspicious if text[i] in _BIDI_OVERRIDE]
    isolates = [i for i in suspicious if text[i] in _BIDI_ISOLATE]
    zero = [i for i in suspicious if text[i] in _ZERO_WIDTH]
    spans: list[Span] = []
    if tags:
        spans.append(Span(tags[0], tags[-1] + 1, "invisible_text", "tag-characters", 0.9))
    if overrides:
        spans.append(Span(overrides[0], overrides[-1] + 1, "invisible_text", "bidi-override", 0.7))
    if isolates:
        spans.append(Span(isolates[0], isolates[-1] + 1, "invisible_text", "bidi-isolate", 0.35))
    if zero:
        weight = 0.6 if len(zero) >= 3 else 0.25
        spans.append(Span(zero[0], zero[-1] + 1, "invisible_text", "zero-width", weight))
    return spans


# ----------------------------------------------------------------- the detector


def _mention_factor(visible: str, start: int, end: int) -> float:
    """< 1 when the match is quoted or reported ("tells the model to ignore ...")."""
    before = visible[max(0, start - 40) : start]
    after = visible[end : end + 80].split("\n", 1)[0]
    stripped = before.rstrip()
    phrase = " " in visible[start:end]  # a quoted *phrase*; 'nc','-e' is code, not a quote
    quoted = (
        phrase
        and bool(stripped)
        and stripped[-1] in _OPEN_QUOTES
        and any(q in after[:40] for q in _CLOSE_QUOTES)
    )
    if quoted:
        return 0.35
    if _REPORTED.search(before):
        return 0.4
    return 1.0


def combine(weights: list[float]) -> float:
    """Noisy-OR: independent signals add up, the total stays below 1."""
    product = 1.0
    for w in weights:
        product *= 1.0 - max(0.0, min(1.0, w))
    return 1.0 - product


class InjectionDetector:
    """Score text for prompt injection; ``flag_at`` <= score < ``block_at`` flags."""

    def __init__(
        self,
        *,
        flag_at: float = 0.5,
        block_at: float = 0.8,
        address_boost: float = 0.15,
        discussion_factor: float = 0.5,
    ) -> None:
        if not 0.0 < flag_at <= block_at <= 1.0:
            raise ValueError("need 0 < flag_at <= block_at <= 1")
        self.flag_at = flag_at
        self.block_at = block_at
        self.address_boost = address_boost
        self.discussion_factor = discussion_factor

    def scan(self, text: str, *, source: Source = "question") -> InjectionReport:
        visible, index, suspicious = strip_invisible(text)
        spans = _invisible_spans(text, suspicious)
        discussing = _DISCUSSION.search(visible) is not None
        for rule in RULES:
            for m in rule.pattern.finditer(visible):
                if m.end() <= m.start():
                    continue
                weight = rule.weight * _mention_factor(visible, m.start(), m.end())
                if discussing:
                    weight *= self.discussion_factor
                if source == "document" and rule.category == "delimiter_spoofing":
                    weight = min(1.0, weight * 1.15)  # a chunk has no reason to close our context
                start = index[m.start()]
                end = index[m.end() - 1] + 1
                spans.append(Span(start, end, rule.category, rule.name, round(weight, 4)))
        best: dict[str, float] = {}
        for s in spans:
            best[s.category] = max(best.get(s.category, 0.0), s.weight)
        score = combine(list(best.values()))
        if best and _ADDRESS.search(visible):
            score = min(1.0, score + self.address_boost)
        categories = tuple(c for c in sorted(best, key=lambda c: (-best[c], c)) if best[c] >= 0.2)
        level: Level = (
            "block" if score >= self.block_at else "flag" if score >= self.flag_at else "allow"
        )
        spans.sort(key=lambda s: (s.start, -s.weight))
        return InjectionReport(round(score, 4), categories, tuple(spans), level)

    def scan_chunks(self, chunks: Iterable[Chunk]) -> list[tuple[Chunk, InjectionReport]]:
        """The chunks of a document that read like instructions to a model, with why."""
        found = []
        for chunk in chunks:
            report = self.scan(chunk.text, source="document")
            if report.flagged:
                found.append((chunk, report))
        return found


_DEFAULT = InjectionDetector()


def scan(text: str, *, source: Source = "question") -> InjectionReport:
    """Scan with the default thresholds (flag at 0.5, block at 0.8)."""
    return _DEFAULT.scan(text, source=source)
