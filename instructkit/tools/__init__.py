"""Tools stage: the LaMDA-toolset experiment, GSM8K tool data, the `tools` CLI (the tool runtime is `instructkit.toolset`)."""
