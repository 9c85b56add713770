"""Answers checked against their evidence.

- ``textutil``: one sentence splitter (character spans) and one term analyser
  (stemmed words, numbers, dates, identifiers, negation scope) shared by everything
  that compares an answer with passages.
- ``evidence``: ``check_answer`` (does each answer sentence have a supporting
  passage sentence? fix or drop its ``[n]`` markers) and ``select_quotes`` /
  ``find_quotes`` (the passages' best sentences for a question, quote first).
"""
