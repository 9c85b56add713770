"""Turning files into text and text into chunks.

``parsers.parse_file`` reads one file (PDF, HTML, Markdown, plain text, DOCX or
source code) into an ``ExtractedDocument``: the plain text, which is the single
source of truth for offsets, plus where its pages and headings are. It is a pure,
picklable function, so it can run in a process pool, and it raises ``IngestError``
(or ``UnsupportedFile``) with a sentence a person can read for any file it cannot
read: no library exception escapes unwrapped.

``chunker.chunk_document`` cuts that text into ``ChunkDraft`` values that follow
the document's structure (sections, paragraphs, sentences, pages) and stay under
the embedding model's token window, counted by ``tokens.TokenCounter``. Every
chunk's ``text`` is exactly ``document.text[start:end]``.
"""
