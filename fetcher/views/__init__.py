"""Read-only views of the store: previews, history and export records, the
audit and its report formats. Builds on core and store."""
