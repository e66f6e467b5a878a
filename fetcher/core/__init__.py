"""The vocabulary every layer shares: outcomes, frozen models, errors, the
validated configuration, source identity and the health rules. No I/O."""
