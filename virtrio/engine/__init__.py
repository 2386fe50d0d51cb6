"""The fleet and its faces: the demo guest, the CLI, and (later) config, executor and servers."""
