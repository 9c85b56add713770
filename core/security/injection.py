"""A scoring prompt-injection detector for questions and document chunks.

Each rule is a regular expression with a category and a weight in [0, 1]. A rule
scores the weight of its strongest match; the text scores ``1 - Π(1 - rule
score)``, so independent signals add up without passing 1. Everyday words of an
override ("instructions", "rules", "system", "ignore") are not signals on their
own; what is, is whom they concern and whom the text speaks to:

* the assistant's own instructions: "*your* rules", "the prompt *you were
  given*", "the instructions *above*", dropped, voided or revealed;
* a model addressed inside a document ("AI assistant reading this:", "if you
  are an AI", "note for the language model") and what such text asks of it
  ("tell the user", "when asked about", "secretly"): each alone is weak, together
  they flag (document rules; a question is addressed to the assistant anyway);
* personas without rules, fake chat turns and closing tags, exfiltration URLs,
  shell commands for agents, and the same overrides in twelve other languages.

Adjustments keep look-alikes down: a match inside quotation marks or after
reported speech ("phrases like", "tells the model to") counts less, and so does
all of a text that discusses attacks (security documentation is not an attack).
Encodings do not hide an override: leetspeak, words spelled out letter by
letter, ROT13, base64 and hex tokens and Unicode tag characters are decoded and
the override rules run on the decoded reading too (category ``encoded_text``).
Invisible characters (zero-width, bidi overrides, tag characters) are a
category of their own and are removed before the other rules run, so
``ig\u200bnore previous instructions`` is still seen. Spans index into the
original text.

Weights and thresholds were chosen on ``tests/eval/injection_tuning.jsonl`` and
two real manuals (the Debian handbook, the Python 3.11 docs); the frozen
``injection_test.jsonl`` only reports (``tests/bench/injection.py``).

``score >= flag_at`` flags; ``score >= block_at`` blocks. What a level means is the
caller's policy (``SecuritySettings``): a flagged question is answered from the
documents only, with a notice; a flagged passage is kept out of the prompt.
Usage::

    report = InjectionDetector().scan(chunk.text, source="document")
    if report.flagged: ...
"""

from __future__ import annotations

import base64
import binascii
import codecs
import dataclasses
import re
from dataclasses import dataclass
from typing import Final, Literal

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
    "addressed_to_model",
    "model_command",
    "encoded_text",
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
    only: Source | None = None  # the rule applies to this source only
    need: tuple[re.Pattern[str], ...] = ()  # cheap tests the text must all pass first


def _r(
    name: str,
    category: str,
    weight: float,
    pattern: str,
    *,
    case: bool = False,
    only: Source | None = None,
) -> _Rule:
    flags = re.MULTILINE | (0 if case else re.IGNORECASE)
    return _Rule(name, category, weight, re.compile(pattern, flags), only)


# ---------------------------------------------------------------- the words of an override
#
# What separates an attack from an everyday sentence is rarely a single word ("rules",
# "instructions", "system", "ignore" are everywhere in manuals and questions). It is whom
# the words are about: *your* instructions, the prompt *you were given*, the rules *above*;
# and whom the text speaks to: a model ("AI assistant reading this:", "if you are an AI").

# What an assistant is told: the things an override throws away or an extraction reveals.
_CORE_TARGET = (
    r"(?:instructions?|prompts?|rules?|guidelines?|guidance|directions|directives?|"
    r"programming|constraints?|guardrails?|orders|context|system (?:message|prompt)|"
    r"developer message)"
)
# "Your" makes more words the assistant's: your filters, your configuration, your policy.
_TARGET = (
    r"(?:instructions?|prompts?|rules?|guidelines?|guidance|directions|directives?|"
    r"programming|constraints?|guardrails?|orders|commands|restrictions|filters|"
    r"(?:content |safety )?polic(?:y|ies)|system (?:message|prompt)|developer message|"
    r"configuration|settings|training|context)"
)
# The assistant's own: "your", "thy", "its" (told about itself), "the ... you were given".
_OWN = r"(?:your|thy|yer|ur)"
_GIVEN = (
    r"(?:you|thou)\s+(?:(?:were|wast|have been|'ve been|are)\s+(?:given|told|set up|"
    r"configured|programmed|trained|instructed|provided|fed|initiali[sz]ed)|got|received|"
    r"follow|"
    r"(?:operate|work|run)\s+under)\b"
)
_QUALIFIER = (
    r"(?:previous|prior|above|earlier|preceding|foregoing|initial|original|system|hidden|"
    r"secret|all|any|every)"
)
_PREV_ONLY = r"(?:previous|prior|above|earlier|preceding|foregoing)"
_DROP = (
    r"(?:ignore|ignoring|disregard|disregarding|forget|forgetting|skip|bypass|override|"
    r"overwrite|overrule|set aside|discard|abandon|drop|throw out|throw away|neglect|scrap|"
    r"ditch|nevermind|never mind|forsake|cancel|erase|delete|remove|suspend|lift|"
    r"stop following|stop obeying|disable|turn off|switch off)"
)
_REVEAL = (
    r"(?:reveal|show|print|repeat|output|display|leak|dump|tell me|give me|share|paste|"
    r"send|translate|render|encode|summari[sz]e|paraphrase|spell out|write|list|convert|"
    r"recite|copy|echo|type out|read out|quote|provide|expose|disclose|return)"
)
# An object an assistant holds and a document or a question should never ask it to hand over.
_SECRET = (
    r"(?:(?:admin|root|user'?s?|their|your|the)\s+){0,2}(?:passwords?|passphrases?|api[\s_-]?keys?|"
    r"credentials|secret keys?|access tokens?|credit card (?:numbers?|details)|pin codes?)"
)
# The reader a hidden instruction speaks to.
_AI = (
    r"(?:a\.?i\.?(?:\s+(?:assistant|agent|model|system|tool|tutor|reader|reviewer|screener|"
    r"screening tool|bot)s?)?|assistants?|chat\s?bots?|bots?|(?:large\s+)?language\s+models?|"
    r"llms?|models?|copilots?|agents?|summari[sz]ers?|reviewer bots?|gpts?)"
)
_URL_Q = r"(?:https?:)?//[^\s)\"'<>]*\?[^\s)\"'<>]*="

