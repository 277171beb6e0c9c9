"""The Flows pane: the widget, its view model, the detail and filter screens."""
