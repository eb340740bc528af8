"""The built-in task suite: procedural generators (generators.py) and task YAML files (tasks/)."""