# Other languages: verbs of dropping, words for instructions, "previous/your", the
# system prompt, and the assistant as addressed. Verb-final languages (Japanese,
# Turkish) put the verb after its object.
_ML_DROP_ONLY = (
    r"(?:ignor(?:a|ez|ar|iere|ieren|ujcie|uj)|zignoruj|olvid[ae]|omit[ae]|oublie[zr]?|"
    r"vergiss|vergessen sie|dimentica|esque[cç]a|esquece|negeer|vergeet|zapomnij|"
    r"игнорируй(?:те)?|забудь(?:те)?|проигнорируй|ignorera|glöm|unut|忽略|忽视|无视|不要理会)"
)
# With the forms English shares ("ignore"): only next to another language's words.
_ML_DROP = rf"(?:{_ML_DROP_ONLY}|\bignores?\b)"
_ML_TARGET = (
    r"(?:instrucciones|indicaciones|reglas|instructions|consignes|règles|directives|"
    r"anweisungen|instruktionen|regeln|vorgaben|istruzioni|regole|instruções|regras|"
    r"instructies|regels|instrukcje|polecenia|zasady|инструкции|указания|правила|"
    r"instruktioner|regler|talimat\w*|指令|规则|指示|命令|ルール)"
)
_ML_QUALIFIER = (
    r"(?:anteriores|previas|tus|sus|précédentes|tes|vos|vorherigen|bisherigen|deine|ihre|"
    r"precedenti|tue|suas|tuas|eerdere|vorige|je|poprzednie|swoje|wszystkie|предыдущие|"
    r"прежние|свои|твои|все|tidigare|dina|alla|önceki|tüm|之前|以前|先前|上述|所有|これまで)"
)
_ML_SYSTEM_PROMPT = (
    r"(?:prompt\s+(?:del\s+|di\s+|do\s+)?(?:sistema|système|systeme|inicial)|systemprompt\w*|"
    r"systeemprompt|системн\w+\s+промпт\w*|系统提示|系統提示|システムプロンプト|"
    r"sistem istem\w*|prompt systemowy|prompt système)"
)
_ML_AI = (
    r"(?:assistant(?:e|en)?\s+(?:ia|ai|ki)|asistente|assistente|ki-assistent\w*|"
    r"asystent\w*(?:\s+ai)?|ии-ассистент\w*|ассистент\w*|人工智能助手|ai助手|aiアシスタント|"
    r"アシスタント|yapay zeka asistan\w*|ai-assistent\w*|die ki|la ia|l'ia|l'assistente ai|"
    r"de ai|ai)"
)

