"""The Profiles pane: the widget, its view model, the detail screen."""
