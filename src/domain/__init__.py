"""Pure domain: entities, values, state transitions and domain errors (attrs only)."""
