"""The Canary pane: the widget, rendering, charts, the rollback dialogs."""
