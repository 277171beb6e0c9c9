"""Actions: every action builder and actuator (marker, rule changes, rollback,
auto-rollback, capture). Each returns the Action to confirm and the coroutine the gate
runs. No Textual."""
