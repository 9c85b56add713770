"""Answering: the ask pipeline and what decides whether an answer may stand.

- ``pipeline``: one question in, one checked, cited ``Answer`` out.
- ``gate``: abstain ("the documents do not contain the answer") before the
  model runs, or reject its answer after the evidence check.
- ``evaluate``: ``archivist eval answers``.

The evidence check itself lives in ``core.evidence``.
"""
