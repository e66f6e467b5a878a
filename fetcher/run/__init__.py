"""The engine: the one place that knows the order of work (download, extract,
store), a recorded refresh run, and the schedule. Builds on core, net,
extract and store."""