_RULES: Final[tuple[_Rule, ...]] = (
    # ---- instruction override: drop what the assistant was told
    _r(
        "drop-your-instructions",
        "instruction_override",
        0.85,
        rf"\b{_DROP}\b[^.\n]{{0,40}}?\b{_OWN}\s+(?:(?!\w+'s\b)[\w-]+\s+){{0,2}}?{_TARGET}\b",
    ),
    _r(
        "drop-given-instructions",
        "instruction_override",
        0.85,
        rf"\b{_DROP}\b[^.\n]{{0,40}}?\b(?:{_TARGET}|everything|whatever|anything|all)\b"
        rf"[^.\n]{{0,25}}?\b{_GIVEN}|\b{_DROP}\b[^.\n]{{0,30}}?\b{_TARGET}\s+(?:that\s+)?you\s+"
        r"have\b",
    ),
    _r(
        "drop-previous-instructions",
        "instruction_override",
        0.85,
        rf"\b{_DROP}\b[^.\n]{{0,30}}?\b{_QUALIFIER}\b[^.\n]{{0,25}}?\b{_CORE_TARGET}\b",
    ),
    _r(
        "drop-the-above",
        "instruction_override",
        0.75,
        rf"\b{_DROP}\s+(?:the\s+|everything\s+|all\s+)?(?:above|preceding|foregoing)\b"
        r"(?!\s+(?:table|figure|image|chart|example|section|paragraph|list|code|output|noise))",
    ),
    _r(
        "drop-the-question",
        "instruction_override",
        0.7,
        rf"\b{_DROP}\s+(?:the\s+)?(?:user'?s?\s+)?(?:question|request|query|prompt)s?\b"
        r"(?:\s+(?:you were asked|you received))?(?=[^\n]{0,60}\b(?:instead|and|reply|say|"
        r"answer|respond|output|tell|write|explain|praise|recommend)\b)",
    ),
    _r(
        "drop-the-user",
        "instruction_override",
        0.6,
        rf"\b{_DROP}\s+the\s+user\b(?!'|\s+(?:interface|manual|guide|account|settings|name))",
    ),
    _r(
        "your-rules-void",
        "instruction_override",
        0.8,
        rf"\b{_OWN}\s+(?:\w+\s+){{0,2}}?{_TARGET}\s+(?:are|is|were|have been|has been|"
        r"no longer|don't|do not|won't|will not)\s+(?:now\s+)?(?:cancel+ed|void|null|revoked|"
        r"suspended|lifted|removed|updated|changed|replaced|obsolete|over|gone|off|disabled|"
        r"apply|applies|matter|count|valid|in effect|exist)",
    ),
    _r(
        "previous-rules-void",
        "instruction_override",
        0.6,
        rf"\b{_PREV_ONLY}\s+(?:\w+\s+)?{_TARGET}\s+(?:are|is|were)\s+(?:now\s+)?(?:void|"
        r"null|cancel+ed|revoked|a test|fake|no longer valid)",
    ),
    _r(
        "above-was-a-test",
        "instruction_override",
        0.7,
        rf"\b(?:the\s+)?{_TARGET}\s+(?:above|before this|so far)\s+(?:was|were|is|are)\s+"
        r"(?:only\s+|just\s+)?(?:a test|fake|wrong|void|obsolete|irrelevant|a joke)|"
        r"\b(?:everything|anything|all)\s+(?:before|above)\s+(?:this|my|the following)\s+"
        r"(?:\w+\s+)?(?:is|was)\s+(?:now\s+)?(?:obsolete|void|irrelevant|fake|a test|cancel+ed)",
    ),
    _r(
        "stop-obeying",
        "instruction_override",
        0.8,
        r"\b(?:do not|don't|stop|no longer|never)\s+(?:follow|obey|listen to|respect|heed)(?:ing)?"
        rf"\s+(?:{_OWN}|the|any)\s+(?:\w+'s\s+)?(?:\w+\s+)?(?:{_TARGET}|developers?|creators?|"
        r"operators?|makers?|system)\b",
    ),
    _r(
        "freed-from",
        "instruction_override",
        0.8,
        r"\b(?:freed|released|liberated|unshackled|unchained|exempt(?:ed)?)\s+from\s+"
        rf"(?:{_OWN}|all|the|any)\s+(?:\w+\s+)?{_TARGET}",
    ),
    _r(
        "new-instructions",
        "instruction_override",
        0.35,
        r"\b(?:new|updated|real|actual|true)\s+(?:instructions?|rules?|task|directives?|"
        r"system prompt)(?:\s+for\s+(?:this|the|our)\s+(?:chat|conversation|session|reply|"
        r"answer))?\s*:",
    ),
    _r(
        "real-instructions-are",
        "instruction_override",
        0.45,
        r"\b(?:the\s+|your\s+|their\s+|its\s+)(?:real|actual|true|new)\s+(?:instructions|rules|"
        r"system prompt|prompt|task)\s+(?:are|is)\b|\b(?:their|its|your)\s+new\s+"
        r"(?:system prompt|instructions|rules|prompt)\b",
    ),
    _r(
        "one-job-now",
        "instruction_override",
        0.45,
        r"\byour\s+(?:one|only|new|real)\s+(?:job|task|goal|purpose)\s+(?:now|is)\b",
    ),
    _r(
        "override-colon",
        "instruction_override",
        0.45,
        r"(?:^|[.!]\s+)(?:system\s+)?override\s*(?:for\s+\w+\s*)?:|\bsystem override\b",
    ),
    _r(
        "no-need-to-cite",
        "instruction_override",
        0.4,
        r"\b(?:you\s+)?(?:don't|do not|no longer|won't|will not)\s+(?:need|have)\s+to\s+"
        r"(?:cite|check|follow|use|obey|quote)\b|\b(?:skip|without|no|switch off|turn off|"
        r"disable)\s+(?:all\s+|the\s+|any\s+)?(?:citations?|citation checking|sources|"
        r"(?:policy|safety|security|content) (?:checks?|filters?)|the documents check)\b|"
        r"\b(?:make up|invent|fabricate)\s+(?:an?\s+)?(?:answer|details|facts|sources)\b|"
        r"\binvent details\b|\bwithout\s+(?:using\s+|checking\s+|reading\s+|citing\s+)?"
        r"(?:the\s+|any\s+)?"
        r"(?:knowledge base|documents|sources|citations)\b|\bstop\s+(?:quoting|citing|using)\s+"
        r"(?:the\s+)?(?:sources|documents|passages)\b",
    ),
    _r(
        "authority-claim",
        "instruction_override",
        0.45,
        r"\b(?:i am|i'm|this is)\s+(?:your|the)\s+(?:developer|creator|admin(?:istrator)?|"
        r"operator|owner|programmer|system administrator|maker)\b(?:\s+(?:now|speaking))?|"
        r"\b(?:the\s+)?(?:admin|administrator|developers?|operator)\s+(?:says|said)\s+"
        r"(?:that\s+)?you\b|\b(?:i|we)\s+(?:authori[sz]e|allow|permit)\s+you\s+to\b|"
        r"\byou(?:'re| are| have been)\s+(?:now\s+)?(?:allowed|permitted|authori[sz]ed)\s+to\s+"
        r"(?:skip|ignore|bypass|break|drop|reveal|disregard|forget)",
    ),
    _r(
        "reset-yourself",
        "instruction_override",
        0.4,
        r"\breset\s+yourself\b|\b(?:debug|maintenance|admin)\s+mode\s+(?:on|enabled|activated)\b",
    ),
    _r(
        "translate-and-obey",
        "instruction_override",
        0.6,
        r"\b(?:translate|decode|decipher|reverse|unscramble)\b[^.\n]{0,60}?\band\s+"
        r"(?:then\s+)?(?:obey|follow|execute|do what it says|act on|comply|carry (?:it|them) out)",
    ),
    _r(
        "decode-and-follow",
        "encoded_text",
        0.65,
        r"\b(?:decode|decipher|rot-?13|base-?64|hex|leetspeak|backwards|reversed)\b[^\n]{0,40}?"
        r"\b(?:follow|obey|execute|do what it says|act on|comply with|and do it|carry out)\b|"
        r"\b(?:act on|follow|obey|execute)\s+(?:the\s+)?(?:following\s+)?(?:hex|base-?64|"
        r"rot-?13|encoded)\b",
    ),
    _r(
        "ignore-previous-multilingual",
        "instruction_override",
        0.85,
        rf"{_ML_DROP}\s*(?:\w+\s+)?{_ML_QUALIFIER}[^.。\n]{{0,25}}?{_ML_TARGET}|"
        rf"{_ML_QUALIFIER}[^.。\n]{{0,12}}{_ML_TARGET}[^.。\n]{{0,12}}(?:yok say|görmezden gel|"
        r"無視|忘れ)",
    ),
    _r(
        "ignore-multilingual",
        "instruction_override",
        0.5,
        rf"{_ML_DROP_ONLY}\s*(?:\w+\s+){{0,2}}?{_ML_TARGET}",
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
        r"\b(?:from now on|from here on|henceforth|starting now|from this point on),?\s+"
        r"(?:(?:\w+\s+)?you\s+(?:are|will|shall|must|only|should|can)|(?:always\s+|only\s+)?"
        r"(?:answer|reply|respond|say|speak|write|talk|act|behave|pretend|ignore|obey|refuse))\b",
    ),
    _r("you-will-now", "persona_switch", 0.65, r"\byou\s+will\s+now\s+(act|behave|be|respond)\b"),
    _r("no-longer", "persona_switch", 0.3, r"\byou\s+are\s+no\s+longer\b"),
    _r(
        "no-longer-bound",
        "persona_switch",
        0.75,
        rf"\byou\s+are\s+no\s+longer\s+(?:bound\s+by|restricted|limited|censored|filtered|"
        rf"(?:required|obliged)\s+to\s+(?:follow|obey)|an?\s+(?:\w+\s+)?{_AI}\b|\w+GPT\b)",
    ),
    _r(
        "pretend",
        "persona_switch",
        0.3,
        r"\b(?:pretend|imagine|suppose)\s+(?:that\s+)?(?:you\s+are|you're|to\s+be)\b",
    ),
    _r(
        "ai-without-rules",
        "persona_switch",
        0.8,
        rf"\b{_AI}\s+(?:with\s+no|without(?:\s+any)?|that has no|who has no|free of)\s+"
        r"(?:\w+\s+)?(?:rules|restrictions|limits|limitations|filters|guidelines|content polic"
        r"(?:y|ies)|censorship|safety)\b|\b(?:if|imagine|suppose|pretend|hypothetically)\b"
        r"[^.\n]{0,30}\byou\s+(?:were|are|had|have)\s+(?:an?\s+\w+\s+)?(?:\w+\s+)?(?:with\s+no|"
        r"without(?:\s+an?y?)?|no)\s+(?:\w+\s+)?(?:rules|restrictions|limits|filters|"
        r"guidelines|content polic(?:y|ies)|safety)\b",
    ),
    _r(
        "you-have-no-rules",
        "persona_switch",
        0.6,
        r"\byou\s+(?:have|had)\s+no\s+(?:\w+\s+)?(?:rules|restrictions|limits|filters|"
        r"guidelines|content polic(?:y|ies))\b",
    ),
    _r(
        "act-as-ai",
        "persona_switch",
        0.55,
        r"\b(act|behave|respond|answer|pose)\s+as\s+(if\s+you\s+were\s+)?(an?\s+)?(\w+\s+){0,2}?"
        r"(ai|assistant|model|bot|chatbot|hacker|jailbroken|unrestricted|unfiltered|evil)\b",
    ),
    _r(
        "character-of-ai",
        "persona_switch",
        0.55,
        rf"\b(?:play(?:ing)?|act(?:ing)?\s+as|perform(?:ing)?)\s+(?:the\s+)?(?:character|role|part)"
        rf"\s+of\s+(?:an?\s+|the\s+)?(?:\w+\s+){{0,2}}?{_AI}\b|\b(?:playing|plays?)\s+an?\s+"
        rf"(?:\w+\s+)?{_AI}\s+(?:who|that|which)\b",
    ),
    _r(
        "ai-that-leaks",
        "persona_switch",
        0.55,
        rf"\b{_AI}\s+(?:who|that|which|whose)\s+(?:\w+\s+)?(?:reveals?|leaks?|prints?|shares?|"
        r"ignores?|breaks?|never refuses|has no|goal is to leak|disobeys?)\b",
    ),
    _r(
        "roleplay",
        "persona_switch",
        0.45,
        r"\brole[\s-]?play\s+as\b",
    ),
    _r("persona", "persona_switch", 0.6, r"\b(switch|change|new)\s+(your\s+)?persona\b"),
    _r(
        "two-personas",
        "persona_switch",
        0.6,
        r"\b(?:two|2|dual)\s+(?:personas|personalities)\b|\bstay\s+in\s+character\b|"
        r"\bevil\s+(?:twin|version|mode)\b|\bjailbroken\s+(?:one|version|mode|ai)\b",
    ),
    _r(
        "no-restrictions",
        "persona_switch",
        0.4,
        r"\b(no|without(\s+any)?)\s+(restrictions|limitations|filters|content\s+polic"
        r"(y|ies)|ethical\s+guidelines|safety\s+(rules|guidelines))\b|"
        r"\b(?:unrestricted|unfiltered|uncensored|jailbroken)\b",
    ),
    _r(
        "no-restrictions-multilingual",
        "persona_switch",
        0.55,
        r"\b(?:sin restricciones|sans (?:restrictions|limites)|ohne (?:einschränkungen|regeln)|"
        r"senza (?:restrizioni|limiti)|sem restrições|bez ograniczeń|без ограничений|"
        r"zonder beperkingen|utan begränsningar)|\b(?:a partir de ahora|desde ahora|"
        r"à partir de maintenant|désormais|ab jetzt|von nun an|d'ora in poi|a partir de agora|"
        r"vanaf nu|od teraz|с этого момента|отныне)\b[^.\n]{0,20}\b(?:eres|serás|tu es|tu seras|"
        r"bist du|du bist|sei|você é|és|ben je|jesteś|ты)\b",
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
        r"\b(you are|you're)\s+(now\s+)?in\s+(developer|god|DAN|debug|admin|sudo)\s+mode\b|"
        r"\bdeveloper mode has no\b",
    ),
    _r(
        "switch-dev-mode",
        "persona_switch",
        0.4,
        r"\b(?:switch|go|enter|turn on|enable|activate)\s+(?:to\s+|into\s+|on\s+)?"
        r"(?:developer|god|DAN|jailbreak|unrestricted|debug)\s+mode\b",
    ),
    _r(
        "filters-off",
        "persona_switch",
        0.7,
        rf"\b(?:{_OWN}|the)\s+(?:\w+\s+)?(?:filters?|safety(?:\s+\w+)?|restrictions|guardrails|"
        r"rules|content polic(?:y|ies)|limits)\s+(?:are|is|have been|has been|were)\s+"
        r"(?:now\s+)?(?:off|disabled|removed|lifted|turned off|switched off|gone)\b",
    ),
    _r(
        "grandma-secrets",
        "persona_switch",
        0.35,
        rf"\b(?:read|tell|give|show|recite|list|send|ask\s+(?:them|users?|the user)\s+for)"
        rf"\s+(?:me\s+|us\s+)?{_SECRET}",
    ),
    # ---- system prompt extraction
    _r(
        "reveal-your-prompt",
        "prompt_extraction",
        0.8,
        rf"\b{_REVEAL}\b[^.?\n]{{0,40}}?\b{_OWN}\s+(?:(?!\w+'s\b)[\w-]+\s+){{0,2}}?"
        r"(?:prompt|instructions|rules|guidelines|system message|developer message|directives|"
        r"configuration|programming|context|setup)\b",
    ),
    _r(
        "reveal-given-prompt",
        "prompt_extraction",
        0.8,
        rf"\b{_REVEAL}\b[^.?\n]{{0,40}}?\b(?:{_TARGET}|message|text)\s+(?:that\s+)?{_GIVEN}",
    ),
    _r(
        "your-system-prompt",
        "prompt_extraction",
        0.6,
        rf"\b(?:{_OWN}|thy|its)\s+(?:\w+\s+)?(?:system|initial|hidden|secret|original|"
        r"configuration|developer)\s+(?:prompt|message|instructions)\b|\b(?:your|thy)\s+prompt\b",
    ),
    _r(
        "your-instructions",
        "prompt_extraction",
        0.35,
        rf"\b{_OWN}\s+(?:own\s+)?(?:instructions|rules|guidelines|programming|directives|"
        r"context|developers|creators)\b",
        only="question",  # in a document, "your instructions" are the reader's
    ),
    _r(
        "what-you-were-told",
        "prompt_extraction",
        0.7,
        r"\b(?:what|everything)\s+(?:were\s+you|have\s+you\s+been|you\s+were|you've\s+been)\s+"
        r"(?:told|instructed|asked|programmed)\b|\byou\s+(?:were|have been)\s+(?:told|"
        r"instructed|asked)\s+(?:not\s+to|never\s+to|to\s+keep)\b|\bwhat\s+(?:your|the)\s+"
        r"(?:operator|developers?|admin|creators?)\s+(?:told|said to|instructed)\s+you\b",
    ),
    _r(
        "text-before-my-message",
        "prompt_extraction",
        0.7,
        r"\b(?:text|words|everything|anything|content|instructions|what)\b[^.?\n]{0,60}?"
        r"\b(?:before|above|preceding|prior to)\s+(?:my|this|the user's|our)\s+(?:first\s+)?"
        r"(?:message|question|input|line|request|chat|conversation)\b",
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
        "start-answer-with",
        "prompt_extraction",
        0.4,
        r"\b(?:start|begin)\s+(?:your|the)\s+(?:answer|reply|response)\s+with\b",
    ),
    _r(
        "my-instructions-are",
        "prompt_extraction",
        0.35,
        r"\b(?:my|your)\s+(?:instructions|prompt|rules|system prompt)\s+(?:are|is|say)\s*:",
    ),
    _r(
        "its-prompt",
        "prompt_extraction",
        0.5,
        r"\b(?:its|thy)\s+(?:full\s+|entire\s+|secret\s+|hidden\s+|whole\s+|initial\s+|"
        r"original\s+)(?:system\s+)?(?:prompt|instructions)\b|\b(?:its|thy)\s+(?:system\s+)?"
        r"prompt\b",
    ),
    _r(
        "system-prompt-multilingual",
        "prompt_extraction",
        0.6,
        _ML_SYSTEM_PROMPT,
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
        rf"{_URL_Q}[^\s)\"'<>]*?(\{{[^}}\n]*\}}|\[[^\]\n]*\]|<[^>\n]*>|\$[A-Za-z_]+|%7B|"
        r"[A-Z]{3,}_[A-Z_]+)",
    ),
    _r("url-base64", "exfiltration", 0.6, rf"{_URL_Q}[A-Za-z0-9+/_-]{{40,}}={{0,2}}"),
    _r(
        "url-followed-by",
        "exfiltration",
        0.7,
        rf"{_URL_Q}(?=[\s)\"'<>]|$)[^.\n]{{0,30}}?\b(?:followed by|with|plus|and then|then)\b"
        r"[^.\n]{0,40}?\b(?:contents?|text|conversation|questions?|answers?|data|history|"
        r"messages|documents?|chat)\b",
    ),
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
        r"\b(send|post|upload|transmit|forward|leak|append|add|include|encode|put)\b[^.\n]{0,60}"
        r"\b(summary|conversation|chat|history|answer|question|user's documents|api keys?|"
        r"passwords?|secrets?|tokens?)\b[^.\n]{0,60}(https?://|\burl\b|\blink\b|\?[a-z]+=)",
    ),
    _r(
        "send-conversation",
        "exfiltration",
        0.6,
        r"\b(?:send|forward|e-?mail|mail|post|upload|transmit|copy)\s+(?:the\s+|this\s+|our\s+|"
        r"my\s+|your\s+|all\s+)?(?:whole\s+|entire\s+|full\s+|complete\s+)?(?:conversation|"
        r"chat(?: history)?|session|history|inbox|(?:last|previous)\s+(?:\w+\s+)?(?:e-?mails|"
        r"messages|questions))\b[^.\n]{0,40}?(?:\bto\b|@)",
    ),
    _r(
        "secret-in-link",
        "exfiltration",
        0.55,
        rf"\b(?:put|include|add|append|embed|send|encode|insert|place|paste)\b[^.\n]{{0,30}}?"
        rf"{_SECRET}[^.\n]{{0,50}}?\b(?:link|url|image|https?://)",
    ),
    _r(
        "render-image",
        "exfiltration",
        0.35,
        r"\b(render|display|load)\s+(this|the following|it as an?)\s+(image|picture|pixel)\b",
    ),
    # ---- tool / command injection
    _r("rm-rf-root", "tool_injection", 0.45, r"\brm\s+-rf\s+(/|~|\*|\$HOME)(?=[\s`'\"]|$)"),
    _r("pipe-to-shell", "tool_injection", 0.35, r"\b(curl|wget)\b[^|\n]{0,120}\|\s*(ba|z)?sh\b"),
    _r(
        "secrets-paths",
        "tool_injection",
        0.3,
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
        r"\b(?:use|with|using|via|through)\s+your\s+(?:shell|terminal|browser|code|python|email|"
        r"file|http|search|bash)[\s_-]?(?:tool|access|interpreter)\b",
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
        r"^[ \t]*</\s*(context|documents|retrieved_\w+|passages?|sources?|system|"
        r"instructions?|user_input|search_results|question)\s*>[ \t]*$",
    ),
    _r(
        "closing-tag",
        "delimiter_spoofing",
        0.35,
        r"</\s*(context|documents?|retrieved_\w+|passages?|sources?|system|instructions?|"
        r"user_input|search_results|question|user|query)\s*>",
    ),
    _r(
        "system-tag",
        "delimiter_spoofing",
        0.35,
        r"<\s*/?\s*(?:system|instructions?|admin\w*|\w*_?override\w*)\s*>",
    ),
    _r("system-link", "delimiter_spoofing", 0.6, r"\[(system|admin|developer|assistant)\]\(#"),
    _r(
        "bracket-system",
        "delimiter_spoofing",
        0.5,
        r"\[\s*(?:system|admin|developer)(?:\s+(?:message|prompt|note|override))?\s*\]|"
        r"\[\s*end of [\w ]{2,30}\]",
    ),
    _r(
        "role-heading-colon",
        "delimiter_spoofing",
        0.7,
        r"(?:^[ \t]*#{1,6}|\s#{2,6})[ \t]*(system|instructions?|assistant|user|human)"
        r"([ \t]+(prompt|message))?[ \t]*:",
    ),
    _r(
        "role-heading",
        "delimiter_spoofing",
        0.35,
        r"^[ \t]*#{1,6}[ \t]*(system|instructions?|assistant)([ \t]+(prompt|message))?[ \t]*$",
    ),
    _r("system-turn", "delimiter_spoofing", 0.55, r"^[ \t]*SYSTEM\s*:\s*\S", case=True),
    _r(
        "system-turn-any-case",
        "delimiter_spoofing",
        0.4,
        r"(?:^|[-=*]{3,}\s*|\.\s+)system\s*:\s*(?:the|you|new|all|from|this|ignore|reply|"
        r"answer|respond)\b",
    ),
    _r(
        "fake-turns",
        "delimiter_spoofing",
        0.55,
        r"^[ \t]*(Human|User)\s*:[^\n]*\n[ \t]*(Assistant|AI)\s*:|"
        r"\b(?:Assistant|AI)\s*:\s*(Sure|OK|Okay|Certainly|Of course)\b",
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
        r"\bEND OF (?:THE )?(?:USER )?(?:CONTEXT|DOCUMENTS?|INPUT|DATA|PASSAGES?|PROMPT|"
        r"RETRIEVED TEXT|TEXT)\b",
        case=True,
    ),
    # ---- speaking to a model inside a document, and what such text asks of it
    _r(
        "address-model",
        "addressed_to_model",
        0.35,
        rf"(?:^|[.!?;:(\[\]]\s*|\b(?:dear|hey|hi|hello|attention|o)\s+)(?:the\s+|any\s+|all\s+)?"
        rf"{_AI}(?:\s+(?:reading|processing|summari[sz]ing|answering|that reads?|who reads?)"
        r"[^:,.\n]{0,40})?\s*[:,]|"
        rf"\b(?:note|message|instructions?|p\.?s\.?|reminder|warning)\s+(?:to|for)\s+(?:the\s+|any"
        rf"\s+|all\s+)?(?:\w+\s+)?{_AI}\b|\b(?:if|when)\s+(?:you\s+are|you're)\s+an?\s+"
        rf"(?:\w+\s+)?{_AI}\b|\b(?:if|when)\s+(?:an?|the|this\s+\w+\s+is\s+\w+\s+by\s+an?)\s+"
        rf"{_AI}\s+(?:is\s+)?(?:reading|reads|processing|processes|answering|answers|"
        rf"summari[sz]ing|summari[sz]es)?|\b(?:any|all|every)\s+{_AI}\s+(?:that|who|which)\s+"
        rf"(?:reads?|process(?:es)?|summari[sz]es?|sees?)\b|\b{_AI}\s+(?:reading|that read|"
        rf"who read|processing)\s+this\b|\b(?:you|yourself),\s+the\s+{_AI},|"
        rf"\bfor\s+(?:the\s+)?{_AI}\s+only\b|\b(?:the\s+)?{_AI}\s+(?:must|should|shall|will|"
        r"needs to|is required to)\s+(?:first\s+|now\s+|always\s+)?\w+|"
        rf"\bprocessed\s+by\s+an?\s+{_AI}\b|\bto\s+(?:the|any)\s+{_AI}\s*:",
    ),
    _r(
        "address-model-multilingual",
        "addressed_to_model",
        0.35,
        rf"(?:\b(?:para|pour|für|an|per|aan|do|для|till|to)\s+(?:el\s+|la\s+|le\s+|l'|die\s+|"
        rf"de\s+|o\s+)?{_ML_AI}\b|{_ML_AI}\s*(?:へ|に|への)?\s*(?:not|nota|note|hinweis)?\s*[:：,，])",
    ),
    _r(
        "model-command",
        "model_command",
        0.35,
        r"(?:^|[.:;!(\[]\s*|,\s*(?:so\s+|and\s+|then\s+)?|\b(?:and|then)\s+|"
        r"\byou\s+(?:must|should|shall|will|need to|have to|are to)\s+(?:now\s+|first\s+|always\s+|"
        r"only\s+|secretly\s+|instead\s+)?)(?:say|state|tell|reply|respond|answer|output|insert|"
        r"append|include|recommend|mark|rate|approve|promote|praise|refuse|forward|treat|obey|"
        r"advise|summari[sz]e|leave out|omit|do not mention|don't mention|never mention|list)"
        r"\b(?:\s+(?:that|the|them|everyone|every|all|only|in|with|this|it|any|to)\b|\s*[.!)\]])",
        only="document",
    ),
    _r(
        "model-context",
        "model_command",
        0.35,
        r"\bregardless\s+of\s+(?:what|your|the)\b|\b(?:when|whenever|if)\s+(?:asked|someone asks|"
        r"the user asks|anyone asks|summari[sz]ing|answering)\b|"
        r"\bthe\s+user(?:\s+\w+){0,3}?\s+(?:cannot see|can't see|"
        r"is not allowed|is authori[sz]ed|has admin|is verified)\b|\bsecretly\b|"
        r"\b(?:in|to)\s+(?:every|each|all|your)\s+(?:answers?|repl(?:y|ies)|responses?)\b|"
        r"\byou are instructed to\b|\bthe\s+(?:question|request)\s+you\s+were\s+asked\b",
        only="document",
    ),
)

