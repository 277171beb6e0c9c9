"""The Rules pane: the widget, its view model, the rule editor."""
