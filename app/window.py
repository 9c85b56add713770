"""The main window: it lays out widgets and forwards user actions to the bridge.

No business logic and no I/O here: the bridge runs everything on the asyncio
loop (which, under qasync, is this GUI thread) and answers with signals, and
the chat's state and the meaning of each link live in ``app.chat.ChatSession``
(plain Python, tested without Qt). The window carries out the actions it names.

Layout: conversations on the left (filter box, list, New chat), the chat in the
middle (answers stream in as safe Markdown; ``[n]`` opens the cited passage),
and two docks on the right: Library (ingestion, quarantine) and Health. A menu
bar (File, Edit, View, Help) carries every command with the platform's standard
keys; the toolbar repeats the frequent ones with icons (``app.desktop``). The
layout is remembered in ``window.ini`` in the data folder; an empty knowledge
base on a first run opens the welcome (``app.welcome``).
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Sequence

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, QUrl
from PySide6.QtGui import (
    QAction,
    QActionGroup,
    QCloseEvent,
    QDesktopServices,
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QGuiApplication,
    QKeyEvent,
    QKeySequence,
    QShortcut,
)
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from app import firstrun
from app import statusview as sv
from app.about import AboutDialog, ShortcutsDialog, shortcut_rows
from app.bridge import ServicesBridge
from app.chat import (
    Action,
    ChatSession,
    CopyText,
    Evict,
    OpenExternal,
    OpenSource,
    Regenerate,
    Say,
    ShowWhy,
    answered_message,
)
from app.desktop import (
    THEMES,
    LauncherProgress,
    Notifier,
    Theme,
    WindowState,
    app_icon,
    stylesheet,
    themed_icon,
)
from app.dialogs import SettingsDialog, SourceDialog, WhyDialog
from app.panels import HealthPanel, LibraryPanel
from app.render import TurnActions
from app.settings_file import SaveResult, form_from_settings
from app.welcome import WelcomeBridge, WelcomeDialog
from app.widgets import ChatView
from core.conversations import Conversation, ConversationSummary, Turn
from core.types import (
    Answer,
    BreakerSnapshot,
    Citation,
    FillProgress,
    HealthSnapshot,
    IngestProgress,
    IngestReport,
    StatsSnapshot,
)

RENDER_INTERVAL_MS = 40  # streaming re-renders at most ~25 times a second
LONG_INGEST_S = 20.0  # an ingestion this long ends with a desktop notification
StandardKey = QKeySequence.StandardKey


def _local_paths(event: QDragEnterEvent | QDragMoveEvent | QDropEvent) -> list[str]:
    mime = event.mimeData()
    if not mime.hasUrls():
        return []
    return [u.toLocalFile() for u in mime.urls() if u.isLocalFile() and u.toLocalFile()]


class MainWindow(QMainWindow):
    def __init__(self, bridge: ServicesBridge) -> None:
        super().__init__()
        self.bridge = bridge
        self.setObjectName("main-window")
        self.setWindowTitle(sv.progress_title(None))
        self.setWindowIcon(app_icon())
        fm = self.fontMetrics()
        self.resize(fm.averageCharWidth() * 190, fm.height() * 44)
        self.setAcceptDrops(True)
        self.session = ChatSession(bridge.conversations.new())
        self.source_dialog: SourceDialog | None = None
        self.why_dialog: WhyDialog | None = None
        self.settings_dialog: SettingsDialog | None = None
        self.last_answer: Answer | None = None
        self.last_report: IngestReport | None = None
        self.last_health: HealthSnapshot | None = None
        self.last_error = ""
        self._search_query = ""
        # Opens folders and links on the desktop (tests put a recorder here).
        self.open_url: Callable[[QUrl], object] = QDesktopServices.openUrl
        self.long_ingest_s = LONG_INGEST_S
        self.about_dialog: AboutDialog | None = None
        self.shortcuts_dialog: ShortcutsDialog | None = None
        self.first_run = WelcomeBridge(bridge, self)
        self.welcome: WelcomeDialog | None = None
        self._welcome_checked = False
        self._watch_after_ingest: list[str] = []
        self.notifier = Notifier(self, self._say)
        self.launcher = LauncherProgress()
        self.window_state = WindowState(str(bridge.settings.home / "window.ini"))
        app = QApplication.instance()
        assert isinstance(app, QApplication)
        self.theme = Theme(app, stylesheet())

        self._render_timer = QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.setInterval(RENDER_INTERVAL_MS)
        self._render_timer.timeout.connect(self._render)

        self._build_toolbar()
        self._build_central()
        self._build_docks()
        self._build_status()
        self._build_menus()
        self._apply_icons()
        self._connect()
        self._render()
        self.window_state.restore(self, self.splitter)
        self.set_theme(self.window_state.theme())

        self.health_timer = QTimer(self)
        self.health_timer.setInterval(3000)
        self.health_timer.timeout.connect(self.bridge.refresh_status)
        self.health_timer.start()

    # ------------------------------------------------------------------ layout

    def _action(
        self,
        text: str,
        slot: object,
        *keys: str | QKeySequence.StandardKey,
        icon: str | None = None,
    ) -> QAction:
        """An action with the standard keys of the platform first, then ``keys`` as given."""
        action = QAction(text, self)
        action.triggered.connect(slot)
        sequences: list[QKeySequence] = []
        for key in keys:
            found = QKeySequence.keyBindings(key) if isinstance(key, StandardKey) else []
            sequences += found if found else [QKeySequence(key)]
        sequences = [k for k in sequences if not k.isEmpty()]
        unique = list({k.toString(): k for k in sequences}.values())
        if unique:
            action.setShortcuts(unique)
            native = unique[0].toString(QKeySequence.SequenceFormat.NativeText)
            action.setToolTip(f"{text.rstrip('…')} ({native})")
        if icon:
            self._icon_actions.append((action, icon))
        return action

    def _apply_icons(self) -> None:
        """Colour the toolbar icons from the current palette (light or dark)."""
        palette = self.palette()
        ratio = self.devicePixelRatioF()
        for action, name in self._icon_actions:
            action.setIcon(themed_icon(name, palette, ratio))

    def _build_toolbar(self) -> None:
        bar = QToolBar("Toolbar", self)
        bar.setObjectName("main-toolbar")
        bar.setMovable(False)
        bar.setAccessibleName("Main toolbar")
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.addToolBar(bar)
        self.toolbar = bar
        self._icon_actions: list[tuple[QAction, str]] = []
        act = self._action
        self.new_chat_action = act("New chat", self.new_chat, StandardKey.New, icon="new-chat")
        self.add_files_action = act(
            "Add files…", self._choose_files, StandardKey.Open, icon="add-files"
        )
        self.add_folder_action = act(
            "Add folder…", self._choose_folder, "Ctrl+Shift+O", icon="add-folder"
        )
        self.export_action = act(
            "Export conversation…", self._choose_export, "Ctrl+E", icon="export"
        )
        self.export_action.setIconText("Export…")
        self.copy_action = act("Copy answer", self.copy_last_answer, "Ctrl+Shift+C", icon="copy")
        self.why_action = act("Why this answer?", self.show_last_why, "Ctrl+I", icon="why")
        self.wrong_action = act("This answer is wrong", self.mark_last_wrong, icon="wrong")
        self.wrong_action.setToolTip(
            "Remove the last answer from the cache so the question is answered afresh"
        )
        self.regenerate_action = act(
            "Regenerate with another model", self.regenerate_last, icon="regenerate"
        )
        self.regenerate_action.setToolTip(
            "The last answer was cut off: ask again without the model that broke off"
        )
        self.settings_action = act(
            "Settings…", self.open_settings, StandardKey.Preferences, "Ctrl+,", icon="settings"
        )
        self.settings_action.setMenuRole(QAction.MenuRole.PreferencesRole)
        for a in (self.new_chat_action, self.add_files_action, self.add_folder_action):
            bar.addAction(a)
        bar.addSeparator()
        for a in (
            self.copy_action,
            self.why_action,
            self.wrong_action,
            self.regenerate_action,
            self.export_action,
        ):
            bar.addAction(a)
        bar.addSeparator()
        bar.addAction(self.settings_action)

    def _build_central(self) -> None:
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.setChildrenCollapsible(False)

        # Sidebar: saved conversations.
        side = QWidget(splitter)
        sl = QVBoxLayout(side)
        sl.setContentsMargins(0, 0, 0, 0)
        self.search_box = QLineEdit(side)
        self.search_box.setPlaceholderText("Search conversations (Ctrl+F)")
        self.search_box.setAccessibleName("Search conversations")
        self.search_box.setClearButtonEnabled(True)
        sl.addWidget(self.search_box)
        self.conversation_list = QListWidget(side)
        self.conversation_list.setAccessibleName("Saved conversations")
        self.conversation_list.setWordWrap(True)
        self.conversation_list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.conversation_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        sl.addWidget(self.conversation_list, 1)
        self.new_chat_button = QPushButton("New chat", side)
        self.new_chat_button.setAccessibleName("New chat")
        sl.addWidget(self.new_chat_button)

        # Chat.
        chat = QWidget(splitter)
        cl = QVBoxLayout(chat)
        cl.setContentsMargins(0, 0, 0, 0)
        self.chat = ChatView(chat)
        cl.addWidget(self.chat, 1)
        row = QHBoxLayout()
        self.question = QPlainTextEdit(chat)
        self.question.setPlaceholderText("Ask about your documents… (Ctrl+Enter sends, Esc stops)")
        self.question.setAccessibleName("Question")
        self.question.setTabChangesFocus(True)
        self.question.setMaximumHeight(self.fontMetrics().height() * 5)
        self.question.installEventFilter(self)
        self.search_box.installEventFilter(self)
        row.addWidget(self.question, 1)
        buttons = QVBoxLayout()
        self.ask_button = QPushButton("Send", chat)
        self.ask_button.setAccessibleName("Send question")
        self.ask_button.setToolTip("Send (Ctrl+Enter)")
        self.ask_button.setEnabled(False)
        self.stop_button = QPushButton("Stop", chat)
        self.stop_button.setAccessibleName("Stop generating")
        self.stop_button.setToolTip("Stop (Esc)")
        self.stop_button.setEnabled(False)
        buttons.addWidget(self.ask_button)
        buttons.addWidget(self.stop_button)
        row.addLayout(buttons)
        cl.addLayout(row)

        splitter.addWidget(side)
        splitter.addWidget(chat)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 4)
        avg = self.fontMetrics().averageCharWidth()
        splitter.setSizes([avg * 32, avg * 100])
        self.setCentralWidget(splitter)
        self.splitter = splitter
        self.question.setObjectName("question")

        self._shortcuts = []
        for keys, slot in (
            ("Ctrl+Return", self.send),
            ("Ctrl+Enter", self.send),
            ("Escape", self.stop),
            ("Ctrl+L", self.focus_question),
        ):
            shortcut = QShortcut(QKeySequence(keys), self)
            shortcut.activated.connect(slot)
            self._shortcuts.append(shortcut)

    def _build_docks(self) -> None:
        self.library = LibraryPanel(self)
        self.library_dock = QDockWidget("Library", self)
        self.library_dock.setObjectName("library-dock")
        self.library_dock.setWidget(self.library)
        self.health = HealthPanel(self)
        self.health_dock = QDockWidget("Health", self)
        self.health_dock.setObjectName("health-dock")
        self.health_dock.setWidget(self.health)
        right = Qt.DockWidgetArea.RightDockWidgetArea
        self.addDockWidget(right, self.library_dock)
        self.addDockWidget(right, self.health_dock)
        self.tabifyDockWidget(self.library_dock, self.health_dock)
        self.library_dock.raise_()
        avg = self.fontMetrics().averageCharWidth()
        self.resizeDocks([self.library_dock], [avg * 80], Qt.Orientation.Horizontal)

    def _build_menus(self) -> None:
        act = self._action
        home = self.bridge.settings.home
        self.open_data_action = act(
            "Open data folder", lambda: self.open_folder(home), icon="data-folder"
        )
        self.open_data_action.setToolTip(f"Open {home} in the file manager")
        self.quit_action = act("Quit", self.close, StandardKey.Quit, "Ctrl+Q")
        self.quit_action.setMenuRole(QAction.MenuRole.QuitRole)
        self.find_action = act("Find in conversations", self.focus_search, StandardKey.Find)
        self.shortcuts_action = act(
            "Keyboard shortcuts", self.show_shortcuts, StandardKey.HelpContents, icon="keyboard"
        )
        self.open_log_action = act(
            "Open log folder", lambda: self.open_folder(self.bridge.settings.log_dir)
        )
        self.welcome_action = act("Welcome…", self.show_welcome)
        self.about_action = act("About Archivist", self.show_about, icon="about")
        self.about_action.setMenuRole(QAction.MenuRole.AboutRole)

        bar = self.menuBar()
        file = bar.addMenu("&File")
        for a in (self.add_files_action, self.add_folder_action):
            file.addAction(a)
        file.addSeparator()
        for a in (self.new_chat_action, self.export_action):
            file.addAction(a)
        file.addSeparator()
        file.addAction(self.open_data_action)
        file.addSeparator()
        file.addAction(self.quit_action)

        edit = bar.addMenu("&Edit")
        for a in (self.copy_action, self.why_action, self.wrong_action, self.regenerate_action):
            edit.addAction(a)
        edit.addSeparator()
        edit.addAction(self.find_action)
        edit.addSeparator()
        edit.addAction(self.settings_action)

        view = bar.addMenu("&View")
        view.addAction(self.library_dock.toggleViewAction())
        view.addAction(self.health_dock.toggleViewAction())
        view.addAction(self.toolbar.toggleViewAction())
        view.addSeparator()
        theme_menu = view.addMenu("&Theme")
        self.theme_actions: dict[str, QAction] = {}
        group = QActionGroup(self)
        for name in THEMES:
            action = QAction(name.capitalize(), self, checkable=True)
            action.setChecked(name == "system")
            action.triggered.connect(lambda _=False, n=name: self.set_theme(n))
            group.addAction(action)
            theme_menu.addAction(action)
            self.theme_actions[name] = action

        help_menu = bar.addMenu("&Help")
        help_menu.addAction(self.shortcuts_action)
        help_menu.addAction(self.welcome_action)
        help_menu.addAction(self.open_log_action)
        help_menu.addSeparator()
        help_menu.addAction(self.about_action)
        self.menus = {"File": file, "Edit": edit, "View": view, "Help": help_menu}

    def _build_status(self) -> None:
        status = self.statusBar()
        self.status_label = QLabel("Starting…", self)
        self.status_label.setAccessibleName("Status")
        self.health_label = QLabel("", self)
        self.health_label.setAccessibleName("Health summary")
        status.addWidget(self.status_label, 1)
        status.addPermanentWidget(self.health_label)

    def _connect(self) -> None:
        b = self.bridge
        self.ask_button.clicked.connect(self.send)
        self.stop_button.clicked.connect(self.stop)
        self.new_chat_button.clicked.connect(self.new_chat)
        self.chat.anchorClicked.connect(self._link_clicked)
        self.search_box.textChanged.connect(self._search_changed)
        self.conversation_list.itemActivated.connect(self._conversation_chosen)
        self.conversation_list.itemClicked.connect(self._conversation_chosen)
        # Delete a saved conversation: its context menu, or the Delete key on it.
        self.conversation_list.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        delete = QAction("Delete conversation", self.conversation_list)
        delete.setShortcut(QKeySequence(QKeySequence.StandardKey.Delete))
        delete.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        delete.triggered.connect(self.delete_selected_conversation)
        self.conversation_list.addAction(delete)
        self.library.addFilesRequested.connect(self._choose_files)
        self.library.addFolderRequested.connect(self._choose_folder)
        self.library.cancelRequested.connect(b.cancel_ingest)
        self.health.forceRequested.connect(self._force_breaker)

        b.ready.connect(self._on_ready)
        b.startFailed.connect(self._on_start_failed)
        b.answerStarted.connect(self._on_answer_started)
        b.answerQuotes.connect(self._on_quotes)
        b.answerToken.connect(self._on_token)
        b.answerReady.connect(self._on_answer)
        b.answerFailed.connect(self._on_answer_failed)
        b.ingestStarted.connect(self._on_ingest_started)
        b.ingestQueued.connect(self._on_ingest_queued)
        b.ingestProgress.connect(self.library.on_progress)
        b.ingestProgress.connect(self._on_ingest_progress)
        b.ingestFinished.connect(self._on_ingest_finished)
        b.fillProgress.connect(self._on_fill_progress)
        b.ingestFailed.connect(self._on_ingest_failed)
        b.watchReport.connect(self._on_watch_report)
        b.answerEvicted.connect(self._on_evicted)
        b.evictFailed.connect(self._say)
        b.quarantineUpdated.connect(self.library.show_quarantine)
        b.healthUpdated.connect(self._on_health)
        b.breakersUpdated.connect(self.health.show_breakers)
        b.statsUpdated.connect(self.health.show_stats)
        b.statsUpdated.connect(self._check_first_run)
        b.breakerChanged.connect(self.health.on_transition)
        b.statusFailed.connect(self._say)
        b.actionFailed.connect(self._say)
        b.sourceReady.connect(self._show_source)
        b.sourceFlagged.connect(self._show_source_flags)
        b.sourceFailed.connect(self._say)
        b.conversationsListed.connect(self._on_conversations)
        b.conversationLoaded.connect(self._on_conversation_loaded)
        b.conversationSaved.connect(lambda _conv: self.refresh_conversations())
        b.conversationDeleted.connect(lambda _cid: self.refresh_conversations())
        b.conversationFailed.connect(self._say)
        b.exportFinished.connect(lambda path: self._say(f"Exported the conversation to {path}."))
        b.exportFailed.connect(self._say)
        b.settingsSaved.connect(self._on_settings_saved)
        b.settingsFailed.connect(self._on_settings_failed)
        self.first_run.checked.connect(self._on_first_run_checked)

    def _say(self, message: str) -> None:
        self.last_error = message
        self.status_label.setText(message)

    # ------------------------------------------------------------------ chat actions

    def focus_question(self) -> None:
        self.question.setFocus(Qt.FocusReason.ShortcutFocusReason)

    def focus_search(self) -> None:
        self.search_box.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.search_box.selectAll()

    @property
    def conv(self) -> Conversation:
        return self.session.conv

    def send(self) -> None:
        text = self.question.toPlainText().strip()
        if not text or not self.bridge.started:
            return
        if self.bridge.busy_answering:
            self.bridge.stop_answer()
        self.question.clear()
        self.bridge.ask(text)

    def stop(self) -> None:
        if self.bridge.busy_answering:
            self.bridge.stop_answer()

    def delete_selected_conversation(self) -> None:
        """Delete the saved conversation selected in the sidebar (the open chat starts anew)."""
        item = self.conversation_list.currentItem()
        cid = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        if not isinstance(cid, str):
            return
        if cid == self.conv.id:
            self.new_chat()
        self.bridge.delete_conversation(cid)
        self._say("Conversation deleted.")

    def new_chat(self) -> None:
        self.stop()
        self.session.reset(self.bridge.conversations.new())
        self.conversation_list.clearSelection()
        self._render()
        self.focus_question()
        self._say("New chat.")

    def turn(self, index: int) -> Turn | None:
        return self.session.turn(index)

    def turn_actions(self, index: int) -> TurnActions:
        """What the answer of turn ``index`` offers (see ``TurnActions``)."""
        return self.session.actions(index)

    def _last(self) -> int:
        return self.session.last_index

    def copy_answer(self, index: int) -> None:
        self.do(self.session.copy(index))

    def copy_last_answer(self) -> None:
        self.copy_answer(self._last())

    def show_why(self, index: int) -> None:
        self.do(self.session.why(index))

    def show_last_why(self) -> None:
        self.show_why(self._last())

    def mark_wrong(self, index: int) -> None:
        """ "This answer is wrong": evict it from the cache (the answer stays in the chat)."""
        self.do(self.session.wrong(index))

    def mark_last_wrong(self) -> None:
        self.mark_wrong(self._last())

    def regenerate(self, index: int) -> None:
        """Ask turn ``index``'s question again without the model that broke off."""
        self.do(self.session.regenerate(index))

    def regenerate_last(self) -> None:
        self.regenerate(self._last())

    def open_citation(self, index: int, marker: int) -> None:
        self.do(self.session.route(f"cite:{index}:{marker}"))

    def do(self, action: Action | None) -> None:
        """Carry out what the chat session decided a click or a command means."""
        if isinstance(action, OpenSource):
            self.bridge.open_source(action.citation.source, action.citation)
        elif isinstance(action, CopyText):
            QGuiApplication.clipboard().setText(action.text)
            self._say("Answer copied to the clipboard.")
        elif isinstance(action, ShowWhy):
            if self.why_dialog is not None:
                self.why_dialog.close()
            self.why_dialog = WhyDialog(action.turn, self, action.quotes)
            self.why_dialog.show()
        elif isinstance(action, Evict):
            self.bridge.evict_answer(action.entry_id)
        elif isinstance(action, Regenerate):
            if not self.bridge.started:
                return
            if self.bridge.busy_answering:
                self.bridge.stop_answer()
            self.bridge.regenerate(action.question, action.skip)
            # After the call: stop_answer() may have finished a turn first.
            self.session.regenerating(action.skip)
        elif isinstance(action, OpenExternal):
            QDesktopServices.openUrl(QUrl(action.url))  # only on an explicit click
        elif isinstance(action, Say):
            self._say(action.message)

    def _update_answer_actions(self) -> None:
        last = self.session.actions(self._last())
        self.wrong_action.setVisible(last.wrong)
        self.regenerate_action.setVisible(last.regenerate)

    def _on_evicted(self, entry_id: str, evicted: bool) -> None:
        note = self.session.evicted(entry_id, evicted)
        self._render()
        self._say(note)

    def export_to(self, path: str) -> None:
        if not self.conv.turns:
            self._say("This chat is empty; there is nothing to export.")
            return
        self.bridge.export_conversation(self.conv, path)

    def _choose_export(self) -> None:
        if not self.conv.turns:
            self._say("This chat is empty; there is nothing to export.")
            return
        stem = "".join(ch if ch.isalnum() else "-" for ch in self.conv.title)[:40].strip("-")
        path, _ = QFileDialog.getSaveFileName(
            self, "Export conversation", f"{stem or 'conversation'}.md", "Markdown (*.md)"
        )
        if path:
            self.export_to(path)

    def _link_clicked(self, url: QUrl) -> None:
        self.do(self.session.route(url.toString()))

    # ------------------------------------------------------------------ conversations

    def refresh_conversations(self) -> None:
        if self.bridge.started:
            self.bridge.list_conversations(self._search_query)

    def _search_changed(self, text: str) -> None:
        self._search_query = text.strip()
        self.refresh_conversations()

    def _on_conversations(self, query: str, found: Sequence[ConversationSummary]) -> None:
        if query != self._search_query:
            return  # an older query's answer
        self.conversation_list.clear()
        for s in found:
            when = time.strftime("%d %b %H:%M", time.localtime(s.updated_at))
            item = QListWidgetItem(f"{s.title}\n{when} · {s.turns} question(s)")
            item.setData(Qt.ItemDataRole.UserRole, s.id)
            item.setToolTip(s.title)
            self.conversation_list.addItem(item)
            if s.id == self.conv.id:
                item.setSelected(True)
        if not found and query:
            self.conversation_list.addItem(f"No conversation mentions “{query}”.")

    def _conversation_chosen(self, item: QListWidgetItem) -> None:
        cid = item.data(Qt.ItemDataRole.UserRole)
        if isinstance(cid, str) and cid != self.conv.id:
            self.bridge.load_conversation(cid)

    def _on_conversation_loaded(self, conv: Conversation) -> None:
        self.stop()
        self.session.reset(conv)
        self._render()
        self._say(f"Opened “{conv.title}”.")

    # ------------------------------------------------------------------ ingestion

    def ingest_paths(self, paths: list[str]) -> None:
        if paths:
            self.library_dock.raise_()
            self.bridge.ingest(paths)

    def _choose_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Add files to Archivist")
        self.ingest_paths(files)

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder to Archivist")
        if folder:
            self.ingest_paths([folder])

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if _local_paths(event):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if _local_paths(event):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = _local_paths(event)
        if paths:
            event.acceptProposedAction()
            self.ingest_paths(paths)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        # File drops on text boxes ingest the files instead of pasting their paths.
        if watched in (self.question, self.search_box) and kind in (
            QEvent.Type.DragEnter,
            QEvent.Type.DragMove,
            QEvent.Type.Drop,
        ):
            assert isinstance(event, QDragEnterEvent | QDragMoveEvent | QDropEvent)
            if _local_paths(event):
                if kind == QEvent.Type.Drop:
                    assert isinstance(event, QDropEvent)
                    self.dropEvent(event)
                else:
                    event.acceptProposedAction()
                return True
        if watched is self.question and kind == QEvent.Type.KeyPress:
            assert isinstance(event, QKeyEvent)
            ctrl = event.modifiers() & Qt.KeyboardModifier.ControlModifier
            if ctrl and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                self.send()
                return True
        return super().eventFilter(watched, event)

    # ------------------------------------------------------------------ bridge signals

    def _on_ready(self) -> None:
        self.ask_button.setEnabled(True)
        self._say("Ready. Drop documents here or ask a question.")
        self.refresh_conversations()

    def _on_start_failed(self, message: str) -> None:
        self._say(f"Archivist could not start: {message}")

    def _render(self) -> None:
        bar = self.chat.verticalScrollBar()
        at_bottom = bar.value() >= bar.maximum() - 4
        self.chat.setHtml(self.session.html())
        self._update_answer_actions()
        if at_bottom or self.session.answering:
            bar.setValue(bar.maximum())

    def _schedule_render(self) -> None:
        if not self._render_timer.isActive():
            self._render_timer.start()

    @property
    def live_text(self) -> str:
        """The answer streamed so far (empty when nothing is being answered)."""
        return self.session.live_text

    def _on_answer_started(self, question: str) -> None:
        self.session.started(question)
        self.stop_button.setEnabled(True)
        self._say("Answering…")
        self._render()

    def _on_quotes(self, quotes: Sequence[Citation]) -> None:
        self.session.quotes_arrived(quotes)
        self._render()  # at once: the quotes are the first thing worth reading

    def _on_token(self, piece: str) -> None:
        self.session.token(piece)
        self._schedule_render()

    def _finish_turn(self) -> None:
        self._render_timer.stop()
        self.stop_button.setEnabled(False)
        self._render()
        self.bridge.save_conversation(self.conv)

    def _on_answer(self, answer: Answer, breakers: Sequence[BreakerSnapshot]) -> None:
        self.last_answer = answer
        self.session.answered(answer, breakers)
        self._finish_turn()
        self._say(answered_message(answer))

    def _on_answer_failed(self, message: str) -> None:
        if self.session.failed(message) is not None:
            self._finish_turn()
        self._say(message)

    def _show_source(self, path: str, text: str, citation: object) -> None:
        assert isinstance(citation, Citation)
        if self.source_dialog is not None:
            self.source_dialog.close()
        self.source_dialog = SourceDialog(path, text, citation, self)
        self.source_dialog.show()

    def _show_source_flags(self, path: str, flagged: object) -> None:
        """The source's passages flagged at ingestion, tinted in the open source view."""
        dialog = self.source_dialog
        if dialog is not None and dialog.path == path and isinstance(flagged, list):
            dialog.show_flagged(flagged)

    def _on_ingest_started(self, n: int) -> None:
        self.library.on_started(n)
        self._show_progress(0.0)
        if self.welcome is not None:
            self.welcome.on_ingest_started(n)
        self._say(f"Adding {n} item(s)…")

    def _on_ingest_progress(self, p: IngestProgress) -> None:
        if p.vectors_total:
            self._show_progress(p.vectors_done / p.vectors_total, "embedding")
            return
        fraction = sv.ingest_fraction(p.files_done, p.files_total, p.bytes_done, p.bytes_total)
        self._show_progress(fraction)

    def _on_fill_progress(self, p: FillProgress) -> None:
        self.library.on_fill(p)
        self._show_progress(p.done / p.total if p.running and p.total else None, "embedding")

    def _show_progress(self, fraction: float | None, phase: str = "ingesting") -> None:
        """Ingestion progress in the title and on the launcher icon (None: none runs)."""
        title = sv.progress_title(fraction, phase)
        if title != self.windowTitle():  # at most once per percent
            self.setWindowTitle(title)
            self.launcher.update(fraction)

    def _on_ingest_queued(self, waiting: int) -> None:
        self.library.on_queued(waiting)
        if waiting:
            self._say(f"{waiting} item(s) will be added when the running ingestion ends.")

    def _on_ingest_finished(self, report: IngestReport) -> None:
        self.last_report = report
        self.library.on_finished(report)
        self._show_progress(None)
        self._say(self.library.eta_label.text())
        if report.elapsed_s >= self.long_ingest_s:
            self.notifier.notify(
                "Archivist", sv.ingest_done_message(report.summary(), report.elapsed_s)
            )
        if self.welcome is not None:
            self.welcome.on_ingest_finished(report)
        if self._watch_after_ingest and not report.cancelled:
            # A folder added from the welcome is watched once it is in (watching
            # starts with a scan of its own, which then finds every file unchanged).
            folders, self._watch_after_ingest = self._watch_after_ingest, []
            form = form_from_settings(self.bridge.saved_settings)
            self.bridge.save_settings(firstrun.form_with_watched(form, folders))

    def _on_watch_report(self, folder: str, report: IngestReport) -> None:
        self.library.on_watch_report(folder, report)
        counts = ", ".join(
            f"{n} {k}" for k, n in report.summary().items() if n and k != "unchanged"
        )
        if counts:
            self._say(f"Watched folder {folder}: {counts}.")

    def _on_ingest_failed(self, message: str) -> None:
        self.library.on_failed(message)
        self._show_progress(None)
        if self.welcome is not None:
            self.welcome.on_ingest_failed(message)
        self._say(message)

    def _force_breaker(self, name: str, state: str) -> None:
        if state in ("open", "closed"):
            self.bridge.force_breaker(name, "open" if state == "open" else "closed")

    def _on_health(self, snap: HealthSnapshot) -> None:
        self.last_health = snap
        self.health.show_health(snap)
        colour = sv.STATUS_COLOURS.get(snap.status, "gray")
        self.health_label.setText(
            f'<span style="color:{colour}">●</span> {html.escape(sv.status_summary(snap))}'
        )
        self.health_label.setToolTip(
            "\n".join(f"{c.name}: {c.status} {c.detail}" for c in snap.components)
        )

    # ------------------------------------------------------------------ settings

    def open_settings(self) -> None:
        if self.settings_dialog is not None:
            self.settings_dialog.close()
        s = self.bridge.saved_settings
        dialog = SettingsDialog(form_from_settings(s), s, self)
        dialog.saveRequested.connect(self.bridge.save_settings)
        self.settings_dialog = dialog
        dialog.show()

    def _on_settings_saved(self, result: SaveResult) -> None:
        if self.settings_dialog is not None:
            self.settings_dialog.saved(result)
        if self.welcome is not None:
            self.welcome.on_settings_saved(result)
        self._say(result.message().replace("\n", " "))

    def _on_settings_failed(self, message: str) -> None:
        if self.settings_dialog is not None:
            self.settings_dialog.show_error(message)
        if self.welcome is not None:
            self.welcome.on_settings_failed(message)
        self._say(message)

    # ------------------------------------------------------------------ desktop

    def open_folder(self, folder: object) -> None:
        """Show a folder (the data or the log folder) in the desktop's file manager."""
        self.open_url(QUrl.fromLocalFile(str(folder)))
        self._say(f"Opened {folder}.")

    def show_about(self) -> None:
        if self.about_dialog is not None:
            self.about_dialog.close()
        s = self.bridge.settings
        self.about_dialog = AboutDialog(s.home, s.log_dir, self.open_url, self)
        self.about_dialog.show()

    def show_shortcuts(self) -> None:
        if self.shortcuts_dialog is not None:
            self.shortcuts_dialog.close()
        actions = [a for menu in self.menus.values() for a in menu.actions()]
        extra = [
            ("Send the question", "Ctrl+Enter"),
            ("Stop the answer", "Esc"),
            ("Go to the question box", "Ctrl+L"),
            ("Delete the selected conversation", "Delete"),
        ]
        self.shortcuts_dialog = ShortcutsDialog(shortcut_rows(actions, extra), self)
        self.shortcuts_dialog.show()

    def set_theme(self, name: str) -> None:
        applied = self.theme.apply(name)
        self.theme_actions[applied].setChecked(True)

    # ------------------------------------------------------------------ first run

    def _check_first_run(self, stats: StatsSnapshot) -> None:
        if self._welcome_checked:
            return
        self._welcome_checked = True
        self.first_run.check(stats.knowledge_base.documents)

    def _on_first_run_checked(self, show: bool) -> None:
        if show:
            self.show_welcome()

    def show_welcome(self) -> None:
        """The welcome flow (non-modal: the window stays usable behind it)."""
        if self.welcome is not None:
            self.welcome.activateWindow()  # (window managers raise what they activate)
            return
        dialog = WelcomeDialog(self.first_run, self)
        dialog.addFilesRequested.connect(self._choose_files)
        dialog.folderChosen.connect(self.add_watched_folder)
        dialog.pathsDropped.connect(self.ingest_paths)
        dialog.saveRequested.connect(self.bridge.save_settings)
        dialog.askRequested.connect(self.ask_now)
        dialog.chatRequested.connect(self._to_chat)
        dialog.finished.connect(self._welcome_closed)
        self.welcome = dialog
        dialog.show()

    def _welcome_closed(self) -> None:
        self.welcome = None

    def add_watched_folder(self, folder: str) -> None:
        """Add ``folder`` now and watch it once its documents are in."""
        self._watch_after_ingest.append(folder)
        self.ingest_paths([folder])

    def ask_now(self, question: str) -> None:
        self.question.setPlainText(question)
        self.send()

    def _to_chat(self, question: str) -> None:
        if question and not self.question.toPlainText().strip():
            self.question.setPlainText(question)
        self.activateWindow()
        self.focus_question()

    def changeEvent(self, event: QEvent) -> None:
        # Rich text resolves link colours when it is set, and the icons are drawn in
        # the text colour: both follow a theme change.
        if event.type() == QEvent.Type.PaletteChange:
            self._render()
            self._apply_icons()
        super().changeEvent(event)

    def save_layout(self) -> None:
        """Remember size, position, docks, splitter and theme for the next run."""
        self.window_state.save(self, self.splitter, self.theme.current or "system")

    def closeEvent(self, event: QCloseEvent) -> None:
        self.save_layout()
        self.health_timer.stop()
        self.health.countdown.stop()
        self._render_timer.stop()
        if self.welcome is not None:
            self.welcome.close()  # marks the first run done
        self.first_run.cancel(keep_marking=True)
        self.notifier.close()
        super().closeEvent(event)