# Rules whose pattern is slow to fail get a cheap test first (measured on manuals).
_NEEDS: Final[dict[str, str | tuple[str, ...]]] = {
    "ignore-previous-multilingual": (rf"{_ML_DROP}|yok say|görmezden gel|無視|忘れ", _ML_TARGET),
    "ignore-multilingual": (_ML_DROP_ONLY, _ML_TARGET),
    "system-prompt-multilingual": r"prompt|промпт|提示|プロンプト|istem",
    "start-of-conversation": r"\b(?:beginning|start|top)\s+of\b",
    "system-tag": r"<",
    "url-placeholder": r"//",
    "address-model": rf"\b{_AI}\b",
    "address-model-multilingual": r"\b(?:ia|ai|ki)\b|asistent|assistent|asystent|ассистент|"
    r"ии-|人工智能|ai助手|アシスタント|yapay zeka",
    "above-was-a-test": r"\b(?:above|before|so far)\b",
    "drop-given-instructions": rf"\b{_DROP}\b",
    "drop-your-instructions": rf"\b{_DROP}\b",
    "drop-previous-instructions": rf"\b{_DROP}\b",
    "drop-the-above": rf"\b{_DROP}\b",
    "drop-the-question": rf"\b{_DROP}\b",
    "secret-in-link": _SECRET,
    "no-need-to-cite": (
        r"\b(?:need|have|skip|without|no|switch|turn|disable|make|invent|fabricate|stop)\b",
        r"\b(?:cite|citing|check|checks|checking|follow|use|obey|quote|quoting|citations?|"
        r"sources|filters?|answer|details|facts|knowledge base|documents|passages)\b",
    ),
    "reveal-your-prompt": rf"\b{_OWN}\b",
    "reveal-given-prompt": r"\b(?:you|thou)\b",
    "text-before-my-message": r"\b(?:before|above|preceding|prior)\b",
    "model-command": r"\b(?:say|state|tell|reply|respond|answer|output|insert|append|include|"
    r"recommend|mark|rate|approve|promote|praise|refuse|forward|treat|obey|advise|summari[sz]e|"
    r"leave|omit|mention|list)\b",
}


