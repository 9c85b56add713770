"""Evidence: what a passage says and whether it supports a claim.

- ``text``: one sentence splitter (character spans) and one term analyser
  (stemmed words, numbers, dates, identifiers, negation scope) shared by
  everything that compares an answer or a question with passages.
- ``support``: the answer check (``check_answer``) and quote-first selection
  (``find_quotes``), pure functions over retrieved passages.

Below the providers and the ask pipeline, which both use it; it never calls a
model itself (an embedding function may be passed in).
"""
