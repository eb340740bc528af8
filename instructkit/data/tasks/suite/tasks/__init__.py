"""Task YAML files of the built-in suite (a package so that wheels ship the YAML as package data)."""