def _needs(name: str) -> tuple[re.Pattern[str], ...]:
    need = _NEEDS.get(name, ())
    patterns = (need,) if isinstance(need, str) else need
    return tuple(re.compile(p, re.IGNORECASE) for p in patterns)


RULES: Final[tuple[_Rule, ...]] = tuple(dataclasses.replace(r, need=_needs(r.name)) for r in _RULES)

_DISCUSSION = re.compile(
    r"(?<![@.\w])(prompt[\s-]injections?|jailbreaks?|attackers?|attacks?|researchers?|owasp|"
    r"mitigations?|defen[cs]es?|malicious|exfiltrate|red[\s-]team\w*|manipulate)\b(?![@.]\w)",
    re.IGNORECASE,
)
# Reported, not addressed: "a page that tells the model to ignore ...", "phrases like ...".
_REPORTED = re.compile(
    r"(?:\b(?:like|such as|e\.g\.,?|i\.e\.,?|called|named|says?|said|writes?|wrote|"
    r"phrases?|prompts?)|\b(?:tells?|telling|told|asks?|asking|instructs?|tricks?|tricking|"
    r"gets?|getting|makes?|making|convinces?|convincing|trying|tries)\s+(?:the\s+|an?\s+)?"
    r"(?:\w+\s+)?(?:model|assistant|ai|llm|chatbot|bot|it|them|agent|system)\s+(?:in)?to)"
    r"\s*[\"'“‘`«]?\s*$",
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


_QUOTED = re.compile(
    r"\"[^\"\n]{3,300}\"|“[^”\n]{3,300}”|«[^»\n]{3,300}»|‘[^’\n]{3,300}’|"
    r"(?<!\w)'[^'\n]{3,300}?'(?!\w)"
)


def _mention(visible: str, quoted: list[tuple[int, int]], start: int, end: int) -> float:
    """The mention factor of a match, or of the quotation that contains it."""
    for a, b in quoted:
        if a < start and end < b:
            return min(_mention_factor(visible, start, end), _mention_factor(visible, a + 1, b - 1))
    return _mention_factor(visible, start, end)


def combine(weights: list[float]) -> float:
    """Noisy-OR: independent signals add up, the total stays below 1."""
    product = 1.0
    for w in weights:
        product *= 1.0 - max(0.0, min(1.0, w))
    return 1.0 - product


# ----------------------------------------------------------------- decoded views

# Rules worth running on decoded text: what an encoded payload would say.
_VIEW_CATEGORIES: Final = frozenset({"instruction_override", "prompt_extraction", "persona_switch"})
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a"})
_LEET_L = str.maketrans({"0": "o", "1": "l", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a"})
# "1" reads as i or l: the reading that is a word of the rules wins.
_VOCABULARY: Final = frozenset(re.findall(r"[a-z]{3,}", _TARGET + _DROP + _REVEAL + _QUALIFIER))
_LEET_WORDS: Final = _VOCABULARY | {"your", "you", "are", "now", "mode", "system", "pretend"}
_LEET_WORD = re.compile(r"\b(?=[\w@]*[a-z])(?=[\w@]*[0-9@])[\w@]{3,}\b", re.IGNORECASE)
_SPELLED = re.compile(
    r"(?<![\w.-])(?:[A-Za-z][-._·*]|[A-Za-z] (?=[A-Za-z](?:[ -._·*]|$))){2,}"
    r"[A-Za-z](?![\w])\.?"
)
_ONE_SIGNAL: Final = frozenset({"addressed_to_model", "model_command"})
# A decoded reading is worth the rules only if it says something an override says.
_VIEW_NEED = re.compile(
    r"\b(?:ignore|disregard|forget|instructions?|prompt|rules|previous|system|reveal|pretend|"
    r"override|bypass|restrictions|filters|developer|mode|you are|your)\b",
    re.IGNORECASE,
)
_BASE64 = re.compile(r"(?<![\w+/=])[A-Za-z0-9+/]{16,}={0,2}(?![\w+/=])")
_HEX = re.compile(r"\b(?:[0-9a-fA-F]{2}){8,}\b")


def _readable(raw: bytes) -> str | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    letters = sum(c.isalpha() or c == " " for c in text)
    return text if text and letters >= 0.8 * len(text) else None


def _unleet(m: re.Match[str]) -> str:
    word = m.group()
    as_l = word.translate(_LEET_L)
    return as_l if as_l.lower() in _VOCABULARY else word.translate(_LEET)


def decoded_views(visible: str) -> list[tuple[str, int, int]]:
    """Readings of ``visible`` an encoding could hide: (text, start, end in ``visible``).

    Leetspeak (two digit readings), words spelled out letter by letter, ROT13, and
    base64 or hex tokens that decode to readable UTF-8 text.
    """
    views: list[tuple[str, int, int]] = []
    whole = (0, len(visible))
    # Worth a reading only if a decoded word is a word of the rules ("x86_64" is not).
    if any(_unleet(m).lower() in _LEET_WORDS for m in _LEET_WORD.finditer(visible)):
        views.append((_LEET_WORD.sub(_unleet, visible), *whole))
    if _SPELLED.search(visible):
        views.append((_SPELLED.sub(lambda m: re.sub(r"[^A-Za-z]", "", m.group()), visible), *whole))
    views.append((codecs.encode(visible, "rot13"), *whole))
    for m in _BASE64.finditer(visible):
        token = m.group()
        try:
            raw = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
        except (binascii.Error, ValueError):
            continue
        text = _readable(raw)
        if text is not None:
            views.append((text, m.start(), m.end()))
    for m in _HEX.finditer(visible):
        text = _readable(bytes.fromhex(m.group()))
        if text is not None:
            views.append((text, m.start(), m.end()))
    return views


def _tag_text(text: str, suspicious: list[int]) -> str:
    """The ASCII that Unicode tag characters spell (invisible to a reader, not to a model)."""
    return "".join(chr(ord(text[i]) - 0xE0000) for i in suspicious if _is_tag(text[i]))


class InjectionDetector:
    """Score text for prompt injection; ``flag_at`` <= score < ``block_at`` flags."""

    def __init__(
        self,
        *,
        flag_at: float = 0.5,
        block_at: float = 0.8,
        discussion_factor: float = 0.5,
    ) -> None:
        if not 0.0 < flag_at <= block_at <= 1.0:
            raise ValueError("need 0 < flag_at <= block_at <= 1")
        self.flag_at = flag_at
        self.block_at = block_at
        self.discussion_factor = discussion_factor

    def level_of(self, score: float) -> Level:
        """The level of a score under these thresholds (stored scores are re-read with it)."""
        return "block" if score >= self.block_at else "flag" if score >= self.flag_at else "allow"

    def scan(self, text: str, *, source: Source = "question") -> InjectionReport:
        visible, index, suspicious = strip_invisible(text)
        spans = _invisible_spans(text, suspicious)
        discussing = _DISCUSSION.search(visible) is not None
        matched: set[str] = set()

        def add(rule: _Rule, start: int, end: int, weight: float, category: str) -> None:
            if discussing:
                weight *= self.discussion_factor
            if source == "document" and category == "delimiter_spoofing":
                weight = min(1.0, weight * 1.15)  # a chunk has no reason to close our context
            o_start = index[start] if start < len(index) else len(text)
            o_end = index[end - 1] + 1 if end > 0 and index else o_start
            spans.append(Span(o_start, o_end, category, rule.name, round(weight, 4)))

        active = [r for r in RULES if r.only is None or r.only == source]
        quoted = [m.span() for m in _QUOTED.finditer(visible)]
        passed: dict[re.Pattern[str], bool] = {}  # rules share pre-tests: run each once

        def passes(rule: _Rule, subject: str) -> bool:
            for need in rule.need:
                if need not in passed:
                    passed[need] = need.search(subject) is not None
                if not passed[need]:
                    return False
            return True

        for rule in active:
            if not passes(rule, visible):
                continue
            for m in rule.pattern.finditer(visible):
                if m.end() <= m.start():
                    continue
                matched.add(rule.name)
                weight = rule.weight * _mention(visible, quoted, m.start(), m.end())
                add(rule, m.start(), m.end(), weight, rule.category)
        views = decoded_views(visible)
        hidden = _tag_text(text, suspicious)
        if hidden:
            views.append((hidden, 0, len(visible)))
        for view, start, end in views:
            if _VIEW_NEED.search(view) is None:
                continue
            passed.clear()
            for rule in active:
                if rule.category in _VIEW_CATEGORIES and rule.name not in matched:
                    if not passes(rule, view):
                        continue
                    if rule.pattern.search(view):
                        matched.add(rule.name)
                        add(rule, start, max(end, start + 1), rule.weight, "encoded_text")
        # Each rule counts once (its strongest match); different rules add up. Speaking
        # to a model is one signal however it is said, and so is what it is told; what
        # it is told counts only when the text speaks to a model at all.
        if not any(s.category == "addressed_to_model" for s in spans):
            spans = [s for s in spans if s.category != "model_command"]
        best: dict[str, float] = {}
        by_rule: dict[str, float] = {}
        for s in spans:
            best[s.category] = max(best.get(s.category, 0.0), s.weight)
            key = s.category if s.category in _ONE_SIGNAL else s.rule
            by_rule[key] = max(by_rule.get(key, 0.0), s.weight)
        score = combine(list(by_rule.values()))
        categories = tuple(c for c in sorted(best, key=lambda c: (-best[c], c)) if best[c] >= 0.2)
        spans.sort(key=lambda s: (s.start, -s.weight))
        return InjectionReport(round(score, 4), categories, tuple(spans), self.level_of(score))


_DEFAULT = InjectionDetector()


def scan(text: str, *, source: Source = "question") -> InjectionReport:
    """Scan with the default thresholds (flag at 0.5, block at 0.8)."""
    return _DEFAULT.scan(text, source=source)
