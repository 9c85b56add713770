"""Archivist's front ends: the command line (``app.cli``) and the Qt window (``app.gui``).

This package is the only place PySide6 and qasync are imported, and only by the
GUI modules, so ``archivist ask`` never pays for Qt.
"""
